//! A merchant's webhook endpoints: create (with its `whsec_` secret), list,
//! read, edit (`If-Match` optional), delete, rotate the secret (the old one
//! signs beside the new for a day), and recover (re-send what failed since a time).

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use gavel_domain::ids::WebhookEndpointId;
use gavel_domain::webhooks::EventTypes;
use gavel_domain::webhooks::endpoints::{self, Endpoint, Patch};
use gavel_domain::webhooks::target::WebhookUrl;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::with_etag;
use crate::error::ApiResult;
use crate::extract::{Json, Merchant, Path, PathId, Query};
use crate::idempotency::{self, Effect, IdempotencyKey, Mode};
use crate::pagination::PageParams;
use crate::problem::{AUTHENTICATED, DATABASE, EDGE, ErrorCode, JSON_BODY, KEYED, Problem, problems};
use crate::state::AppState;

/// What the API needs of `[webhooks]`.
#[derive(Debug, Clone, Copy)]
pub struct WebhookSettings {
    /// `webhooks.allow_private_targets`.
    pub allow_private_targets: bool,
    /// How long a rotated-out secret keeps signing.
    pub rotation_overlap: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self { allow_private_targets: false, rotation_overlap: Duration::from_secs(86_400) }
    }
}

impl PathId for WebhookEndpointId {
    const WHAT: &'static str = "webhook endpoint";
}

pub fn router(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(idempotency::keyed(state, Mode::Effect, routes!(create)))
        .routes(routes!(list))
        .routes(routes!(get, patch, delete))
        .routes(idempotency::keyed(state, Mode::Outcome, routes!(rotate_secret)))
        .routes(idempotency::keyed(state, Mode::Outcome, routes!(recover)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({ "url": "https://shop.example.com/hooks/gavel", "events": ["order.paid", "order.refunded"] })))]
pub struct CreateEndpoint {
    /// An `http` or `https` URL reaching a public address.
    url: String,
    /// Event types to receive; absent or empty: all of them.
    #[serde(default)]
    events: Vec<String>,
}

/// A webhook endpoint. `secret` verifies its deliveries' signatures.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEndpoint, examples(json!({
    "object": "webhook_endpoint", "id": "we_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b",
    "url": "https://shop.example.com/hooks/gavel", "events": ["order.paid"], "enabled": true,
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "version": 1, "created_at": "2026-12-01T12:00:00Z"
})))]
pub struct EndpointBody {
    /// Always `webhook_endpoint`.
    #[schema(value_type = String)]
    object: &'static str,
    #[schema(value_type = String, examples("we_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"))]
    id: WebhookEndpointId,
    url: String,
    /// The event types it receives.
    events: Vec<String>,
    enabled: bool,
    /// Why Gavel disabled it (the receiver answered 410, or every attempt failed for days).
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<String>,
    /// `whsec_` + base64 of the key, as Standard Webhooks libraries take it.
    secret: String,
    version: i32,
    created_at: DateTime<Utc>,
}

impl From<&Endpoint> for EndpointBody {
    fn from(e: &Endpoint) -> Self {
        Self {
            object: "webhook_endpoint",
            id: e.id,
            url: e.url.clone(),
            events: EventTypes::shown(&e.events),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.clone(),
            secret: e.secret.clone(),
            version: e.version,
            created_at: e.created_at,
        }
    }
}

fn url(raw: &str, state: &AppState) -> ApiResult<WebhookUrl> {
    WebhookUrl::parse(raw, state.webhooks.allow_private_targets)
        .map_err(|e| Problem::new(ErrorCode::InvalidWebhookUrl, format!("url: {e}")).field("url"))
}

problems!(CreateEndpointErrors: InvalidWebhookUrl; AUTHENTICATED, JSON_BODY, KEYED, DATABASE, EDGE);

/// Add a webhook endpoint; its deliveries are signed with the `secret` answered.
#[utoipa::path(post, path = "/v1/webhook_endpoints", tag = "webhooks", operation_id = "create_webhook_endpoint",
    security(("merchant_key" = [])), params(IdempotencyKey), request_body = CreateEndpoint,
    responses((status = 201, description = "The endpoint, with its secret.", body = EndpointBody,
               headers(("ETag" = String, description = "The endpoint's version, quoted."))),
              CreateEndpointErrors))]
