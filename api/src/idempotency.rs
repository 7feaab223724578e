//! `Idempotency-Key` for every mutating POST, as a layer in front of the routes.
//!
//! The key is scoped to the caller (a hash of its credentials). The first
//! request's response is stored; a repeat with the same method, path and body
//! replays it byte for byte (status and body), with `Idempotent-Replayed: true`.
//! A repeat with a different request is `422 idempotency_key_reused`; one that
//! arrives while the first is still running is `409 idempotency_key_in_use`.
//! Server errors and rate-limit answers are not stored, so the client's retry
//! runs again.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gavel_domain::idempotency::{self, Reservation};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

const HEADER: &str = "idempotency-key";
const MAX_BODY: usize = 1024 * 1024;

pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER) else {
        return next.run(req).await;
    };
    let key = match key.to_str() {
        Ok(k) if (1..=255).contains(&k.len()) => k.to_owned(),
        _ => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
            .into_response();
        }
    };
    let scope = caller_scope(&req);
    let (parts, body) = req.into_parts();
    let Ok(body) = to_bytes(body, MAX_BODY).await else {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the body is larger than 1 MiB")
            .into_response();
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update([0]);
    hasher.update(parts.uri.path());
    hasher.update([0]);
    hasher.update(&body);
    let request_hash = hasher.finalize();

    match idempotency::reserve(&state.pool, &scope, &key, &request_hash).await {
        Err(err) => ApiError::from(err).into_response(),
        Ok(Reservation::Mismatch) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        )
        .into_response(),
        Ok(Reservation::InProgress) => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_use",
            "a request with this Idempotency-Key is still being processed",
        )
        .retry_after(1)
        .into_response(),
        Ok(Reservation::Replay { status, content_type, body }) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            if let Some(ct) = content_type.and_then(|ct| HeaderValue::from_str(&ct).ok()) {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        Ok(Reservation::Proceed) => {
            let response = next.run(Request::from_parts(parts, Body::from(body))).await;
            store(&state, &scope, &key, response).await
        }
    }
}

async fn store(state: &AppState, scope: &str, key: &str, response: Response) -> Response {
    let status = response.status();
    let (parts, body) = response.into_parts();
    let Ok(body) = to_bytes(body, usize::MAX).await else {
        let _ = idempotency::release(&state.pool, scope, key).await;
        return ApiError::internal().into_response();
    };
    let keep = !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS);
    let saved = if keep {
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        idempotency::complete(&state.pool, scope, key, status.as_u16(), content_type, &body).await
    } else {
        idempotency::release(&state.pool, scope, key).await
    };
    if let Err(err) = saved {
        tracing::error!(error = %err, "could not store the idempotent response");
    }
    Response::from_parts(parts, Body::from(body))
}

fn caller_scope(req: &Request) -> String {
    match req.headers().get(header::AUTHORIZATION) {
        Some(auth) => hex::encode(Sha256::digest(auth.as_bytes())),
        None => "anonymous".to_owned(),
    }
}
