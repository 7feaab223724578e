//! `POST /v1/stripe/webhook`: Stripe's signed events, verified over the raw
//! body, stored once by event id and fed into the checkout saga. A duplicate
//! delivery, or an event about a payment already settled, changes nothing.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use gavel_domain::payments;
use gavel_workflows::gateway::{self, Rejected};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Receive a Stripe event (`Stripe-Signature` checked against `STRIPE_WEBHOOK_SECRET`).
#[utoipa::path(post, path = "/v1/stripe/webhook", tag = "providers",
    request_body(content = String, content_type = "application/json", description = "a Stripe event, raw"),
    responses((status = 200, description = "received (or a duplicate, ignored)"),
              (status = 400, description = "invalid_signature | invalid_event", body = crate::openapi::Problem)))]
pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<axum::Json<Value>> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid_signature", "Stripe-Signature is missing"))?;
    let payload = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", "the body is not UTF-8"))?;
    let verified = gateway::verify_event(payload, signature, &state.stripe_webhook_secret).map_err(|r| match r {
        Rejected::Signature(why) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_signature",
            format!("the Stripe-Signature does not verify: {why}"),
        ),
        Rejected::Payload(why) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", format!("not a readable Stripe event: {why}"))
        }
    })?;
    let mut conn = state.pool.acquire().await.map_err(gavel_domain::Error::from)?;
    if payments::provider_event_seen(&mut conn, &verified.id).await? {
        return Ok(axum::Json(json!({ "received": true, "duplicate": true })));
    }
    drop(conn);
    // Applied first, stored after: a crash in between leaves the event
    // unstored, so Stripe's redelivery applies it (again: a no-op) and stores it.
    if let Some(event) = verified.event {
        state.payments.on_provider_event(event).await?;
    }
    let stored: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let mut conn = state.pool.acquire().await.map_err(gavel_domain::Error::from)?;
    let first = payments::record_provider_event(&mut conn, &verified.id, &verified.kind, &stored).await?;
    Ok(axum::Json(json!({ "received": true, "duplicate": !first })))
}
