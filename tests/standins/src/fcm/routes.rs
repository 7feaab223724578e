//! The FCM stand-in's routes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{FcmFaults, FcmMessage, FcmSend, Shared};
use crate::jwt;

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/token", post(token))
        .route("/v1/projects/{project}/{action}", post(send))
        .route("/_control/state", get(state))
        .route("/_control/messages", get(messages))
        .route("/_control/faults", post(set_faults).get(faults))
        .route("/_control/revoke_tokens", post(revoke_tokens))
        .route("/_control/reset", post(reset))
        .with_state(shared)
}

fn grant_error(why: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({ "error": "invalid_grant", "error_description": why }))).into_response()
}

async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return grant_error("grant_type must be urn:ietf:params:oauth:grant-type:jwt-bearer");
    }
    let Some(assertion) = form.get("assertion") else { return grant_error("no assertion") };
    let config = &shared.config;
    let verified = match jwt::verify(assertion, "RS256", &config.public_key) {
        Ok(v) => v,
        Err(why) => return grant_error(&format!("Invalid JWT Signature: {why}")),
    };
    let c = &verified.claims;
    if c["iss"] != config.client_email.as_str() {
        return grant_error("iss is not the service account");
    }
    if !c["scope"].as_str().is_some_and(|s| s.split(' ').any(|s| s == SCOPE)) {
        return grant_error("scope must include firebase.messaging");
    }
    if !c["aud"].as_str().is_some_and(|a| a.ends_with("/token")) {
        return grant_error("aud must be the token_uri");
    }
    let (Some(iat), Some(exp)) = (c["iat"].as_i64(), c["exp"].as_i64()) else {
        return grant_error("iat and exp are required");
    };
    let now = jwt::now();
    if exp <= now || iat > now + 300 || exp - iat > 3600 {
        return grant_error(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe",
        );
    }
    let bearer = format!("ya29.standin.{}", uuid::Uuid::new_v4().simple());
    let ttl = config.token_ttl_seconds;
    let mut store = shared.store();
    store.bearers.insert(bearer.clone(), now + ttl as i64);
    store.tokens_issued += 1;
    axum::Json(json!({ "access_token": bearer, "expires_in": ttl, "token_type": "Bearer" })).into_response()
}

/// A Google API error: `{"error":{code, message, status, details}}`.
fn api_error(status: StatusCode, text: &str, message: &str, details: Vec<Value>) -> Response {
    let body = json!({ "error": { "code": status.as_u16(), "message": message, "status": text, "details": details } });
    (status, axum::Json(body)).into_response()
}

fn fcm_detail(code: &str) -> Value {
    json!({ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code })
}

fn invalid(field: &str, description: &str) -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        &format!("Invalid value at '{field}': {description}"),
        vec![
            fcm_detail("INVALID_ARGUMENT"),
            json!({ "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{ "field": field, "description": description }] }),
        ],
    )
}

async fn send(
    State(shared): State<Arc<Shared>>,
    Path((project, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = shared.store().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let message: Option<Value> = serde_json::from_slice::<Value>(&body).ok().map(|b| b["message"].clone());
    let token = message.as_ref().and_then(|m| m["token"].as_str()).map(str::to_owned);
    let response = answer(&shared, &project, &action, bearer.as_deref(), message, token.as_deref());
    let error = (!response.status().is_success()).then(|| response.status().to_string());
    shared.store().sends.push(FcmSend { token, bearer, status: response.status().as_u16(), error });
    response
}

fn answer(
    shared: &Shared,
    project: &str,
    action: &str,
    bearer: Option<&str>,
    message: Option<Value>,
    token: Option<&str>,
) -> Response {
    if action != "messages:send" {
        return api_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such method", vec![]);
    }
    let mut store = shared.store();
    let now = jwt::now();
    if bearer.and_then(|b| store.bearers.get(b)).is_none_or(|exp| *exp <= now) {
        return api_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
            vec![],
        );
    }
    if project != shared.config.project_id {
        return api_error(StatusCode::FORBIDDEN, "PERMISSION_DENIED", "Permission denied on the project", vec![]);
    }
    let Some(message) = message.filter(Value::is_object) else { return invalid("message", "required") };
    let Some(token) = token.filter(|t| !t.is_empty()) else { return invalid("message.token", "required") };
    if let Some(data) = message.get("data")
        && !data.as_object().is_some_and(|d| d.values().all(Value::is_string))
    {
        return invalid("message.data", "values must be strings");
    }
    if let Some(android) = message.get("android") {
        if android.get("priority").is_some_and(|p| p != "NORMAL" && p != "HIGH") {
            return invalid("message.android.priority", "must be NORMAL or HIGH");
        }
        let ttl_ok = |t: &str| t.strip_suffix('s').is_some_and(|n| n.parse::<f64>().is_ok_and(|n| n >= 0.0));
        if android.get("ttl").is_some_and(|t| !t.as_str().is_some_and(ttl_ok)) {
            return invalid("message.android.ttl", "must be a duration like \"3600s\"");
        }
    }
    let faults = &mut store.faults;
    let retry_after = faults.retry_after_seconds;
    let with_retry_after = |mut response: Response| {
        if let Some(secs) = retry_after {
            response.headers_mut().insert("retry-after", secs.into());
        }
        response
    };
    if faults.fail_next > 0 {
        faults.fail_next -= 1;
        return with_retry_after(api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
            vec![fcm_detail("UNAVAILABLE")],
        ));
    }
    if faults.throttle_next > 0 {
        faults.throttle_next -= 1;
        return with_retry_after(api_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Messages'.",
            vec![fcm_detail("QUOTA_EXCEEDED")],
        ));
    }
    match faults.dead_tokens.get(token).map(String::as_str) {
        Some("INVALID_ARGUMENT") => {
            return invalid("message.token", "The registration token is not a valid FCM registration token");
        }
        Some("SENDER_ID_MISMATCH") => {
            return api_error(
                StatusCode::FORBIDDEN,
                "PERMISSION_DENIED",
                "SenderId mismatch",
                vec![fcm_detail("SENDER_ID_MISMATCH")],
            );
        }
        Some(_) => {
            return api_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "Requested entity was not found.",
                vec![fcm_detail("UNREGISTERED")],
            );
        }
        None => {}
    }
    let name = format!("projects/{project}/messages/{}", uuid::Uuid::new_v4().simple());
    store.messages.push(FcmMessage {
        name: name.clone(),
        token: token.to_owned(),
        message,
        received_at: chrono::Utc::now(),
    });
    axum::Json(json!({ "name": name })).into_response()
}

async fn state(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    let store = shared.store();
    axum::Json(json!({
        "faults": store.faults, "tokens_issued": store.tokens_issued,
        "messages": store.messages, "sends": store.sends,
    }))
}

async fn messages(State(shared): State<Arc<Shared>>) -> axum::Json<Vec<FcmMessage>> {
    axum::Json(shared.store().messages.clone())
}

async fn faults(State(shared): State<Arc<Shared>>) -> axum::Json<FcmFaults> {
    axum::Json(shared.store().faults.clone())
}

async fn set_faults(
    State(shared): State<Arc<Shared>>,
    axum::Json(faults): axum::Json<FcmFaults>,
) -> axum::Json<FcmFaults> {
    shared.set_faults(faults.clone());
    axum::Json(faults)
}

async fn revoke_tokens(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.store().bearers.clear();
    StatusCode::NO_CONTENT
}

async fn reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.set_faults(FcmFaults::default());
    let mut store = shared.store();
    store.messages.clear();
    store.sends.clear();
    StatusCode::NO_CONTENT
}
