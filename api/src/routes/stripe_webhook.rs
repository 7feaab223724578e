//! `POST /v1/stripe/webhook`: Stripe's signed events, verified over the raw
//! body, stored once by event id with what became of each (applied, ignored,
//! refused, deferred) and fed into the checkout saga. Every signed event is
//! acknowledged `200`, even one Gavel cannot read or does not handle: Stripe
//! redelivers non-2xx answers for days and then disables the endpoint. A
//! duplicate delivery, or an event about a payment already settled, changes
//! nothing.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use gavel_domain::stripe_events::{self, EventOutcome, NewEvent};
use gavel_workflows::stripe::{self, Content, Rejected};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Receive a Stripe event (`Stripe-Signature` checked against `STRIPE_WEBHOOK_SECRET`).
#[utoipa::path(post, path = "/v1/stripe/webhook", tag = "providers",
    request_body(content = String, content_type = "application/json", description = "a Stripe event, raw"),
    responses((status = 200, description = "received and recorded with its outcome (or a duplicate, ignored)"),
              (status = 400, description = "invalid_signature | invalid_event (not UTF-8)", body = crate::openapi::Problem)))]
pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<axum::Json<Value>> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "invalid_signature", "Stripe-Signature is missing"))?;
    let payload = std::str::from_utf8(&body)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", "the body is not UTF-8"))?;
    let verified =
        stripe::verify_event(payload, signature, &state.stripe_webhook_secret).map_err(|Rejected(why)| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_signature",
                format!("the Stripe-Signature does not verify: {why}"),
            )
        })?;
    let mut conn = state.pool.acquire().await.map_err(gavel_domain::Error::from)?;
    if stripe_events::seen(&mut conn, &verified.id).await? {
        return Ok(axum::Json(json!({ "received": true, "duplicate": true })));
    }
    drop(conn);
    // Applied first, stored after: a crash in between leaves the event
    // unstored, so Stripe's redelivery applies it (again: a no-op) and stores it.
    let (outcome, reason) = match verified.content {
        Content::Payment(event) => {
            let done = state.payments.on_provider_event(event).await?;
            (done.outcome(), done.reason().map(str::to_owned))
        }
        Content::Unhandled => (EventOutcome::Ignored, Some("unhandled_type".to_owned())),
        Content::Unreadable(why) => {
            tracing::warn!(
                event = verified.id,
                kind = verified.kind,
                why,
                "a signed Stripe event cannot be read; stored"
            );
            (EventOutcome::Ignored, Some("unparseable".to_owned()))
        }
    };
    let stored: Value = serde_json::from_str(payload).unwrap_or_else(|_| Value::String(payload.to_owned()));
    let event =
        NewEvent { id: &verified.id, kind: &verified.kind, payload: &stored, outcome, reason: reason.as_deref() };
    let mut conn = state.pool.acquire().await.map_err(gavel_domain::Error::from)?;
    let first = stripe_events::record(&mut conn, &event).await?;
    Ok(axum::Json(json!({ "received": true, "duplicate": !first, "outcome": outcome.as_str() })))
}
