//! Liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200)))]
pub async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({ "status": "ok" }))
}

/// The database answers and every migration of this build is applied.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200), (status = 503)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, axum::Json<Value>) {
    let expected = gavel_domain::MIGRATOR.iter().map(|m| m.version).max().unwrap_or_default();
    let applied: Result<Option<i64>, _> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success").fetch_one(&state.pool).await;
    match applied {
        Ok(Some(v)) if v >= expected => (StatusCode::OK, axum::Json(json!({ "status": "ready" }))),
        Ok(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "migrations pending", "expected_version": expected })),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "status": "database unreachable" })))
        }
    }
}
