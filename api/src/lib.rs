//! Gavel's HTTP API: turns requests into domain calls and domain results (and
//! errors) into JSON and problem+json. Handlers stay thin; the rules live in
//! `gavel-domain` and `gavel-workflows`.
#![forbid(unsafe_code)]

pub mod auth_limits;
pub mod body_limit;
pub mod claim_engine;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod operator;
pub mod pagination;
pub mod rate_limit;
pub mod routes;
pub mod server;
pub mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};

pub use error::ApiError;
use idempotency::Mode;
use routes::{buyers, claims, health, orders, products, sales, stripe_webhook};
pub use state::AppState;

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    metrics::install();
    // Idempotency-Key, per route: see `idempotency` for the three modes.
    let keyed = |mode| middleware::from_fn_with_state((state.clone(), mode), idempotency::layer);
    let v1 = Router::new()
        .route("/v1/buyers", post(buyers::sign_up).layer(keyed(Mode::SignUp)))
        .route("/v1/sessions", post(buyers::sign_in))
        .route("/v1/products", post(products::create).layer(keyed(Mode::Effect)))
        .route("/v1/sales", post(sales::create).layer(keyed(Mode::Effect)).get(sales::list))
        .route("/v1/sales/{id}", get(sales::get).patch(sales::patch))
        .route("/v1/sales/{id}/cancel", post(sales::cancel).layer(keyed(Mode::Outcome)))
        .route("/v1/sales/{id}/claims", post(claims::create).layer(keyed(Mode::Outcome)))
        .route("/v1/claims/{id}", get(claims::get))
        .route("/v1/claims/{id}/checkout", post(orders::checkout).layer(keyed(Mode::Outcome)))
        .route("/v1/orders", get(orders::list))
        .route("/v1/orders/{id}", get(orders::get))
        .route("/v1/orders/{id}/pay", post(orders::pay).layer(keyed(Mode::Outcome)));
    Router::new()
        .merge(v1)
        .route("/v1/stripe/webhook", post(stripe_webhook::receive))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .route("/openapi.json", get(openapi::document))
        .route("/docs", get(openapi::docs))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(middleware::from_fn(metrics::track))
        .layer(DefaultBodyLimit::max(body_limit::MAX_BODY))
        .with_state(state)
}
