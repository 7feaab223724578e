//! Every error the API answers, in one shape: [`ErrorCode`] lists each
//! machine code with its HTTP status, title and meaning (the docs' and the
//! README's tables are generated from it), and [`Problem`] is the RFC 9457
//! body — the same type answers (`IntoResponse`, `application/problem+json`)
//! and documents (`ToSchema`). The facts a client needs beside the standard
//! members are typed fields of their own, so none can overwrite `status`,
//! `title` or `code`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

/// Where problem types are documented: `type` is this followed by the code.
pub const TYPE_BASE: &str = "https://gavel.dev/problems/";

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

macro_rules! error_codes {
    ($($variant:ident = ($code:literal, $status:ident, $title:literal, $meaning:literal),)+) => {
        /// The stable machine `code` of a problem. Each has one HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $(#[doc = $meaning] $variant,)+
        }

        impl ErrorCode {
            /// Every code, in the order of the documentation's table.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $code,)+ }
            }

            pub fn status(self) -> StatusCode {
                match self { $(Self::$variant => StatusCode::$status,)+ }
            }

            /// The problem type's short summary (the same for every occurrence).
            pub fn title(self) -> &'static str {
                match self { $(Self::$variant => $title,)+ }
            }

            /// What it means and what a client should do, in one line.
            pub fn meaning(self) -> &'static str {
                match self { $(Self::$variant => $meaning,)+ }
            }

            /// The problem's `type` URI.
            pub fn type_uri(self) -> &'static str {
                match self { $(Self::$variant => concat!("https://gavel.dev/problems/", $code),)+ }
            }
        }
    };
}

