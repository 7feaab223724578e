//! problem+json (RFC 9457) errors. Every error the API returns goes through
//! [`ApiError`], and every domain error is mapped to one here, in one place,
//! with a stable machine `code`. Internal details are logged, never returned.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gavel_domain::Error;
use serde_json::{Map, Value, json};

/// The members of a problem that facts may not replace.
const RESERVED: &[&str] = &["type", "title", "status", "detail", "instance", "code"];

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub extra: Map<String, Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self { status, code, detail: detail.into(), extra: Map::new(), retry_after: None }
    }

    /// Adds a fact the client needs (`"field"`, `"current_version"`…). The
    /// members RFC 9457 defines (and our `code`) are never overwritten: a fact
    /// under one of their names is a bug, dropped (and caught by a test).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        debug_assert!(!RESERVED.contains(&key), "problem fact {key:?} would overwrite a standard member");
        if !RESERVED.contains(&key) {
            self.extra.insert(key.to_owned(), value.into());
        }
        self
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
    }

    pub fn body_too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the body is larger than 1 MiB")
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", format!("{field}: {}", reason.into()))
            .with("field", field)
    }

    fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

impl From<gavel_domain::Invalid> for ApiError {
    fn from(invalid: gavel_domain::Invalid) -> Self {
        Self::invalid(invalid.field, invalid.reason)
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        use StatusCode as S;
        match err {
            Error::Invalid(invalid) => invalid.into(),
            Error::NotFound(what) => Self::not_found(what),
            Error::SoldOut => Self::new(S::CONFLICT, "sold_out", "every unit of this sale is sold or held"),
            Error::SaleNotActive => Self::new(S::CONFLICT, "sale_not_active", "the sale is not open for claims"),
            Error::SaleLocked { status } => {
                Self::new(S::CONFLICT, "sale_not_editable", format!("the sale is {status} and can no longer change"))
                    .with("sale_status", status)
            }
            Error::VersionMismatch { expected, current } => Self::new(
                S::PRECONDITION_FAILED,
                "version_mismatch",
                format!("If-Match names version {expected} but the sale is at version {current}"),
            )
            .with("current_version", current),
            Error::EmailTaken => Self::new(S::CONFLICT, "email_taken", "an account with this email already exists"),
            Error::BadCredentials => Self::unauthorized("email or password is wrong").with_code("invalid_credentials"),
            Error::UnknownBuyer => Self::unauthorized("the token names no buyer"),
            Error::ClaimExpired => Self::new(S::GONE, "claim_expired", "the hold has expired"),
            Error::CheckoutInProgress => Self::new(
                S::CONFLICT,
                "checkout_in_progress",
                "another checkout of this claim is in progress; fetch the order or retry shortly",
            ),
            Error::OrderNotPayable { status } => {
                Self::new(S::CONFLICT, "order_not_payable", format!("the order is {status} and cannot be paid"))
                    .with("order_status", status)
            }
            Error::PaymentWindowClosed => {
                Self::new(S::GONE, "payment_window_closed", "the order's payment deadline has passed")
            }
            Error::PaymentUnavailable { retry_after } => Self::new(
                S::SERVICE_UNAVAILABLE,
                "payments_unavailable",
                "the payment provider is failing; your hold is kept, retry shortly",
            )
            .retry_after(retry_after.as_secs_f64().ceil() as u64),
            Error::Contention { retry_after } => {
                Self::new(S::SERVICE_UNAVAILABLE, "contention", "too many concurrent writers; retry shortly")
                    .retry_after(retry_after.as_secs())
            }
            Error::Overloaded { retry_after } => {
                Self::new(S::SERVICE_UNAVAILABLE, "overloaded", "the server is busy; retry shortly")
                    .retry_after(retry_after.as_secs())
            }
            Error::DatabaseUnavailable => Self::new(
                S::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database is briefly unavailable; retry shortly",
            )
            .retry_after(1),
            Error::Database(err) => {
                tracing::error!(error = %err, "database error");
                Self::internal()
            }
            Error::Internal(msg) => {
                tracing::error!(error = %msg, "internal error");
                Self::internal()
            }
        }
    }
}

impl ApiError {
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "something went wrong on our side")
    }

    fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("https://gavel.dev/problems/{}", self.code),
            "title": self.title(),
            "status": self.status.as_u16(),
            "code": self.code,
            "detail": self.detail,
        });
        if let Some(obj) = body.as_object_mut() {
            obj.extend(self.extra);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
