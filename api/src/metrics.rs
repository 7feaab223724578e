//! Prometheus metrics: requests by route and status with latency histograms
//! (a layer), claims by outcome (recorded by the claim engine), and the stock
//! of every active sale (read from the database at scrape time, so ended
//! sales drop out of the series).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gavel_domain::sales::{self, Stock};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::fmt::Write;

use crate::operator::Operator;
use crate::routes::health::Ops;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once; later calls reuse it.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("gavel_claim_batch_size".into()),
                        &[1.0, 4.0, 16.0, 64.0, 128.0, 256.0, 512.0],
                    )
                })
                .and_then(|b| b.install_recorder())
                .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
                .ok()
        })
        .as_ref()
}

/// Every label takes its value from a fixed set: the route template (never the
/// raw path), a known method (anything invented is `OTHER`), the status code.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method: &'static str = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("gavel_http_request_duration_seconds", "route" => route.clone(), "method" => method)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("gavel_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    response
}

crate::problem::problems!(MetricsErrors: Unauthorized; crate::problem::EDGE);

/// `GET /metrics`: Prometheus text, for the operator only
/// (`Authorization: Bearer <GAVEL_ADMIN_TOKEN>`; it names live sales and their stock).
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    security(("operator_token" = [])),
    responses((status = 200, description = "Prometheus text exposition.", body = String, content_type = "text/plain"),
              MetricsErrors))]
pub async fn render(State(state): State<Ops>, _operator: Operator) -> Response {
    let mut text = HANDLE.get().and_then(Option::as_ref).map(PrometheusHandle::render).unwrap_or_default();
    if let Ok(rows) = sales::active_stock(&state.pool, 1000).await {
        text.push_str("# HELP gavel_sale_stock Units of each active sale by state.\n# TYPE gavel_sale_stock gauge\n");
        for Stock { sale_id: id, available, held, sold } in rows {
            for (s, n) in [("available", available), ("held", held), ("sold", sold)] {
                let _ = writeln!(text, "gavel_sale_stock{{sale=\"{id}\",state=\"{s}\"}} {n}");
            }
        }
    }
    let mut response = text.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}