error_codes! {
    InvalidRequest = ("invalid_request", UNPROCESSABLE_ENTITY, "Invalid request",
        "A parameter or body member is missing or not acceptable; `field` names it when one is to blame."),
    MalformedJson = ("malformed_json", BAD_REQUEST, "Malformed JSON", "The body is not valid JSON."),
    UnsupportedMediaType = ("unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "Unsupported media type",
        "The body must be JSON, sent with `Content-Type: application/json`."),
    UnreadableBody = ("unreadable_body", BAD_REQUEST, "Unreadable body", "The request body could not be read."),
    BodyTooLarge = ("body_too_large", PAYLOAD_TOO_LARGE, "Body too large", "The body is larger than 1 MiB."),
    Unauthorized = ("unauthorized", UNAUTHORIZED, "Unauthorized",
        "Missing or invalid `Authorization: Bearer` credentials, or credentials of the wrong kind for this endpoint."),
    InvalidCredentials = ("invalid_credentials", UNAUTHORIZED, "Invalid credentials", "The email or password is wrong."),
    NotFound = ("not_found", NOT_FOUND, "Not found",
        "No such resource for this caller (another tenant's resources are not found either), or no such endpoint."),
    MethodNotAllowed = ("method_not_allowed", METHOD_NOT_ALLOWED, "Method not allowed",
        "The endpoint does not take this method."),
    RequestTimeout = ("request_timeout", REQUEST_TIMEOUT, "Request timeout", "The request was not answered in time."),
    EmailTaken = ("email_taken", CONFLICT, "Email taken", "An account with this email already exists."),
    SoldOut = ("sold_out", CONFLICT, "Sold out", "Every unit of the sale is sold or held."),
    SaleNotActive = ("sale_not_active", CONFLICT, "Sale not active", "The sale is not open for claims."),
    SaleNotEditable = ("sale_not_editable", CONFLICT, "Sale not editable",
        "The sale has started, ended or been cancelled and can no longer change; `sale_status` says which."),
    AuctionNotEditable = ("auction_not_editable", CONFLICT, "Auction not editable",
        "The auction has ended and can no longer change (a cancelled one answers its cancellation again)."),
    BidTooLow = ("bid_too_low", CONFLICT, "Bid too low",
        "The bid is below `min_next_bid`, or a leader's bid does not raise their maximum; `current_price` and `min_next_bid` give the state. The attempt is stored (`bid_id`)."),
    AuctionClosed = ("auction_closed", CONFLICT, "Auction closed",
        "The auction has ended (its end has passed) or was cancelled. The attempt is stored (`bid_id`)."),
    AuctionNotStarted = ("auction_not_started", CONFLICT, "Auction not started",
        "The auction has not started yet. The attempt is stored (`bid_id`)."),
    AmountOutOfRange = ("amount_out_of_range", UNPROCESSABLE_ENTITY, "Amount out of range",
        "`amount` or `max_amount` is outside 1 to 99,999,999 minor units. The attempt is stored (`bid_id`)."),
    InvalidMaxAmount = ("invalid_max_amount", UNPROCESSABLE_ENTITY, "Invalid max_amount",
        "`max_amount` is below `amount`. The attempt is stored (`bid_id`)."),
    CurrencyMismatch = ("currency_mismatch", UNPROCESSABLE_ENTITY, "Currency mismatch",
        "The bid names a currency other than the auction's. The attempt is stored (`bid_id`)."),
    OwnAuction = ("own_auction", FORBIDDEN, "Own auction",
        "The bidder's account belongs to the auction's merchant, who may not bid on it. The attempt is stored (`bid_id`)."),
    VersionMismatch = ("version_mismatch", PRECONDITION_FAILED, "Version mismatch",
        "`If-Match` does not name the resource's current version; `current_version` gives it when known."),
    IfMatchRequired = ("if_match_required", PRECONDITION_REQUIRED, "If-Match required",
        "Send `If-Match` with the resource's ETag."),
    RateLimited = ("rate_limited", TOO_MANY_REQUESTS, "Rate limited",
        "Too many attempts (claims per buyer, bids per buyer and auction — that attempt is stored with `bid_id` —, sign-ups and sign-ins per address, wrong passwords per account); retry after `Retry-After` seconds."),
    InvalidIdempotencyKey = ("invalid_idempotency_key", BAD_REQUEST, "Invalid Idempotency-Key",
        "`Idempotency-Key` must be 1 to 255 visible ASCII characters."),
    IdempotencyKeyReused = ("idempotency_key_reused", UNPROCESSABLE_ENTITY, "Idempotency-Key reused",
        "This `Idempotency-Key` was used with a different request."),
    IdempotencyKeyInUse = ("idempotency_key_in_use", CONFLICT, "Idempotency-Key in use",
        "A request with this `Idempotency-Key` is being processed; retry after `Retry-After` seconds."),
    ClaimExpired = ("claim_expired", GONE, "Claim expired", "The hold has expired; the unit went back to stock."),
    CheckoutInProgress = ("checkout_in_progress", CONFLICT, "Checkout in progress",
        "Another checkout or payment of this claim or order is in flight; fetch the order or retry shortly."),
    OrderNotPayable = ("order_not_payable", CONFLICT, "Order not payable",
        "The order cannot be paid in its state; `order_status` says which."),
    OrderNotCancellable = ("order_not_cancellable", CONFLICT, "Order not cancellable",
        "Only an auction's order that is unpaid, with no payment in flight, can be cancelled; `order_status` says what it is."),
    PaymentWindowClosed = ("payment_window_closed", GONE, "Payment window closed",
        "The order's payment deadline has passed (once it lapses, paying is `409 order_not_payable` with `order_status: lapsed`)."),
    SecondChanceUnavailable = ("second_chance_unavailable", CONFLICT, "Second chance unavailable",
        "A second-chance offer is made only when the auction has ended with a winner whose order lapsed unpaid or was cancelled."),
    NoRunnerUp = ("no_runner_up", CONFLICT, "No runner-up",
        "No bidder other than the winner made an accepted bid, so there is nobody to offer the lot to."),
    PaymentsUnavailable = ("payments_unavailable", SERVICE_UNAVAILABLE, "Payments unavailable",
        "The payment provider is failing; the hold is kept. Retry after `Retry-After` seconds."),
    Contention = ("contention", SERVICE_UNAVAILABLE, "Contention",
        "Too many concurrent writers; nothing was stored. Retry after `Retry-After` seconds."),
    Overloaded = ("overloaded", SERVICE_UNAVAILABLE, "Overloaded",
        "No database connection or password-hashing turn came in time; retry after `Retry-After` seconds."),
    DatabaseUnavailable = ("database_unavailable", SERVICE_UNAVAILABLE, "Database unavailable",
        "The database cannot be reached right now; retry after `Retry-After` seconds."),
    TooManyWatchers = ("too_many_watchers", SERVICE_UNAVAILABLE, "Too many watchers",
        "This server streams as many live feeds as it is configured to; retry after `Retry-After` seconds."),
    InvalidSignature = ("invalid_signature", BAD_REQUEST, "Invalid signature",
        "`Stripe-Signature` is missing, wrong or outside the ±300 s tolerance."),
    InvalidEvent = ("invalid_event", BAD_REQUEST, "Invalid event", "The Stripe event body is not UTF-8."),
    InvalidWebhookUrl = ("invalid_webhook_url", UNPROCESSABLE_ENTITY, "Invalid webhook URL",
        "The webhook URL is not an http(s) URL, or names a private, loopback, link-local or unspecified address."),
    InternalError = ("internal_error", INTERNAL_SERVER_ERROR, "Internal error",
        "Something went wrong on Gavel's side (logged); retrying may help."),
}

