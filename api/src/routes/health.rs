//! Liveness, readiness and metrics — served by every role: by the API's own
//! listener, and by a small listener of their own for processes without one
//! (`--role workers`), so an orchestrator can probe each process.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::get;
use gavel_domain::health::Liveness;
use serde_json::{Value, json};
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// What the operations endpoints need.
#[derive(Clone)]
pub struct Ops {
    pub pool: PgPool,
    pub liveness: Liveness,
    /// `GAVEL_ADMIN_TOKEN`: the operator's credential (`/metrics`).
    pub admin_token: Option<Arc<str>>,
}

impl FromRef<AppState> for Ops {
    fn from_ref(state: &AppState) -> Self {
        state.ops.clone()
    }
}

/// The operations endpoints alone, for a process without the API.
pub fn ops_router(ops: Ops) -> Router {
    crate::metrics::install();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::render))
        .with_state(ops)
}

/// How long readiness waits for the database before calling it unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "The process is up.", body = Object, example = json!({ "status": "ok" }))))]
pub async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({ "status": "ok" }))
}

/// Ready: the database answers, every migration of this build is applied, and
/// every part of this process (job workers, listeners) is running.
#[utoipa::path(get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses((status = 200, description = "Ready; the body lists each part of the process.", body = Object),
              (status = 503, description = "Not ready: the body says why (`database`, and each part's state, last error and restarts).",
               body = Object)))]
pub async fn readyz(State(ops): State<Ops>) -> (StatusCode, axum::Json<Value>) {
    let expected = gavel_domain::MIGRATOR.iter().map(|m| m.version).max().unwrap_or_default();
    let applied = tokio::time::timeout(PROBE_TIMEOUT, gavel_domain::health::applied_migration(&ops.pool)).await;
    let database = match applied {
        Ok(Ok(Some(v))) if v >= expected => "ok",
        Ok(Ok(_)) => "migrations_pending",
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: database unreachable");
            "unreachable"
        }
        Err(_) => "unreachable",
    };
    let parts = ops.liveness.report();
    let ready = database == "ok" && ops.liveness.all_up();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": database,
        "expected_migration": expected,
        "parts": parts,
    });
    (status, axum::Json(body))
}

/// The operations endpoints as the API documents them.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(crate::metrics::render))
}
