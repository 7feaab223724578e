//! A merchant's webhook deliveries: each event sent to each endpoint, with
//! every attempt (status code, latency); filtered by endpoint, event type and
//! status; retried by hand (with the same `webhook-id`).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gavel_domain::ids::{EventId, WebhookDeliveryId, WebhookEndpointId};
use gavel_domain::webhooks::deliveries::{self, Delivery, Filter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Merchant, Path, PathId, Query};
use crate::idempotency::{self, IdempotencyKey, Mode};
use crate::pagination::PageParams;
use crate::problem::{AUTHENTICATED, DATABASE, EDGE, KEYED, Problem, problems};
use crate::state::AppState;

impl PathId for WebhookDeliveryId {
    const WHAT: &'static str = "webhook delivery";
}

pub fn router(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(get)).routes(idempotency::keyed(
        state,
        Mode::Outcome,
        routes!(retry),
    ))
}

/// `pending` (not yet delivered, attempts left), `delivered` (a 2xx came),
/// `failed` (retries exhausted, the endpoint disabled or deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatusBody {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatusBody {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    fn from_stored(s: &str) -> Self {
        match s {
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// One HTTP attempt.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookAttempt)]
pub struct AttemptBody {
    /// The receiver's status code; null when no answer came (timeout, refused, blocked address).
    status_code: Option<i16>,
    duration_ms: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    created_at: DateTime<Utc>,
}

/// One event to one endpoint.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookDelivery, examples(json!({
    "object": "webhook_delivery", "id": "wd_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b",
    "endpoint": "we_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "event_id": "evt_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b",
    "event_type": "order.paid", "status": "delivered",
    "attempts": [{ "status_code": 200, "duration_ms": 12, "created_at": "2026-12-01T12:00:00Z" }],
    "created_at": "2026-12-01T12:00:00Z"
})))]
pub struct DeliveryBody {
    /// Always `webhook_delivery`.
    #[schema(value_type = String)]
    object: &'static str,
    #[schema(value_type = String)]
    id: WebhookDeliveryId,
    /// The endpoint's id (`we_…`).
    #[schema(value_type = String)]
    endpoint: WebhookEndpointId,
    /// The event's id, sent as `webhook-id`.
    #[schema(value_type = String)]
    event_id: EventId,
    event_type: String,
    status: DeliveryStatusBody,
    attempts: Vec<AttemptBody>,
    /// When the next attempt is due (pending only).
    #[serde(skip_serializing_if = "Option::is_none")]
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<Delivery> for DeliveryBody {
    fn from(d: Delivery) -> Self {
        Self {
            object: "webhook_delivery",
            id: d.id,
            endpoint: d.endpoint_id,
            event_id: d.event_id,
            event_type: d.event_type,
            status: DeliveryStatusBody::from_stored(&d.status),
            attempts: d
                .attempts
                .into_iter()
                .map(|a| AttemptBody {
                    status_code: a.status_code,
                    duration_ms: a.duration_ms,
                    error: a.error,
                    created_at: a.created_at,
                })
                .collect(),
            next_attempt_at: d.next_attempt_at,
            created_at: d.created_at,
        }
    }
}

/// The list's filters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryFilter {
    /// Only this endpoint's (`we_…`).
    endpoint: Option<String>,
    /// Only this event type's (`order.paid`).
    event_type: Option<String>,
    /// Only deliveries in this status.
    status: Option<DeliveryStatusBody>,
}

/// A page of deliveries.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookDeliveryList)]
pub struct DeliveryList {
    #[schema(value_type = String)]
    object: &'static str,
    data: Vec<DeliveryBody>,
    has_more: bool,
}

problems!(ListDeliveriesErrors: InvalidRequest, NotFound; AUTHENTICATED, DATABASE, EDGE);

/// The merchant's webhook deliveries, newest first, each with its attempts.
#[utoipa::path(get, path = "/v1/webhook_deliveries", tag = "webhooks", operation_id = "list_webhook_deliveries",
    security(("merchant_key" = [])), params(DeliveryFilter, PageParams),
    responses((status = 200, description = "A page of deliveries.", body = DeliveryList), ListDeliveriesErrors))]
pub async fn list(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Query(params): Query<DeliveryFilter>,
    Query(paging): Query<PageParams>,
) -> ApiResult<axum::Json<DeliveryList>> {
    let page = paging.parse::<WebhookDeliveryId>("webhook delivery")?;
    let endpoint = match params.endpoint.as_deref() {
        Some(raw) => Some(
            raw.parse::<WebhookEndpointId>()
                .map_err(|_| Problem::invalid("endpoint", "not a webhook endpoint id (we_…)"))?,
        ),
        None => None,
    };
    if let Some(kind) = params.event_type.as_deref()
        && !gavel_domain::webhooks::EVENT_TYPES.contains(&kind)
    {
        return Err(Problem::invalid("event_type", "not a webhook event type"));
    }
    let filter = Filter {
        endpoint,
        event_type: params.event_type.clone(),
        status: params.status.map(|s| s.as_str().to_owned()),
    };
    let rows = deliveries::list(&state.pool, merchant, &filter, page.after, page.fetch()).await?;
    let (rows, has_more) = page.cut(rows);
    Ok(axum::Json(DeliveryList { object: "list", data: rows.into_iter().map(DeliveryBody::from).collect(), has_more }))
}

problems!(GetDeliveryErrors: NotFound; AUTHENTICATED, DATABASE, EDGE);

/// One delivery with its attempts.
#[utoipa::path(get, path = "/v1/webhook_deliveries/{id}", tag = "webhooks", operation_id = "get_webhook_delivery",
    security(("merchant_key" = [])), params(("id" = String, Path, description = "The delivery's id (`wd_…`).")),
    responses((status = 200, description = "The delivery.", body = DeliveryBody), GetDeliveryErrors))]
pub async fn get(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<WebhookDeliveryId>,
) -> ApiResult<axum::Json<DeliveryBody>> {
    Ok(axum::Json(deliveries::get(&state.pool, merchant, id).await?.into()))
}

problems!(RetryDeliveryErrors: NotFound; AUTHENTICATED, KEYED, DATABASE, EDGE);

/// Send a delivered or failed delivery once more, with the same `webhook-id`
/// (a new attempt is added); a pending one is answered as it stands.
#[utoipa::path(post, path = "/v1/webhook_deliveries/{id}/retry", tag = "webhooks",
    operation_id = "retry_webhook_delivery", security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The delivery's id (`wd_…`)."), IdempotencyKey),
    responses((status = 202, description = "Queued for one more attempt.", body = DeliveryBody), RetryDeliveryErrors))]
pub async fn retry(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<WebhookDeliveryId>,
) -> ApiResult<(StatusCode, axum::Json<DeliveryBody>)> {
    Ok((StatusCode::ACCEPTED, axum::Json(deliveries::retry(&state.pool, merchant, id).await?.into())))
}