impl ErrorCode {
    /// Answers that carry `Retry-After`.
    pub fn retries(self) -> bool {
        matches!(
            self,
            Self::RateLimited
                | Self::IdempotencyKeyInUse
                | Self::PaymentsUnavailable
                | Self::Contention
                | Self::Overloaded
                | Self::DatabaseUnavailable
                | Self::TooManyWatchers
        )
    }

    /// The Markdown table of every code (the docs page's and the README's).
    pub fn markdown_table() -> String {
        let mut table = String::from("| status | code | meaning |\n|---|---|---|\n");
        for code in Self::ALL {
            table.push_str(&format!("| {} | `{}` | {} |\n", code.status().as_u16(), code.as_str(), code.meaning()));
        }
        table
    }
}

/// An RFC 9457 problem, as every error is answered (`application/problem+json`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({
    "type": "https://gavel.dev/problems/sold_out", "title": "Sold out", "status": 409,
    "code": "sold_out", "detail": "every unit of this sale is sold or held"
})))]
pub struct Problem {
    /// A URI naming the problem type: `https://gavel.dev/problems/` followed by `code`.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: Cow<'static, str>,
    /// The problem type's short summary.
    #[schema(value_type = String)]
    pub title: Cow<'static, str>,
    /// The HTTP status code.
    pub status: u16,
    /// The stable machine code; see the table of codes.
    pub code: ErrorCode,
    /// What happened, for a human.
    pub detail: String,
    /// `invalid_request`: the parameter or body member to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `version_mismatch`: the resource's current version (its ETag, unquoted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i32>,
    /// `sale_not_editable`: the sale's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::routes::sales::SaleStatusBody>)]
    pub sale_status: Option<Cow<'static, str>>,
    /// `order_not_payable`: the order's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::routes::orders::OrderStatusBody>)]
    pub order_status: Option<Cow<'static, str>>,
    /// Bid refusals: the stored attempt (`bid_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid_id: Option<String>,
    /// Bid refusals: the auction's price after the attempt (minor units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_price: Option<i64>,
    /// Bid refusals: the least amount the next bid may carry (minor units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_next_bid: Option<i64>,
    /// Sent as the `Retry-After` header, not in the body.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            kind: Cow::Borrowed(code.type_uri()),
            title: Cow::Borrowed(code.title()),
            status: code.status().as_u16(),
            code,
            detail: detail.into(),
            field: None,
            current_version: None,
            sale_status: None,
            order_status: None,
            bid_id: None,
            current_price: None,
            min_next_bid: None,
            retry_after: None,
        }
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn current_version(mut self, version: i32) -> Self {
        self.current_version = Some(version);
        self
    }

    pub fn sale_status(mut self, status: &'static str) -> Self {
        self.sale_status = Some(Cow::Borrowed(status));
        self
    }

    pub fn order_status(mut self, status: &'static str) -> Self {
        self.order_status = Some(Cow::Borrowed(status));
        self
    }

    /// A refused bid's facts: the stored attempt and the state after it.
    pub fn bid(mut self, bid_id: String, current_price: i64, min_next_bid: i64) -> Self {
        self.bid_id = Some(bid_id);
        self.current_price = Some(current_price);
        self.min_next_bid = Some(min_next_bid);
        self
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("no such {what}"))
    }

    pub fn body_too_large() -> Self {
        Self::new(ErrorCode::BodyTooLarge, "the body is larger than 1 MiB")
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, detail)
    }

    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, format!("{field}: {}", reason.into())).field(field)
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalError, "something went wrong on our side")
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let body = match serde_json::to_vec(&self) {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(error = %err, "a problem did not serialize");
                return status.into_response();
            }
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The documented responses for `codes`: one per status, naming each code it
/// may carry, with an example of each, as `application/problem+json`.
pub fn responses(codes: &[ErrorCode]) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for code in codes {
        let same = by_status.entry(code.status().as_u16()).or_default();
        if !same.contains(code) {
            same.push(*code);
        }
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            let description = codes.iter().map(|c| format!("`{}`: {}", c.as_str(), c.meaning())).collect::<Vec<_>>();
            let mut content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem")));
            for code in &codes {
                let example = serde_json::to_value(Problem::new(*code, code.meaning())).ok();
                content = content.examples_from_iter([(code.as_str(), ExampleBuilder::new().value(example).build())]);
            }
            let mut response =
                ResponseBuilder::new().description(description.join("\n\n")).content(PROBLEM_JSON, content.build());
            if codes.iter().any(|c| c.retries()) {
                response = response.header("Retry-After", retry_after_header());
            }
            if status == 401 {
                let challenge = HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .description(Some("`Bearer`"))
                    .build();
                response = response.header("WWW-Authenticate", challenge);
            }
            (status.to_string(), RefOr::T(response.build()))
        })
        .collect()
}

