//! Merchant webhooks end to end: the real dispatcher (workers role) sends
//! over real HTTP to the receiver stand-in; deliveries are checked with a
//! Standard Webhooks verifier written here from the specification (not
//! Gavel's signing code).

mod claim;
mod delivery;
mod endpoints;
mod signatures;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gavel::{Config, Role};
use gavel_standins::webhook_receiver::{Received, WebhookReceiver};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Merchant, Response, TestApp, eventually, fresh_database};

/// The Standard Webhooks verifier, from the specification: the key is the
/// base64 after `whsec_`; the signed content is `{id}.{timestamp}.{body}`;
/// `webhook-signature` holds space-separated `v1,<base64>` signatures, any
/// of which may match; the timestamp must be within 5 minutes of `now`.
pub fn verify(secret: &str, id: &str, timestamp: &str, signatures: &str, body: &[u8], now: i64) -> Result<(), String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").ok_or("the secret lacks whsec_")?)
        .map_err(|e| format!("the secret is not base64: {e}"))?;
    let ts: i64 = timestamp.parse().map_err(|_| "webhook-timestamp is not an integer".to_owned())?;
    if (now - ts).abs() > 300 {
        return Err(format!("timestamp {ts} is outside the 5-minute tolerance of {now}"));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    let matched = signatures
        .split(' ')
        .filter_map(|s| s.split_once(','))
        .any(|(version, sig)| version == "v1" && sig.as_bytes() == expected.as_bytes());
    if matched { Ok(()) } else { Err("no signature matches".into()) }
}

/// Verifies a received request as a merchant would, at time `now`.
pub fn verify_received(secret: &str, r: &Received, now: i64) -> Result<(), String> {
    verify(
        secret,
        r.webhook_id.as_deref().ok_or("no webhook-id")?,
        r.webhook_timestamp.as_deref().ok_or("no webhook-timestamp")?,
        r.webhook_signature.as_deref().ok_or("no webhook-signature")?,
        r.body.as_bytes(),
        now,
    )
}

/// API and workers (the dispatcher), with `tweak` over the test configuration.
pub async fn app(tweak: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_on(&fresh_database().await, &[Role::Api, Role::Workers], tweak).await
}

pub async fn receiver() -> WebhookReceiver {
    WebhookReceiver::start(([127, 0, 0, 1], 0).into(), false).await.expect("the receiver stand-in starts")
}

/// A new endpoint over the API: (id, secret).
pub async fn endpoint(app: &TestApp, merchant: &Merchant, url: &str, events: Value) -> (String, String) {
    let mut body = json!({ "url": url });
    if !events.is_null() {
        body["events"] = events;
    }
    let r = app.post("/v1/webhook_endpoints", Some(&merchant.key), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    (r.body["id"].as_str().expect("an id").to_owned(), r.body["secret"].as_str().expect("a secret").to_owned())
}

/// The merchant's deliveries (first page of 100), with `query` (`endpoint=…&status=…`).
pub async fn deliveries(app: &TestApp, merchant: &Merchant, query: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/webhook_deliveries?limit=100&{query}"), Some(&merchant.key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    r.body["data"].as_array().cloned().unwrap_or_default()
}

/// Waits until the receiver holds `n` requests answered 2xx, and returns them all.
pub async fn received_ok(receiver: &WebhookReceiver, n: usize, within: Duration) -> Vec<Received> {
    eventually(&format!("{n} webhooks are delivered"), within, || async {
        let all = receiver.received();
        (all.iter().filter(|r| (200..300).contains(&r.answered)).count() >= n).then_some(all)
    })
    .await
}

/// Waits until a delivery of the merchant's has `status`; returns it.
pub async fn delivery_with_status(app: &TestApp, merchant: &Merchant, status: &str, within: Duration) -> Value {
    eventually(&format!("a delivery is {status}"), within, || async {
        deliveries(app, merchant, &format!("status={status}")).await.into_iter().next()
    })
    .await
}

pub fn body_of(r: &Received) -> Value {
    serde_json::from_str(&r.body).expect("a webhook body is JSON")
}

pub fn problem(r: &Response, status: StatusCode, code: &str) {
    assert_eq!((r.status, r.code()), (status, code), "{}", r.raw);
    assert!(r.is_problem(), "problem+json: {}", r.raw);
}
