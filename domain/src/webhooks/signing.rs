//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): a secret
//! is `whsec_` followed by the base64 (standard alphabet, padded) of its key;
//! a signature is `v1,` + base64 of HMAC-SHA256(key, `"{id}.{timestamp}.{body}"`);
//! several signatures (during a rotation) are sent space-separated.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

/// The prefix every secret carries.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new secret: 32 random bytes (the spec allows 24 to 64).
pub fn new_secret() -> String {
    let key: [u8; 32] = rand::rng().random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The key a secret holds; `None` if it is not `whsec_` + base64.
pub fn key_of(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD.decode(encoded).ok().filter(|k| !k.is_empty())
}

/// One `v1,<base64>` signature of `body` sent as message `id` at `timestamp` (Unix seconds).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn header(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().filter_map(|s| key_of(s)).map(|k| sign(&k, id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification's test vectors.
    #[test]
    fn signs_as_the_specifications_example() {
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("a key");
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn a_new_secret_is_whsec_and_standard_base64_of_32_bytes() {
        let secret = new_secret();
        assert!(secret.starts_with("whsec_"));
        assert_eq!(key_of(&secret).map(|k| k.len()), Some(32));
        assert_ne!(secret, new_secret());
    }

    #[test]
    fn two_secrets_make_two_signatures() {
        let (a, b) = (new_secret(), new_secret());
        let h = header(&[&a, &b], "evt_1", 1, b"{}");
        assert_eq!(h.split(' ').count(), 2);
        assert!(h.split(' ').all(|s| s.starts_with("v1,")));
    }
}
