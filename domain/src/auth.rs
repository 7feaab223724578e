//! Credentials: merchant API keys (random, stored as SHA-256), buyer passwords
//! (argon2id, a bounded number at a time) and buyer session tokens.
//!
//! Buyer tokens are stateless: `tok_<payload>.<mac>` where the payload carries
//! the buyer id and expiry and the MAC is HMAC-SHA256 under the configured
//! secret. Checking one costs no database round trip, which keeps the claim
//! hot path (and its sold-out answers) off the database.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::sync::{OnceCell, Semaphore};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids::BuyerId;

/// A fresh random secret with a readable prefix (`sk_…`, `whsec_…`).
pub fn random_secret(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::rng().random();
    format!("{prefix}_{}", B64.encode(bytes))
}

/// The at-rest form of an API key.
pub fn api_key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Cost of password hashing. The defaults are OWASP's argon2id minimum; tests and
/// benchmarks may lower them through configuration.
#[derive(Debug, Clone, Copy)]
pub struct PasswordCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Default for PasswordCost {
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2 }
    }
}

/// How many hashes run at once, and how long a request waits for its turn.
#[derive(Debug, Clone, Copy)]
pub struct HashLimits {
    pub concurrency: usize,
    pub queue_wait: Duration,
}

impl HashLimits {
    /// One hash per core: argon2 is CPU- and memory-bound, more at once only
    /// adds memory and latency.
    pub fn per_core(queue_wait: Duration) -> Self {
        Self { concurrency: std::thread::available_parallelism().map_or(2, NonZeroUsize::get), queue_wait }
    }
}

/// Password hashing and verification under a bound.
///
/// argon2id at the production cost needs ~19 MiB per hash. Unbounded, a storm of
/// sign-ups ran one hash per blocking thread (8.7 GB RSS) and the allocator kept
/// the memory afterwards. Here at most `concurrency` hashes run at once, each in
/// a working buffer from a pool that never holds more than `concurrency` of them,
/// so memory stays at about `concurrency × cost` whatever arrives; a request that
/// gets no turn within `queue_wait` fails with [`Error::Overloaded`].
///
/// An unknown email is verified against a dummy hash of the same cost (made once,
/// at start, through the same bound), so sign-in takes as long whether or not the
/// account exists.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    cost: PasswordCost,
    queue_wait: Duration,
    permits: Arc<Semaphore>,
    buffers: Mutex<Vec<Vec<Block>>>,
    dummy: OnceCell<String>,
}

impl Passwords {
    /// Inside a tokio runtime this also starts making the dummy hash, so the
    /// first unknown email does not pay for it.
    pub fn new(cost: PasswordCost, limits: HashLimits) -> Result<Self> {
        params(cost)?;
        let passwords = Self {
            inner: Arc::new(Inner {
                cost,
                queue_wait: limits.queue_wait,
                permits: Arc::new(Semaphore::new(limits.concurrency.max(1))),
                buffers: Mutex::default(),
                dummy: OnceCell::new(),
            }),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let warm = passwords.clone();
            runtime.spawn(async move {
                if let Err(err) = warm.dummy().await {
                    tracing::warn!(error = %err, "could not make the dummy password hash yet");
                }
            });
        }
        Ok(passwords)
    }

    /// A PHC string (`$argon2id$v=19$m=…`) of `password` at the configured cost.
    pub async fn hash(&self, password: String) -> Result<String> {
        let cost = self.inner.cost;
        self.run(move |blocks| hash_with(password.as_bytes(), cost, blocks)).await
    }