pub async fn create(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    effect: Effect,
    Json(body): Json<CreateEndpoint>,
) -> ApiResult<Response> {
    let url = url(&body.url, &state)?;
    let events = EventTypes::parse(&body.events)?;
    let mut tx = effect.begin().await?;
    let endpoint = endpoints::create(&mut tx, merchant, &url, &events, None).await?;
    tx.commit().await?;
    Ok(with_etag(StatusCode::CREATED, endpoint.version, EndpointBody::from(&endpoint)))
}

/// A page of webhook endpoints.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEndpointList)]
pub struct EndpointList {
    /// Always `list`.
    #[schema(value_type = String)]
    object: &'static str,
    data: Vec<EndpointBody>,
    has_more: bool,
}

problems!(ListEndpointsErrors: InvalidRequest; AUTHENTICATED, DATABASE, EDGE);

/// The merchant's webhook endpoints, newest first.
#[utoipa::path(get, path = "/v1/webhook_endpoints", tag = "webhooks", operation_id = "list_webhook_endpoints",
    security(("merchant_key" = [])), params(PageParams),
    responses((status = 200, description = "A page of endpoints.", body = EndpointList), ListEndpointsErrors))]
pub async fn list(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Query(params): Query<PageParams>,
) -> ApiResult<axum::Json<EndpointList>> {
    let page = params.parse::<WebhookEndpointId>("webhook endpoint")?;
    let (rows, has_more) = page.cut(endpoints::list(&state.pool, merchant, page.after, page.fetch()).await?);
    Ok(axum::Json(EndpointList { object: "list", data: rows.iter().map(EndpointBody::from).collect(), has_more }))
}

problems!(GetEndpointErrors: NotFound; AUTHENTICATED, DATABASE, EDGE);

/// One of the merchant's webhook endpoints.
#[utoipa::path(get, path = "/v1/webhook_endpoints/{id}", tag = "webhooks", operation_id = "get_webhook_endpoint",
    security(("merchant_key" = [])), params(("id" = String, Path, description = "The endpoint's id (`we_…`).")),
    responses((status = 200, description = "The endpoint.", body = EndpointBody,
               headers(("ETag" = String, description = "The endpoint's version, quoted."))),
              GetEndpointErrors))]
pub async fn get(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<WebhookEndpointId>,
) -> ApiResult<Response> {
    let endpoint = endpoints::get(&state.pool, merchant, id).await?;
    Ok(with_etag(StatusCode::OK, endpoint.version, EndpointBody::from(&endpoint)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({ "enabled": true })))]
pub struct PatchEndpoint {
    url: Option<String>,
    /// Event types to receive; empty: all of them.
    events: Option<Vec<String>>,
    /// Enabling clears a disabled endpoint's reason and its failure run.
    enabled: Option<bool>,
}

problems!(PatchEndpointErrors: NotFound, InvalidWebhookUrl, VersionMismatch; AUTHENTICATED, JSON_BODY, DATABASE, EDGE);

/// Change an endpoint's URL, event types or `enabled`; with `If-Match`, only at that version.
#[utoipa::path(patch, path = "/v1/webhook_endpoints/{id}", tag = "webhooks", operation_id = "update_webhook_endpoint",
    security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The endpoint's id (`we_…`)."),
           ("If-Match" = Option<String>, Header, description = "The endpoint's ETag (`\"3\"`), from its last answer.")),
    request_body = PatchEndpoint,
    responses((status = 200, description = "The endpoint as changed.", body = EndpointBody,
               headers(("ETag" = String, description = "The endpoint's version, quoted."))),
              PatchEndpointErrors))]
