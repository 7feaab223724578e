//! Reading and verifying the JWTs the push clients send (APNs provider
//! tokens, ES256; OAuth JWT-bearer assertions, RS256).

use base64::Engine;
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde_json::Value;

/// A JWT whose signature checked out.
#[derive(Clone)]
pub(crate) struct Verified {
    pub header: Value,
    pub claims: Value,
}

/// Checks `token`'s `alg` and signature with `key`; why not, if not.
pub(crate) fn verify(token: &str, alg: &str, key: &[u8]) -> Result<Verified, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("not a JWT (three base64url parts)".into());
    };
    let decode = |part: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).map_err(|e| format!("not base64url: {e}"))
    };
    let header: Value = serde_json::from_slice(&decode(h)?).map_err(|e| format!("header: {e}"))?;
    let claims: Value = serde_json::from_slice(&decode(c)?).map_err(|e| format!("claims: {e}"))?;
    if header["alg"] != alg {
        return Err(format!("alg is {} (want {alg})", header["alg"]));
    }
    let algorithm: &dyn VerificationAlgorithm = match alg {
        "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        other => return Err(format!("unsupported alg {other}")),
    };
    let signed = &token[..h.len() + 1 + c.len()];
    UnparsedPublicKey::new(algorithm, key)
        .verify(signed.as_bytes(), &decode(s)?)
        .map_err(|_| "the signature does not verify".to_owned())?;
    Ok(Verified { header, claims })
}

/// The last token whose signature checked out: a client reuses its provider
/// token for many requests (APNs: up to an hour), and checking the same
/// signature again on every push would make the stand-in, not the client,
/// the limit of a throughput test. The claims are still checked every time.
#[derive(Default)]
pub(crate) struct LastVerified(std::sync::Mutex<Option<(String, Verified)>>);

impl LastVerified {
    pub(crate) fn verify(&self, token: &str, alg: &str, key: &[u8]) -> Result<Verified, String> {
        let lock = || self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((last, verified)) = lock().as_ref()
            && last == token
        {
            return Ok(verified.clone());
        }
        let verified = verify(token, alg, key)?;
        *lock() = Some((token.to_owned(), verified.clone()));
        Ok(verified)
    }
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