    /// True when `password` matches `stored` (whatever cost it was made with).
    /// `None` (no such account) is checked against the dummy hash and is false.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool> {
        let known = stored.is_some();
        let stored = match stored {
            Some(stored) => stored,
            None => self.dummy().await?.to_owned(),
        };
        let matches = self.run(move |blocks| verify_with(password.as_bytes(), &stored, blocks)).await?;
        Ok(known && matches)
    }

    async fn dummy(&self) -> Result<&str> {
        let dummy = self.inner.dummy.get_or_try_init(|| self.hash(random_secret("dummy"))).await?;
        Ok(dummy.as_str())
    }

    /// Runs `job` on the blocking pool once a permit is free, with a working buffer.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Vec<Block>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let permit = match tokio::time::timeout(self.inner.queue_wait, self.inner.permits.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(closed)) => return Err(Error::Internal(format!("hashing permits: {closed}"))),
            Err(_) => return Err(Error::Overloaded { retry_after: Duration::from_secs(1) }),
        };
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // Held until the hash is done, even if the request is dropped meanwhile:
            // the bound is on work running, not on requests waiting.
            let _permit = permit;
            let mut blocks = inner.lock_buffers().pop().unwrap_or_default();
            let outcome = job(&mut blocks);
            inner.lock_buffers().push(blocks);
            outcome
        })
        .await
        .map_err(|e| Error::Internal(format!("hashing task: {e}")))?
    }
}

impl Inner {
    fn lock_buffers(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Block>>> {
        self.buffers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn params(cost: PasswordCost) -> Result<Params> {
    Params::new(cost.memory_kib, cost.iterations, 1, None)
        .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))
}

/// Grows the reused buffer to `count` blocks (argon2 overwrites every block it
/// reads, so what an earlier hash left there does not matter).
fn fit(blocks: &mut Vec<Block>, count: usize) -> &mut [Block] {
    if blocks.len() < count {
        blocks.resize(count, Block::new());
    }
    &mut blocks[..count]
}

fn hash_with(password: &[u8], cost: PasswordCost, blocks: &mut Vec<Block>) -> Result<String> {
    let params = params(cost)?;
    let salt_bytes: [u8; 16] = rand::rng().random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| Error::Internal(format!("salt: {e}")))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    argon2
        .hash_password_into_with_memory(password, &salt_bytes, &mut out, fit(blocks, params.block_count()))
        .map_err(|e| Error::Internal(format!("argon2: {e}")))?;
    let phc = PasswordHash {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| Error::Internal(format!("argon2 output: {e}")))?),
    };
    Ok(phc.to_string())
}

fn verify_with(password: &[u8], stored: &str, blocks: &mut Vec<Block>) -> Result<bool> {
    let bad = |e: &dyn std::fmt::Display| Error::Internal(format!("stored hash: {e}"));
    let parsed = PasswordHash::new(stored).map_err(|e| bad(&e))?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| bad(&e))?;
    let version = parsed.version.map(Version::try_from).transpose().map_err(|e| bad(&e))?.unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| bad(&e))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(bad(&"no salt or no hash"));
    };
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf).map_err(|e| bad(&e))?;
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(password, salt, &mut out, fit(blocks, params.block_count()))
        .map_err(|e| Error::Internal(format!("argon2: {e}")))?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).is_ok_and(|out| out == expected))
}

/// Issues and checks buyer tokens.
#[derive(Clone)]
pub struct TokenSigner {
    key: Hmac<Sha256>,
    ttl: chrono::Duration,
}

impl TokenSigner {
    pub fn new(secret: &[u8], ttl: chrono::Duration) -> Result<Self> {
        let key = Hmac::<Sha256>::new_from_slice(secret).map_err(|e| Error::Internal(format!("token key: {e}")))?;
        Ok(Self { key, ttl })
    }

    pub fn issue(&self, buyer: BuyerId, now: DateTime<Utc>) -> String {
        let expires = (now + self.ttl).timestamp();
        let mut payload = Vec::with_capacity(24);
        payload.extend_from_slice(buyer.uuid().as_bytes());
        payload.extend_from_slice(&expires.to_be_bytes());
        let mac = self.mac(&payload);
        format!("tok_{}.{}", B64.encode(&payload), B64.encode(mac))
    }

