//! The APNs stand-in's routes.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{ApnsDelivery, ApnsFaults, ApnsRequest, Shared};
use crate::jwt;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/3/device/{token}", post(push))
        .route("/_control/state", get(state))
        .route("/_control/deliveries", get(deliveries))
        .route("/_control/faults", post(set_faults).get(faults))
        .route("/_control/reset", post(reset))
        .with_state(shared)
}

/// An APNs error answer: `{"reason": …}` (and `timestamp` for `Unregistered`).
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str) -> Self {
        Self { status, reason, retry_after: None }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn push(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = shared.store().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let jwt = header(&headers, "authorization").map(str::to_owned);
    let outcome = check(&shared, &token, version, &headers, &body);
    let mut store = shared.store();
    let request = |status: StatusCode, reason: Option<&str>| ApnsRequest {
        token: token.clone(),
        http_version: format!("{version:?}"),
        status: status.as_u16(),
        reason: reason.map(str::to_owned),
        jwt: jwt.clone(),
    };
    let outcome = outcome.and_then(|delivery| {
        let faults = &mut store.faults;
        if faults.fail_next > 0 {
            faults.fail_next -= 1;
            return Err(Refusal {
                retry_after: faults.retry_after_seconds,
                ..Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError")
            });
        }
        if faults.throttle_next > 0 {
            faults.throttle_next -= 1;
            return Err(Refusal {
                retry_after: faults.retry_after_seconds,
                ..Refusal::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests")
            });
        }
        match faults.dead_tokens.get(&delivery.token).map(String::as_str) {
            Some("BadDeviceToken") => Err(Refusal::new(StatusCode::BAD_REQUEST, "BadDeviceToken")),
            Some("DeviceTokenNotForTopic") => Err(Refusal::new(StatusCode::BAD_REQUEST, "DeviceTokenNotForTopic")),
            Some(_) => Err(Refusal::new(StatusCode::GONE, "Unregistered")),
            None => Ok(delivery),
        }
    });
    match outcome {
        Err(refusal) => {
            store.requests.push(request(refusal.status, Some(refusal.reason)));
            let mut body = json!({ "reason": refusal.reason });
            if refusal.reason == "Unregistered" {
                body["timestamp"] = json!(chrono::Utc::now().timestamp_millis());
            }
            let mut response = (refusal.status, axum::Json(body)).into_response();
            if let Some(secs) = refusal.retry_after {
                response.headers_mut().insert("retry-after", secs.into());
            }
            response
        }
        Ok(delivery) => {
            let apns_id = delivery.apns_id.clone();
            store.requests.push(request(StatusCode::OK, None));
            store.deliveries.push(delivery);
            let mut response = StatusCode::OK.into_response();
            if let Ok(value) = apns_id.parse() {
                response.headers_mut().insert("apns-id", value);
            }
            response
        }
    }
}

/// Apple's checks, in the order Apple reports them.
fn check(
    shared: &Shared,
    token: &str,
    version: Version,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ApnsDelivery, Refusal> {
    use StatusCode as S;
    if version != Version::HTTP_2 {
        return Err(Refusal::new(S::HTTP_VERSION_NOT_SUPPORTED, "BadPath"));
    }
    let config = &shared.config;
    let bearer = header(headers, "authorization")
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or(Refusal::new(S::FORBIDDEN, "MissingProviderToken"))?;
    let verified = shared.verified.verify(bearer, "ES256", &config.public_key).map_err(|why| {
        tracing::info!(%why, "APNs stand-in: invalid provider token");
        Refusal::new(S::FORBIDDEN, "InvalidProviderToken")
    })?;
    if verified.header["kid"] != config.key_id.as_str() || verified.claims["iss"] != config.team_id.as_str() {
        return Err(Refusal::new(S::FORBIDDEN, "InvalidProviderToken"));
    }
    let issued_at = verified.claims["iat"].as_i64().ok_or(Refusal::new(S::FORBIDDEN, "InvalidProviderToken"))?;
    let age = jwt::now() - issued_at;
    if age > 3600 {
        return Err(Refusal::new(S::FORBIDDEN, "ExpiredProviderToken"));
    }
    if age < -300 {
        return Err(Refusal::new(S::FORBIDDEN, "InvalidProviderToken"));
    }
    let topic = header(headers, "apns-topic").ok_or(Refusal::new(S::BAD_REQUEST, "MissingTopic"))?;
    if topic != config.topic {
        return Err(Refusal::new(S::BAD_REQUEST, "BadTopic"));
    }
    let push_type = header(headers, "apns-push-type").unwrap_or("");
    if !["alert", "background", "location", "voip", "complication", "fileprovider", "mdm", "liveactivity", "pushtotalk"]
        .contains(&push_type)
    {
        return Err(Refusal::new(S::BAD_REQUEST, "InvalidPushType"));
    }
    let priority = header(headers, "apns-priority").unwrap_or("10");
    if !["1", "5", "10"].contains(&priority) {
        return Err(Refusal::new(S::BAD_REQUEST, "BadPriority"));
    }
    let expiration = header(headers, "apns-expiration");
    if expiration.is_some_and(|e| e.parse::<u64>().is_err()) {
        return Err(Refusal::new(S::BAD_REQUEST, "BadExpirationDate"));
    }
    let collapse_id = header(headers, "apns-collapse-id");
    if collapse_id.is_some_and(|c| c.len() > 64) {
        return Err(Refusal::new(S::BAD_REQUEST, "BadCollapseId"));
    }
    // The sender's own id, if it names one (Apple echoes it), else a new one.
    let apns_id = match header(headers, "apns-id") {
        Some(id) => uuid::Uuid::parse_str(id).map_err(|_| Refusal::new(S::BAD_REQUEST, "BadMessageId"))?,
        None => uuid::Uuid::new_v4(),
    };
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Refusal::new(S::BAD_REQUEST, "BadDeviceToken"));
    }
    if body.len() > 4096 {
        return Err(Refusal::new(S::PAYLOAD_TOO_LARGE, "PayloadTooLarge"));
    }
    let payload: Value = serde_json::from_slice(body).map_err(|_| Refusal::new(S::BAD_REQUEST, "PayloadEmpty"))?;
    if !payload["aps"].is_object() {
        return Err(Refusal::new(S::BAD_REQUEST, "PayloadEmpty"));
    }
    Ok(ApnsDelivery {
        apns_id: apns_id.hyphenated().to_string().to_uppercase(),
        token: token.to_owned(),
        topic: topic.to_owned(),
        push_type: push_type.to_owned(),
        priority: priority.to_owned(),
        expiration: expiration.map(str::to_owned),
        collapse_id: collapse_id.map(str::to_owned),
        key_id: verified.header["kid"].as_str().unwrap_or_default().to_owned(),
        issued_at,
        payload,
        received_at: chrono::Utc::now(),
    })
}

async fn state(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    let store = shared.store();
    axum::Json(json!({ "faults": store.faults, "deliveries": store.deliveries, "requests": store.requests }))
}

async fn deliveries(State(shared): State<Arc<Shared>>) -> axum::Json<Vec<ApnsDelivery>> {
    axum::Json(shared.store().deliveries.clone())
}

async fn faults(State(shared): State<Arc<Shared>>) -> axum::Json<ApnsFaults> {
    axum::Json(shared.store().faults.clone())
}

async fn set_faults(
    State(shared): State<Arc<Shared>>,
    axum::Json(faults): axum::Json<ApnsFaults>,
) -> axum::Json<ApnsFaults> {
    shared.set_faults(faults.clone());
    axum::Json(faults)
}

async fn reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.set_faults(ApnsFaults::default());
    let mut store = shared.store();
    store.deliveries.clear();
    store.requests.clear();
    StatusCode::NO_CONTENT
}
