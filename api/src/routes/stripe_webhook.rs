//! `POST /v1/stripe/webhook`: Stripe's signed events, verified over the raw
//! body, stored once by event id with what became of each (applied, ignored,
//! refused, deferred) and fed into the checkout saga. Every signed event is
//! acknowledged `200`, even one Gavel cannot read or does not handle: Stripe
//! redelivers non-2xx answers for days and then disables the endpoint. A
//! duplicate delivery, or an event about a payment already settled, changes
//! nothing.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use gavel_domain::stripe_events::{self, EventOutcome, NewEvent};
use gavel_workflows::stripe::{self, Content, Rejected};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::problem::{DATABASE, EDGE, ErrorCode, Problem, problems};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

/// A Stripe event as Stripe sends it (only what Gavel reads is listed; the
/// signature covers the raw bytes, so send them unchanged).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct StripeEvent {
    /// `evt_…`
    id: String,
    /// `payment_intent.succeeded`, `payment_intent.payment_failed`, `refund.created`, …
    r#type: String,
    /// `{ "object": { … } }`: the PaymentIntent or Refund.
    data: Map<String, Value>,
}

/// What became of a delivered event.
#[derive(Serialize, ToSchema)]
pub struct EventReceipt {
    /// Always `true`.
    received: bool,
    /// The event id was seen before; nothing changed.
    duplicate: bool,
    /// `applied | ignored | refused | deferred` (absent when seen before).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    outcome: Option<&'static str>,
}

problems!(StripeWebhookErrors: InvalidSignature, InvalidEvent; DATABASE, EDGE);

/// Receive a Stripe event (`Stripe-Signature` checked against `STRIPE_WEBHOOK_SECRET`).
#[utoipa::path(post, path = "/v1/stripe/webhook", tag = "providers", operation_id = "receive_stripe_event",
    params(("Stripe-Signature" = String, Header, description = "Stripe's `t=…,v1=…` signature of the raw body.")),
    request_body(content = StripeEvent, content_type = "application/json", description = "A Stripe event, as Stripe signed it."),
    responses((status = 200, description = "Received and recorded with its outcome (or a duplicate, ignored).", body = EventReceipt),
              StripeWebhookErrors))]
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<axum::Json<EventReceipt>> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Problem::new(ErrorCode::InvalidSignature, "Stripe-Signature is missing"))?;
    let payload =
        std::str::from_utf8(&body).map_err(|_| Problem::new(ErrorCode::InvalidEvent, "the body is not UTF-8"))?;
    let verified =
        stripe::verify_event(payload, signature, &state.stripe_webhook_secret).map_err(|Rejected(why)| {
            Problem::new(ErrorCode::InvalidSignature, format!("the Stripe-Signature does not verify: {why}"))
        })?;
    let mut conn = state.pool.acquire().await.map_err(gavel_domain::Error::from)?;
    if stripe_events::seen(&mut conn, &verified.id).await? {
        return Ok(axum::Json(EventReceipt { received: true, duplicate: true, outcome: None }));
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
    Ok(axum::Json(EventReceipt { received: true, duplicate: !first, outcome: Some(outcome.as_str()) }))
}