fn retry_after_header() -> Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1))))
        .description(Some("Seconds to wait before retrying."))
        .build()
}

/// `problems!(Name: Code, Code, …; SET, …)` declares a route's possible
/// errors as a type for `#[utoipa::path(responses(…, Name))]`.
macro_rules! problems {
    ($(#[$meta:meta])* $name:ident: $($code:ident),* $(; $($set:expr),+)?) => {
        $(#[$meta])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                #[allow(unused_mut)]
                let mut codes: Vec<$crate::problem::ErrorCode> = vec![$($crate::problem::ErrorCode::$code),*];
                $($(codes.extend_from_slice($set);)+)?
                $crate::problem::responses(&codes)
            }
        }
    };
}
pub(crate) use problems;

/// What any request may get at the edge, whatever the route: a declared
/// body over 1 MiB is refused before routing, a slow answer times out.
pub const EDGE: &[ErrorCode] = &[ErrorCode::BodyTooLarge, ErrorCode::RequestTimeout, ErrorCode::InternalError];
/// What a route that reads the database may get when it is busy or away.
pub const DATABASE: &[ErrorCode] = &[ErrorCode::Overloaded, ErrorCode::DatabaseUnavailable];
/// What a route taking a JSON body may get for the body itself.
pub const JSON_BODY: &[ErrorCode] = &[
    ErrorCode::InvalidRequest,
    ErrorCode::MalformedJson,
    ErrorCode::UnsupportedMediaType,
    ErrorCode::UnreadableBody,
    ErrorCode::BodyTooLarge,
];
/// What a route with `Idempotency-Key` may get for the key.
pub const KEYED: &[ErrorCode] = &[
    ErrorCode::InvalidIdempotencyKey,
    ErrorCode::IdempotencyKeyReused,
    ErrorCode::IdempotencyKeyInUse,
    ErrorCode::BodyTooLarge,
];
/// An authenticated route.
pub const AUTHENTICATED: &[ErrorCode] = &[ErrorCode::Unauthorized];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_spells_as_it_serializes_and_has_its_own_type() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).ok(), Some(serde_json::json!(code.as_str())));
            assert_eq!(code.type_uri(), format!("{TYPE_BASE}{}", code.as_str()));
            assert!(code.status().is_client_error() || code.status().is_server_error(), "{code:?}");
            assert!(seen.insert(code.as_str()), "{code:?} twice");
        }
    }

    #[test]
    fn facts_sit_beside_the_standard_members() {
        let problem =
            Problem::new(ErrorCode::SaleNotEditable, "the sale is active").sale_status("active").retry_after(0);
        let body = serde_json::to_value(&problem).unwrap_or_default();
        assert_eq!(body["status"], 409);
        assert_eq!(body["sale_status"], "active");
        assert_eq!(body["code"], "sale_not_editable");
        assert_eq!(body["type"], "https://gavel.dev/problems/sale_not_editable");
        assert!(body.get("retry_after").is_none() && body.get("field").is_none());
        assert_eq!(problem.retry_after, Some(1));
    }

    /// The README's table of codes is this enum's: regenerate it with
    /// `GAVEL_BLESS=1 cargo test -p gavel-api readme`.
    #[test]
    fn readme_lists_every_error_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
        let readme = std::fs::read_to_string(path).unwrap_or_default();
        let (start, end) = ("<!-- error-codes:start -->\n", "<!-- error-codes:end -->");
        let table = ErrorCode::markdown_table();
        let (Some(a), Some(b)) = (readme.find(start), readme.find(end)) else {
            panic!("README.md has no {start:?} … {end:?} section");
        };
        let current = &readme[a + start.len()..b];
        if current != table && std::env::var_os("GAVEL_BLESS").is_some() {
            let updated = format!("{}{table}{}", &readme[..a + start.len()], &readme[b..]);
            std::fs::write(path, updated).unwrap_or_else(|e| panic!("write README.md: {e}"));
            return;
        }
        assert_eq!(
            current, table,
            "README.md's table of error codes differs from ErrorCode (GAVEL_BLESS=1 rewrites it)"
        );
    }
}
