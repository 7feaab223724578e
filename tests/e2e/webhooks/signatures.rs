//! Gavel's deliveries verify with a Standard Webhooks verifier written from
//! the specification; a tampered body or an old timestamp does not; during a
//! rotation both secrets verify.

use std::time::Duration;

use serde_json::Value;

use super::{app, body_of, endpoint, received_ok, receiver, verify_received};

#[tokio::test]
async fn a_delivery_verifies_as_standard_webhooks_and_tampering_or_an_old_timestamp_does_not() {
    let receiver = receiver().await;
    let app = app(|_| {}).await;
    let merchant = app.merchant().await;
    let (_, secret) = endpoint(&app, &merchant, &receiver.url("/hooks"), Value::Null).await;
    assert!(secret.starts_with("whsec_"), "{secret}");

    let sale = app.active_sale(&merchant, serde_json::json!({})).await;
    let got = received_ok(&receiver, 1, Duration::from_secs(10)).await;
    let r = &got[0];
    let now = chrono::Utc::now().timestamp();
    verify_received(&secret, r, now).expect("Gavel's delivery verifies");

    // The body: {id, type, created_at (milliseconds), data (with the resource's version)}.
    let body = body_of(r);
    assert_eq!(body["type"], "sale.started");
    assert_eq!(body["id"].as_str(), r.webhook_id.as_deref(), "webhook-id is the event's id");
    assert_eq!(body["data"]["sale_id"], sale.as_str());
    assert_eq!(body["data"]["version"], 1, "the sale's first event");
    let created_at = body["created_at"].as_str().expect("created_at");
    assert!(created_at.len() == "2026-12-01T12:00:00.000Z".len() && created_at.ends_with('Z'), "{created_at}");
    assert_eq!(r.content_type.as_deref(), Some("application/json"));

    let mut tampered = r.clone();
    tampered.body = r.body.replace("sale.started", "sale.ended");
    assert!(verify_received(&secret, &tampered, now).is_err(), "a tampered body is rejected");
    assert!(verify_received(&secret, r, now + 600).is_err(), "a timestamp 10 minutes old is rejected");
    let other = gavel_domain::webhooks::signing::new_secret();
    assert!(verify_received(&other, r, now).is_err(), "another secret does not verify");
}

#[tokio::test]
async fn during_a_rotation_both_the_old_and_the_new_secret_verify() {
    let receiver = receiver().await;
    let app = app(|_| {}).await;
    let merchant = app.merchant().await;
    let (id, old) = endpoint(&app, &merchant, &receiver.url("/hooks"), Value::Null).await;

    let r = app.post(&format!("/v1/webhook_endpoints/{id}/rotate_secret"), Some(&merchant.key), Value::Null).await;
    assert_eq!(r.status, reqwest::StatusCode::OK, "{}", r.raw);
    let new = r.body["secret"].as_str().expect("the new secret").to_owned();
    assert!(new.starts_with("whsec_") && new != old);

    app.active_sale(&merchant, serde_json::json!({})).await;
    let got = received_ok(&receiver, 1, Duration::from_secs(10)).await;
    let signature = got[0].webhook_signature.clone().unwrap_or_default();
    assert_eq!(signature.split(' ').count(), 2, "two signatures while the old secret overlaps: {signature}");
    let now = chrono::Utc::now().timestamp();
    verify_received(&new, &got[0], now).expect("the new secret verifies");
    verify_received(&old, &got[0], now).expect("the old secret still verifies during the overlap");
}
