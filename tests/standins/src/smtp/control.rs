//! The stand-in's HTTP control endpoint: messages and faults.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use super::{Received, Shared, SmtpFaults};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/messages", get(messages).delete(clear))
        .route("/faults", get(faults).post(set_faults))
        .with_state(shared)
}

async fn messages(State(shared): State<Arc<Shared>>) -> Json<Vec<Received>> {
    Json(shared.state().messages.clone())
}

async fn clear(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.state().messages.clear();
    StatusCode::NO_CONTENT
}

async fn faults(State(shared): State<Arc<Shared>>) -> Json<SmtpFaults> {
    Json(shared.state().faults.clone())
}

async fn set_faults(State(shared): State<Arc<Shared>>, Json(faults): Json<SmtpFaults>) -> Json<SmtpFaults> {
    shared.state().faults = faults.clone();
    Json(faults)
}
