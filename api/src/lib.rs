//! Gavel's HTTP API: turns requests into domain calls and domain results (and
//! errors) into JSON and problem+json. Handlers stay thin; the rules live in
//! `gavel-domain` and `gavel-workflows`.
#![forbid(unsafe_code)]
// A `Problem` is ~170 bytes and travels by value in `Result`s: the sold-out
// answer is the hot path, and a move is cheaper there than boxing every error.
#![allow(clippy::result_large_err)]

pub mod auth_limits;
pub mod bid_engine;
pub mod body_limit;
pub mod claim_engine;
pub mod error;
pub mod extract;
pub mod feed_hub;
pub mod idempotency;
pub mod metrics;
pub mod openapi;
pub mod operator;
pub mod pagination;
pub mod problem;
pub mod rate_limit;
pub mod routes;
pub mod server;
pub mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use problem::{ErrorCode, Problem};
use routes::{
    auctions, bids, buyers, claims, dead_letters, devices, feed, health, orders, preferences, products, sales,
    stripe_webhook, watches, webhook_deliveries, webhook_endpoints,
};
pub use state::AppState;

/// Every documented route, with its OpenAPI document (without a state, for
/// the document alone: see [`openapi::document`]).
pub fn api(state: Option<&AppState>) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(buyers::router(state))
        .merge(products::router(state))
        .merge(sales::router(state))
        .merge(auctions::router(state))
        .merge(bids::router(state))
        .merge(claims::router(state))
        .merge(orders::router(state))
        .merge(devices::router(state))
        .merge(preferences::router())
        .merge(watches::router(state))
        .merge(feed::router())
        .merge(stripe_webhook::router())
        .merge(health::router())
        .merge(dead_letters::router())
        .merge(routes::reconciliation_runs::router(state))
        .merge(webhook_endpoints::router(state))
        .merge(webhook_deliveries::router(state))
        .split_for_parts()
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    metrics::install();
    let (api, doc) = api(Some(&state));
    let document = openapi::Document::new(&doc);
    api.route("/openapi.json", get(move || async move { document }))
        .route("/docs", get(openapi::docs))
        .route("/docs/redoc.standalone.js", get(openapi::renderer))
        .fallback(|| async { Problem::new(ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            Problem::new(ErrorCode::MethodNotAllowed, "this endpoint does not take that method")
        })
        .layer(middleware::from_fn(metrics::track))
        .layer(DefaultBodyLimit::max(body_limit::MAX_BODY))
        .with_state(state)
}
