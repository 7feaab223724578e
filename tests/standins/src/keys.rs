//! Keys for the push stand-ins, for tests and the demo only.
//!
//! APNs: a fresh P-256 key made with ring, written as the `.p8` (PKCS#8 PEM)
//! Apple hands out. FCM: ring cannot make RSA keys, so a TEST-ONLY RSA key is
//! committed (`tests/standins/keys/fcm-test-only.pem`, published, protecting
//! nothing) and wrapped into a service-account file whose `token_uri` is the
//! stand-in's.

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair};

/// The committed TEST-ONLY RSA key of the FCM stand-in's service account.
pub const FCM_TEST_KEY_PEM: &str = include_str!("../keys/fcm-test-only.pem");
/// The service account's `client_email`.
pub const FCM_TEST_CLIENT_EMAIL: &str = "gavel-standin@gavel-test.iam.gserviceaccount.com";

/// A new APNs signing key: its `.p8` text (PKCS#8 PEM).
pub fn new_apns_p8() -> Result<String, ring::error::Unspecified> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())?;
    Ok(pem("PRIVATE KEY", pkcs8.as_ref()))
}

/// The public key (uncompressed point) of a `.p8`, as the APNs stand-in verifies with.
pub fn apns_public_key(p8: &str) -> Result<Vec<u8>, String> {
    let der = pem_der(p8, "PRIVATE KEY").ok_or("not a PEM PRIVATE KEY")?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
        .map_err(|e| format!("not a P-256 PKCS#8 key: {e}"))?;
    Ok(pair.public_key().as_ref().to_vec())
}

/// The public key (PKCS#1 `RSAPublicKey` DER) of a PKCS#8 RSA PEM.
pub fn rsa_public_key(pem_text: &str) -> Result<Vec<u8>, String> {
    let der = pem_der(pem_text, "PRIVATE KEY").ok_or("not a PEM PRIVATE KEY")?;
    let pair = RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("not an RSA PKCS#8 key: {e}"))?;
    Ok(pair.public().as_ref().to_vec())
}

/// A service-account JSON for the TEST-ONLY key, minting tokens at `token_uri`.
pub fn fcm_service_account(project_id: &str, token_uri: &str) -> String {
    serde_json::json!({
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": "standin-test-only",
        "private_key": FCM_TEST_KEY_PEM,
        "client_email": FCM_TEST_CLIENT_EMAIL,
        "client_id": "0",
        "token_uri": token_uri,
    })
    .to_string()
}

pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub(crate) fn pem_der(text: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let b64: String = text[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}
