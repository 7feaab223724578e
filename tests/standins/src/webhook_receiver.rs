//! A merchant's webhook receiver stand-in: records every request it gets
//! (headers `webhook-id`, `webhook-timestamp`, `webhook-signature`, the raw
//! body) and answers as its faults say — a status (500, 410 Gone, 429 with
//! `Retry-After`, a 3xx redirect), a delay, or a hang (never answering).
//! It does not verify signatures: tests do that, with a verifier of their own.
//!
//! Control endpoints (under `/_control`): `GET /received` (JSON list),
//! `DELETE /received`, `GET|POST /faults` (`{"status":500,"retry_after":null,
//! "latency_ms":0,"hang":false}`). Every other `POST` path is a webhook.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

/// How the receiver answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ReceiverFaults {
    /// The status every webhook gets (200 when healthy).
    pub status: u16,
    /// Sent as `Retry-After` (seconds) with the status.
    pub retry_after: Option<u64>,
    /// Wait this long before answering.
    pub latency_ms: u64,
    /// Never answer (hold the request open).
    pub hang: bool,
}

impl Default for ReceiverFaults {
    fn default() -> Self {
        Self { status: 200, retry_after: None, latency_ms: 0, hang: false }
    }
}

/// One request as received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Received {
    pub path: String,
    pub webhook_id: Option<String>,
    pub webhook_timestamp: Option<String>,
    pub webhook_signature: Option<String>,
    pub content_type: Option<String>,
    /// The body exactly as sent (UTF-8; webhooks are JSON).
    pub body: String,
    /// The status it was answered with.
    pub answered: u16,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Default)]
struct Shared {
    faults: Mutex<ReceiverFaults>,
    received: Mutex<VecDeque<Received>>,
    print: bool,
}

/// A running receiver.
#[derive(Clone)]
pub struct WebhookReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// At most this many requests are kept (the oldest are dropped).
const KEEP: usize = 100_000;

impl WebhookReceiver {
    /// Starts on `addr` (port 0 picks one); `print`: one line per webhook on stdout.
    pub async fn start(addr: SocketAddr, print: bool) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared { print, ..Shared::default() });
        let app = Router::new()
            .route("/_control/received", get(list).delete(clear))
            .route("/_control/faults", get(faults).post(set_faults))
            .route("/{*path}", post(webhook))
            .route("/", post(webhook))
            .with_state(shared.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::warn!(error = %err, "webhook receiver stand-in stopped");
            }
        });
        Ok(Self { addr, shared })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A webhook URL on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base(), path.trim_start_matches('/'))
    }

    pub fn set_faults(&self, faults: ReceiverFaults) {
        *lock(&self.shared.faults) = faults;
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).iter().cloned().collect()
    }

    pub fn clear(&self) {
        lock(&self.shared.received).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn webhook(State(shared): State<Arc<Shared>>, uri: axum::http::Uri, headers: HeaderMap, body: Bytes) -> Response {
    let faults = lock(&shared.faults).clone();
    let status = StatusCode::from_u16(faults.status).unwrap_or(StatusCode::OK);
    let received = Received {
        path: uri.path().to_owned(),
        webhook_id: header_text(&headers, "webhook-id"),
        webhook_timestamp: header_text(&headers, "webhook-timestamp"),
        webhook_signature: header_text(&headers, "webhook-signature"),
        content_type: header_text(&headers, "content-type"),
        body: String::from_utf8_lossy(&body).into_owned(),
        answered: if faults.hang { 0 } else { status.as_u16() },
        received_at: chrono::Utc::now(),
    };
    if shared.print {
        println!(
            "webhook {} {} → {}: {}",
            received.webhook_id.as_deref().unwrap_or("-"),
            received.path,
            received.answered,
            received.body
        );
    }
    {
        let mut all = lock(&shared.received);
        if all.len() >= KEEP {
            all.pop_front();
        }
        all.push_back(received);
    }
    if faults.hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let mut response = (status, "").into_response();
    if let Some(secs) = faults.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, secs.into());
    }
    if status.is_redirection() {
        response.headers_mut().insert(header::LOCATION, axum::http::HeaderValue::from_static("/elsewhere"));
    }
    response
}

async fn list(State(shared): State<Arc<Shared>>) -> axum::Json<Vec<Received>> {
    axum::Json(lock(&shared.received).iter().cloned().collect())
}

async fn clear(State(shared): State<Arc<Shared>>) -> StatusCode {
    lock(&shared.received).clear();
    StatusCode::NO_CONTENT
}

async fn faults(State(shared): State<Arc<Shared>>) -> axum::Json<ReceiverFaults> {
    axum::Json(lock(&shared.faults).clone())
}

async fn set_faults(State(shared): State<Arc<Shared>>, axum::Json(f): axum::Json<ReceiverFaults>) -> StatusCode {
    *lock(&shared.faults) = f;
    StatusCode::NO_CONTENT
}
