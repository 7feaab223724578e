//! The dead-letter queue for the operator (`Authorization: Bearer
//! <GAVEL_ADMIN_TOKEN>`, compared in constant time; none or wrong → `401`):
//! list, show, replay once, discard. The same as `gavel dlq`.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gavel_domain::dead_letters::{self, DeadLetter, Kind, Status};
use gavel_domain::ids::DeadLetterId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiResult;
use crate::extract::{Path, Query};
use crate::operator::Operator;
use crate::pagination::PageParams;
use crate::problem::{DATABASE, EDGE, problems};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(get)).routes(routes!(retry)).routes(routes!(discard))
}

/// One failed attempt.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct AttemptBody {
    at: DateTime<Utc>,
    error: String,
}

/// An entry of the dead-letter queue.
#[derive(Serialize, ToSchema)]
#[schema(as = DeadLetter, examples(json!({
    "object": "dead_letter", "id": "dlq_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "kind": "notification", "status": "open",
    "subject": "dlv_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", "recipient": "ada@example.com", "channel": "email",
    "payload": { "type": "email", "subject": "Your order is confirmed", "text": "…", "html": "…" },
    "attempts": [{ "at": "2026-12-01T12:00:00Z", "error": "temporary failure: 451 4.3.0" }],
    "created_at": "2026-12-01T12:42:00Z", "resolved_at": null
})))]
pub struct DeadLetterBody {
    /// Always `dead_letter`.
    #[schema(value_type = String)]
    object: &'static str,
    #[schema(value_type = String, examples("dlq_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    id: DeadLetterId,
    /// `notification`, `webhook` or `job`.
    kind: String,
    /// `open`, `retried` or `discarded`.
    status: String,
    /// The delivery's (`dlv_…`) or job's id.
    subject: String,
    recipient: Option<String>,
    channel: Option<String>,
    /// What was to be sent (a notification's rendered message).
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    /// Every failed attempt, oldest first.
    attempts: Vec<AttemptBody>,
    created_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
}

impl From<DeadLetter> for DeadLetterBody {
    fn from(d: DeadLetter) -> Self {
        Self {
            object: "dead_letter",
            id: d.id,
            kind: d.kind,
            status: d.status,
            subject: d.subject,
            recipient: d.recipient,
            channel: d.channel,
            payload: d.payload,
            attempts: serde_json::from_value(d.attempts).unwrap_or_default(),
            created_at: d.created_at,
            resolved_at: d.resolved_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = DeadLetterList)]
pub struct DeadLetterList {
    /// Always `list`.
    #[schema(value_type = String)]
    object: &'static str,
    data: Vec<DeadLetterBody>,
    has_more: bool,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Filter {
    /// `notification`, `webhook` or `job`.
    kind: Option<String>,
    /// `open`, `retried` or `discarded`.
    status: Option<String>,
}

problems!(ListErrors: Unauthorized, InvalidRequest; DATABASE, EDGE);

/// Dead letters, newest first.
#[utoipa::path(get, path = "/v1/admin/dead_letters", tag = "operations", operation_id = "list_dead_letters",
    security(("operator_token" = [])), params(Filter, PageParams),
    responses((status = 200, description = "A page of entries.", body = DeadLetterList), ListErrors))]
pub async fn list(
    State(state): State<AppState>,
    _operator: Operator,
    Query(filter): Query<Filter>,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<DeadLetterList>> {
    let kind = filter.kind.as_deref().map(Kind::parse).transpose()?;
    let status = filter.status.as_deref().map(Status::parse).transpose()?;
    let page = params.parse::<DeadLetterId>("dead letter")?;
    let rows = dead_letters::list(&state.pool, kind, status, page.after, page.fetch()).await?;
    let (rows, has_more) = page.cut(rows);
    Ok(axum::Json(DeadLetterList { object: "list", data: rows.into_iter().map(Into::into).collect(), has_more }))
}

problems!(OneErrors: Unauthorized, NotFound; DATABASE, EDGE);
problems!(RetryErrors: Unauthorized, NotFound, InvalidRequest; DATABASE, EDGE);

/// One entry in full.
#[utoipa::path(get, path = "/v1/admin/dead_letters/{id}", tag = "operations", operation_id = "get_dead_letter",
    security(("operator_token" = [])), params(("id" = String, Path, description = "The entry's id (`dlq_…`).")),
    responses((status = 200, description = "The entry.", body = DeadLetterBody), OneErrors))]
pub async fn get(
    State(state): State<AppState>,
    _operator: Operator,
    Path(id): Path<DeadLetterId>,
) -> ApiResult<axum::Json<DeadLetterBody>> {
    Ok(axum::Json(dead_letters::get(&state.pool, id).await?.into()))
}

/// Replay an open entry once: its delivery is queued again with a fresh
/// retry budget and the entry becomes `retried`. Retrying an entry that is
/// not open queues nothing and answers it as it stands. Only `notification`
/// entries can be replayed so far (`422` for others).
#[utoipa::path(post, path = "/v1/admin/dead_letters/{id}/retry", tag = "operations",
    operation_id = "retry_dead_letter", security(("operator_token" = [])),
    params(("id" = String, Path, description = "The entry's id (`dlq_…`).")),
    responses((status = 202, description = "Queued again (or already resolved: nothing queued).", body = DeadLetterBody),
              RetryErrors))]
pub async fn retry(
    State(state): State<AppState>,
    _operator: Operator,
    Path(id): Path<DeadLetterId>,
) -> ApiResult<(StatusCode, axum::Json<DeadLetterBody>)> {
    Ok((StatusCode::ACCEPTED, axum::Json(dead_letters::retry(&state.pool, id).await?.into())))
}

/// Close an open entry without sending.
#[utoipa::path(post, path = "/v1/admin/dead_letters/{id}/discard", tag = "operations",
    operation_id = "discard_dead_letter", security(("operator_token" = [])),
    params(("id" = String, Path, description = "The entry's id (`dlq_…`).")),
    responses((status = 200, description = "The entry, `discarded` (or as it stood, if not open).", body = DeadLetterBody),
              OneErrors))]
pub async fn discard(
    State(state): State<AppState>,
    _operator: Operator,
    Path(id): Path<DeadLetterId>,
) -> ApiResult<axum::Json<DeadLetterBody>> {
    Ok(axum::Json(dead_letters::discard(&state.pool, id).await?.into()))
}
