//! Signed event delivery, as Stripe does it: `Stripe-Signature: t=<unix>,v1=<hex
//! HMAC-SHA256 of "<t>.<payload>" under the endpoint secret>`.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::objects::{new_id, now};
use super::{API_VERSION, Shared};

/// Where events go, and the secret they are signed with.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: String,
}

/// `Stripe-Signature` for `payload` at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, payload: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(format!("{timestamp}.{payload}").as_bytes());
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends `kind` about `object` in the background, retrying a few times.
pub(crate) fn emit(shared: &Shared, kind: &str, object: Value) {
    let target = shared.webhook.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let Some(target) = target else { return };
    let event = json!({
        "id": new_id("evt"), "object": "event", "account": null, "api_version": API_VERSION,
        "context": null, "created": now(), "data": { "object": object, "previous_attributes": null },
        "livemode": false, "pending_webhooks": 1, "request": { "id": null, "idempotency_key": null },
        "type": kind,
    });
    let http = shared.http.clone();
    tokio::spawn(async move {
        let payload = event.to_string();
        for attempt in 0..5u32 {
            let sig = signature(&target.secret, now(), &payload);
            let sent = http
                .post(&target.url)
                .header("content-type", "application/json")
                .header("stripe-signature", sig)
                .body(payload.clone())
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            if sent.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
        }
        tracing::warn!(url = %target.url, "stripe stand-in gave up delivering an event");
    });
}
