//! The OpenAPI 3.1 document and the docs page that renders it.
//!
//! Paths come from the resource routers (`utoipa_axum`: each route and its
//! entry are written once); this module adds what is not a route's: the
//! introduction (how to authenticate, the conventions, the table of error
//! codes generated from [`ErrorCode`]), the security schemes and the shared
//! schemas. The document is serialized once, when the router is built. The
//! page is Redoc's standalone bundle, vendored (`api/assets/`) and served by
//! Gavel itself, so it works offline and loads nothing from elsewhere.

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::{ErrorCode, Problem};

const INTRODUCTION: &str = include_str!("../assets/introduction.md");

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |desc: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(desc.to_owned());
            SecurityScheme::Http(http)
        };
        components
            .add_security_scheme("merchant_key", bearer("A merchant API key, `sk_…` (`gavel merchants create`)."));
        components.add_security_scheme(
            "buyer_token",
            bearer("A buyer session token, from `POST /v1/buyers` or `POST /v1/sessions`."),
        );
        components.add_security_scheme("operator_token", bearer("The operator token, `GAVEL_ADMIN_TOKEN`."));
    }
}

struct Introduction;

impl Modify for Introduction {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let text = INTRODUCTION.replace("{{error_codes}}", &ErrorCode::markdown_table());
        doc.info.description = Some(text);
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Gavel", version = "1"),
    servers((url = "/", description = "This server")),
    tags(
        (name = "buyers", description = "Sign-up and sign-in: session tokens for buyers."),
        (name = "products", description = "What a merchant sells."),
        (name = "sales", description = "Flash sales: a fixed number of units for a short window."),
        (name = "claims", description = "A buyer's hold on one unit of a sale."),
        (name = "auctions", description = "One lot, bid up until its end (soft close may extend it)."),
        (name = "live feed", description = "Server-Sent Events of an auction's bids or a sale's stock, resumable \
            with `Last-Event-ID`; public."),
        (name = "orders", description = "Checkout and payment, and the orders they make."),
        (name = "notifications", description = "A buyer's devices (push tokens), notification preferences and \
            watched products."),
        (name = "providers", description = "Events from payment providers."),
        (name = "webhooks", description = "A merchant's webhook endpoints and their deliveries, signed per \
            Standard Webhooks."),
        (name = "operations", description = "Probes and metrics."),
    ),
    // `Envelope`: the body of every outbox event, as merchant webhooks will
    // deliver it (`type` + `data`, versioned).
    components(schemas(Problem, ErrorCode, gavel_domain::events::Envelope, gavel_domain::events::DomainEvent)),
    modifiers(&Security, &Introduction),
)]
pub struct ApiDoc;

/// The whole document, as `GET /openapi.json` serves it.
pub fn document() -> utoipa::openapi::OpenApi {
    crate::api(None).1
}

/// `GET /openapi.json`, serialized once.
#[derive(Clone)]
pub struct Document(Bytes);

impl Document {
    pub fn new(doc: &utoipa::openapi::OpenApi) -> Self {
        match serde_json::to_vec(doc) {
            Ok(json) => Self(Bytes::from(json)),
            Err(err) => {
                tracing::error!(error = %err, "the OpenAPI document did not serialize");
                Self(Bytes::from_static(b"{}"))
            }
        }
    }
}

impl IntoResponse for Document {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], self.0).into_response()
    }
}

/// `GET /docs`: it may load from this origin only (and use Redoc's inline styles).
pub async fn docs() -> Response {
    let policy = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                  font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:";
    ([(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(policy))], Html(include_str!("../assets/docs.html")))
        .into_response()
}

/// `GET /docs/redoc.standalone.js`: the vendored renderer.
pub async fn renderer() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")),
        ],
        Bytes::from_static(include_bytes!("../assets/redoc.standalone.js")),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    /// Writes the document to `target/openapi.json` for the tools (and people)
    /// that want it without a running server.
    #[test]
    fn the_document_has_every_route_and_serializes() {
        let doc = super::document();
        for path in ["/v1/sales", "/v1/sales/{id}/claims", "/v1/orders/{id}/pay", "/v1/stripe/webhook", "/metrics"] {
            assert!(doc.paths.paths.contains_key(path), "{path}");
        }
        let json = serde_json::to_string_pretty(&doc).unwrap_or_default();
        assert!(json.contains("application/problem+json"));
        let _ = std::fs::write(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/openapi.json"), json);
    }
}
