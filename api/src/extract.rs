//! Extractors: JSON bodies and queries whose failures answer in
//! problem+json, typed path ids (a malformed id names no resource: `404`),
//! and the two kinds of caller (merchant API key, buyer token). Putting the
//! caller in the handler's signature means a handler cannot forget the scope.

use std::net::IpAddr;
use std::str::FromStr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::Utc;
use gavel_domain::ids::{AuctionId, BuyerId, ClaimId, DeadLetterId, DeviceId, MerchantId, OrderId, ProductId, SaleId};
use gavel_domain::merchants;
use serde::de::DeserializeOwned;

use crate::problem::{ErrorCode, Problem};
use crate::state::AppState;

/// `axum::Json`, with every rejection turned into our problem+json.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            ErrorCode::UnsupportedMediaType,
            "the body must be JSON, sent with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => {
            Problem::new(ErrorCode::MalformedJson, format!("the body is not valid JSON: {}", e.body_text()))
        }
        JsonRejection::JsonDataError(e) => Problem::new(ErrorCode::InvalidRequest, data_error_text(&e.body_text())),
        // The same answer the idempotency layer gives when it reads the body first.
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Problem::body_too_large(),
        JsonRejection::BytesRejection(e) => Problem::new(ErrorCode::UnreadableBody, e.body_text()),
        other => Problem::new(ErrorCode::InvalidRequest, other.body_text()),
    }
}

/// `axum::extract::Query`, with a malformed query string answered in problem+json.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Self(v))
            .map_err(|e| Problem::new(ErrorCode::InvalidRequest, data_error_text(&e.body_text())))
    }
}

/// serde's message without axum's prefix.
fn data_error_text(text: &str) -> String {
    text.split_once(": ").map_or(text, |(_, rest)| rest).to_owned()
}

/// An id that can name a resource in a path.
pub trait PathId: FromStr + Send {
    /// The resource, as a `404` names it.
    const WHAT: &'static str;
}

impl PathId for SaleId {
    const WHAT: &'static str = "sale";
}
impl PathId for ClaimId {
    const WHAT: &'static str = "claim";
}
impl PathId for OrderId {
    const WHAT: &'static str = "order";
}
impl PathId for AuctionId {
    const WHAT: &'static str = "auction";
}
impl PathId for DeviceId {
    const WHAT: &'static str = "device";
}
impl PathId for ProductId {
    const WHAT: &'static str = "product";
}
impl PathId for DeadLetterId {
    const WHAT: &'static str = "dead letter";
}

/// The route's one path parameter as a typed id (`Path<SaleId>`): an id of
/// another kind, or no id at all, names no resource, so it is `404 not_found`.
pub struct Path<T>(pub T);

impl<T: PathId, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| Problem::not_found(T::WHAT))?;
        raw.parse().map(Self).map_err(|_| Problem::not_found(T::WHAT))
    }
}

pub(crate) fn bearer(parts: &Parts) -> Result<&str, Problem> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| Problem::unauthorized("missing Authorization: Bearer credentials"))?;
    // RFC 9110: the scheme is case-insensitive.
    header
        .to_str()
        .ok()
        .and_then(|h| h.trim_start().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Problem::unauthorized("Authorization must be `Bearer <credentials>`"))
}

/// The address of the client as the connection reports it: proxy headers are
/// not trusted (behind a proxy, every client shares the proxy's address).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match crate::server::peer(parts) {
            Some(addr) => Ok(Self(addr.ip())),
            None => {
                tracing::error!("no peer address: the router must be served by gavel_api::server::serve");
                Err(Problem::internal())
            }
        }
    }
}

/// A request made with a merchant's API key.
#[derive(Debug, Clone, Copy)]
pub struct Merchant(pub MerchantId);

impl FromRequestParts<AppState> for Merchant {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(Caller::Merchant(m)) = parts.extensions.get::<Caller>() {
            return Ok(Merchant(*m)); // authenticated by the idempotency layer
        }
        let key = bearer(parts)?;
        if !key.starts_with("sk_") {
            return Err(Problem::unauthorized("this endpoint needs a merchant API key (sk_…)"));
        }
        merchants::authenticate(&state.pool, key)
            .await?
            .map(Merchant)
            .ok_or_else(|| Problem::unauthorized("the API key is not valid"))
    }
}

/// A request made with a buyer's session token.
#[derive(Debug, Clone, Copy)]
pub struct Buyer(pub BuyerId);

impl FromRequestParts<AppState> for Buyer {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(Caller::Buyer(b)) = parts.extensions.get::<Caller>() {
            return Ok(Buyer(*b)); // authenticated by the idempotency layer
        }
        let token = bearer(parts)?;
        state
            .tokens
            .verify(token, Utc::now())
            .map(Buyer)
            .ok_or_else(|| Problem::unauthorized("the token is not valid or has expired"))
    }
}

/// A request made by a merchant or a buyer (endpoints both may read).
#[derive(Debug, Clone, Copy)]
pub enum Caller {
    Merchant(MerchantId),
    Buyer(BuyerId),
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if bearer(parts)?.starts_with("sk_") {
            Merchant::from_request_parts(parts, state).await.map(|Merchant(m)| Self::Merchant(m))
        } else {
            Buyer::from_request_parts(parts, state).await.map(|Buyer(b)| Self::Buyer(b))
        }
    }
}

/// An optional caller, for public endpoints that show more to some: no
/// `Authorization` header is the public (`None`); a header that does not
/// authenticate is still `401`.
#[derive(Debug, Clone, Copy)]
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(axum::http::header::AUTHORIZATION) {
            return Ok(Self(None));
        }
        Caller::from_request_parts(parts, state).await.map(|c| Self(Some(c)))
    }
}
