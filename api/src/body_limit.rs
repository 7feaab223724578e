//! One limit on request bodies, answered one way: `413 body_too_large`,
//! whichever route it is and whether or not anything would have read the
//! body (a claim reads none; with `Idempotency-Key` the layer reads it to hash
//! it). A declared `Content-Length` is judged before anything runs; a body of
//! unknown length is read up to the limit first.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;

/// The largest body any endpoint takes.
pub const MAX_BODY: usize = 1024 * 1024;

/// The request as the routes may take it, or the `413` it gets instead.
/// (Applied at the edge, by `server::serve`, in the same middleware as the
/// request deadline: one layer fewer on every request.)
pub async fn admit(req: Request) -> Result<Request, Response> {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(len) if len > MAX_BODY as u64 => Err(Problem::body_too_large().into_response()),
        Some(_) => Ok(req),
        // Neither a length nor chunks: HTTP/1.1 says there is no body.
        None if !req.headers().contains_key(header::TRANSFER_ENCODING) => Ok(req),
        None => {
            let (parts, body) = req.into_parts();
            match to_bytes(body, MAX_BODY).await {
                Ok(bytes) => Ok(Request::from_parts(parts, Body::from(bytes))),
                Err(_) => Err(Problem::body_too_large().into_response()),
            }
        }
    }
}