pub async fn patch(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<WebhookEndpointId>,
    headers: HeaderMap,
    Json(body): Json<PatchEndpoint>,
) -> ApiResult<Response> {
    let if_match = match headers.get(header::IF_MATCH) {
        None => None,
        Some(raw) => Some(
            raw.to_str()
                .ok()
                .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
                .and_then(|v| v.parse::<i32>().ok())
                .ok_or_else(|| Problem::new(ErrorCode::VersionMismatch, "If-Match is not a version ETag"))?,
        ),
    };
    let patch = Patch {
        url: body.url.as_deref().map(|u| url(u, &state)).transpose()?,
        events: body.events.as_deref().map(EventTypes::parse).transpose()?,
        enabled: body.enabled,
    };
    let endpoint = endpoints::update(&state.pool, merchant, id, if_match, &patch).await.map_err(|e| match e {
        gavel_domain::Error::VersionMismatch { expected, current } => Problem::new(
            ErrorCode::VersionMismatch,
            format!("If-Match names version {expected} but the endpoint is at version {current}"),
        )
        .current_version(current),
        other => other.into(),
    })?;
    Ok(with_etag(StatusCode::OK, endpoint.version, EndpointBody::from(&endpoint)))
}

problems!(DeleteEndpointErrors: NotFound; AUTHENTICATED, DATABASE, EDGE);

/// Delete an endpoint: nothing more is sent to it.
#[utoipa::path(delete, path = "/v1/webhook_endpoints/{id}", tag = "webhooks", operation_id = "delete_webhook_endpoint",
    security(("merchant_key" = [])), params(("id" = String, Path, description = "The endpoint's id (`we_…`).")),
    responses((status = 204, description = "Deleted."), DeleteEndpointErrors))]
pub async fn delete(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<WebhookEndpointId>,
) -> ApiResult<StatusCode> {
    if endpoints::delete(&state.pool, merchant, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found("webhook endpoint"))
    }
}

/// The new secret.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookSecret, examples(json!({ "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" })))]
pub struct SecretBody {
    secret: String,
}

problems!(RotateSecretErrors: NotFound; AUTHENTICATED, KEYED, DATABASE, EDGE);

/// A new signing secret. For a day the old one also signs (a second `v1,`
/// signature), so receivers can switch without losing a delivery.
#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}/rotate_secret", tag = "webhooks",
    operation_id = "rotate_webhook_secret", security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The endpoint's id (`we_…`)."), IdempotencyKey),
    responses((status = 200, description = "The new secret.", body = SecretBody), RotateSecretErrors))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<WebhookEndpointId>,
) -> ApiResult<axum::Json<SecretBody>> {
    let endpoint = endpoints::rotate_secret(&state.pool, merchant, id, state.webhooks.rotation_overlap).await?;
    Ok(axum::Json(SecretBody { secret: endpoint.secret }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({ "since": "2026-12-01T00:00:00Z" })))]
pub struct Recover {
    /// Failed deliveries made at or after this time are sent again.
    since: DateTime<Utc>,
}

/// How many deliveries were queued again.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookRecovery, examples(json!({ "object": "webhook_recovery", "requeued": 3 })))]
pub struct RecoverBody {
    #[schema(value_type = String)]
    object: &'static str,
    requeued: u64,
}

problems!(RecoverErrors: NotFound; AUTHENTICATED, JSON_BODY, KEYED, DATABASE, EDGE);

/// Send again, once each, every failed delivery to this endpoint made since `since`
/// (each with its original `webhook-id`; a disabled endpoint gets them too).
#[utoipa::path(post, path = "/v1/webhook_endpoints/{id}/recover", tag = "webhooks",
    operation_id = "recover_webhook_endpoint", security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The endpoint's id (`we_…`)."), IdempotencyKey),
    request_body = Recover,
    responses((status = 202, description = "The deliveries queued again.", body = RecoverBody), RecoverErrors))]
pub async fn recover(
    State(state): State<AppState>,
    Merchant(merchant): Merchant,
    Path(id): Path<WebhookEndpointId>,
    Json(body): Json<Recover>,
) -> ApiResult<(StatusCode, axum::Json<RecoverBody>)> {
    let requeued = endpoints::recover(&state.pool, merchant, id, body.since).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(RecoverBody { object: "webhook_recovery", requeued })))
}
