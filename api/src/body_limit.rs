//! One limit on request bodies, answered one way: `413 body_too_large`,
//! whichever route it is and whether or not anything would have read the
//! body (a claim reads none; with `Idempotency-Key` the layer reads it to hash
//! it). A declared `Content-Length` is judged before anything runs; a body of
//! unknown length is read up to the limit first.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The largest body any endpoint takes.
pub const MAX_BODY: usize = 1024 * 1024;

pub async fn layer(req: Request, next: Next) -> Response {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(len) if len > MAX_BODY as u64 => ApiError::body_too_large().into_response(),
        Some(_) => next.run(req).await,
        None if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE) => {
            next.run(req).await
        }
        None => {
            let (parts, body) = req.into_parts();
            match to_bytes(body, MAX_BODY).await {
                Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
                Err(_) => ApiError::body_too_large().into_response(),
            }
        }
    }
}
