//! Credentials: merchant API keys (random, stored as SHA-256), buyer passwords
//! (argon2id) and buyer session tokens.
//!
//! Buyer tokens are stateless: `tok_<payload>.<mac>` where the payload carries
//! the buyer id and expiry and the MAC is HMAC-SHA256 under the configured
//! secret. Checking one costs no database round trip, which keeps the claim
//! hot path (and its sold-out answers) off the database.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256};
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

fn argon2(cost: PasswordCost) -> Result<Argon2<'static>> {
    let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
        .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes on the blocking pool: argon2 is deliberately slow.
pub async fn hash_password(password: String, cost: PasswordCost) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt_bytes: [u8; 16] = rand::rng().random();
        let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| Error::Internal(format!("salt: {e}")))?;
        argon2(cost)?
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(format!("hashing task: {e}")))?
}

/// True when `password` matches the stored hash (whatever cost it was made with).
pub async fn verify_password(password: String, stored: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored).map_err(|e| Error::Internal(format!("stored hash: {e}")))?;
        Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(|e| Error::Internal(format!("hashing task: {e}")))?
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
        (now.timestamp() < expires).then(|| BuyerId(Uuid::from_slice(id).unwrap_or_default()))
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
}
