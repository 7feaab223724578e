//! The OpenAPI 3.1 document, generated from the handlers' annotations, and a
//! self-contained docs page that renders it (no CDN: it must work offline).

use axum::response::Html;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes::{buyers, claims, health, orders, products, sales, stripe_webhook};

/// An RFC 9457 problem, as every error is returned.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    r#type: String,
    title: String,
    status: u16,
    /// Stable machine code: `sold_out`, `sale_not_active`, `idempotency_key_reused`…
    code: String,
    detail: String,
}

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |desc: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(desc.to_owned());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme("merchant_key", bearer("A merchant API key, sk_…"));
        components.add_security_scheme("buyer_token", bearer("A buyer session token from /v1/buyers or /v1/sessions"));
        components.add_security_scheme("operator_token", bearer("The operator token, GAVEL_ADMIN_TOKEN"));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Gavel", description = "Flash sales and auctions with durable workflows."),
    paths(
        buyers::sign_up, buyers::sign_in, products::create,
        sales::create, sales::get, sales::list, sales::patch, sales::cancel,
        claims::create, claims::get,
        orders::checkout, orders::pay, orders::get, orders::list, stripe_webhook::receive,
        health::healthz, health::readyz, crate::metrics::render,
    ),
    components(schemas(Problem)),
    modifiers(&Security),
)]
pub struct ApiDoc;

pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}

pub async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}