    /// The buyer the token names, if the token is genuine and unexpired.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<BuyerId> {
        let (payload, mac) = token.strip_prefix("tok_")?.split_once('.')?;
        let payload = B64.decode(payload).ok()?;
        let mac = B64.decode(mac).ok()?;
        let mut check = self.key.clone();
        check.update(&payload);
        check.verify_slice(&mac).ok()?;
        let (id, expires) = payload.split_at_checked(16)?;
        let expires = i64::from_be_bytes(expires.try_into().ok()?);
        (now.timestamp() < expires).then(|| BuyerId::from_uuid(Uuid::from_slice(id).unwrap_or_default()))
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = self.key.clone();
        mac.update(payload);
        mac.finalize().into_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::new(b"test secret", chrono::Duration::hours(1)).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn a_token_names_its_buyer_until_it_expires() {
        let buyer = BuyerId::new();
        let now = Utc::now();
        let token = signer().issue(buyer, now);
        assert_eq!(signer().verify(&token, now), Some(buyer));
        assert_eq!(signer().verify(&token, now + chrono::Duration::hours(2)), None);
    }

    #[test]
    fn a_tampered_or_foreign_token_is_refused() {
        let now = Utc::now();
        let token = signer().issue(BuyerId::new(), now);
        let other = TokenSigner::new(b"other", chrono::Duration::hours(1)).unwrap_or_else(|_| unreachable!());
        assert_eq!(other.verify(&token, now), None);
        let mut forged = token.clone();
        forged.replace_range(6..8, "AA");
        assert_eq!(signer().verify(&forged, now), None);
        assert_eq!(signer().verify("tok_garbage", now), None);
    }

    fn passwords(concurrency: usize, queue_wait: Duration) -> Passwords {
        let cost = PasswordCost { memory_kib: 256, iterations: 1 };
        Passwords::new(cost, HashLimits { concurrency, queue_wait }).expect("the password test setup works")
    }

    #[tokio::test]
    async fn hashes_from_a_reused_buffer_verify_both_ways_with_the_reference_implementation() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let passwords = passwords(1, Duration::from_secs(5));
        let first = passwords.hash("first password".into()).await.expect("the password test setup works");
        let second = passwords.hash("second password".into()).await.expect("the password test setup works");
        for (password, hash) in [("first password", &first), ("second password", &second)] {
            let parsed = PasswordHash::new(hash).expect("the password test setup works");
            assert!(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(), "{hash}");
        }
        // A hash made by argon2 itself, at another cost (as stored by earlier builds).
        let salt = SaltString::encode_b64(b"sixteen byte salt").expect("the password test setup works");
        let params = Params::new(512, 2, 1, None).expect("the password test setup works");
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"old password", &salt)
            .expect("the password test setup works")
            .to_string();
        let check = |password: &str, stored: &str| passwords.verify(password.into(), Some(stored.into()));
        assert!(check("old password", &reference).await.expect("the password test setup works"));
        assert!(check("first password", &first).await.expect("the password test setup works"));
        assert!(!check("second password", &first).await.expect("the password test setup works"));
        assert!(!passwords.verify("first password".into(), None).await.expect("the password test setup works"));
    }

    #[tokio::test]
    async fn with_every_permit_taken_hashing_and_unknown_emails_answer_overloaded_after_the_wait() {
        let passwords = passwords(1, Duration::from_millis(50));
        passwords.dummy().await.expect("the password test setup works");
        let _busy = passwords.inner.permits.clone().acquire_owned().await.expect("the password test setup works");
        let overloaded = |r: Result<_>| matches!(r, Err(Error::Overloaded { .. }));
        assert!(overloaded(passwords.hash("a password".into()).await.map(|_| ())));
        assert!(overloaded(passwords.verify("a password".into(), None).await.map(|_| ())), "no short cut");
    }
}
