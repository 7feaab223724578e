//! A Stripe stand-in: the subset of Stripe's HTTP API that Gavel uses.
//!
//! - `POST /v1/payment_intents` (form-encoded, `confirm=true` supported),
//!   `POST /v1/payment_intents/{id}/confirm`, `GET /v1/payment_intents/{id}`,
//!   `GET /v1/payment_intents` (list), `GET /v1/payment_intents/search`
//!   (`metadata['key']:'value'` queries);
//! - `POST /v1/refunds`, `GET /v1/refunds` (list), `GET /v1/refunds/{id}`;
//! - Stripe's list pagination (`limit`, `starting_after`, `ending_before`,
//!   newest first, `has_more`) and search pagination (`page`, `next_page`);
//! - `Idempotency-Key` as Stripe honours it: a repeat with the same
//!   parameters replays the first response (`Idempotent-Replayed: true`),
//!   other parameters are a 400 `idempotency_error`;
//! - Stripe's test payment methods: `pm_card_visa` (and any other) succeeds,
//!   `pm_card_chargeDeclined` is declined (`402 card_error`, `card_declined`);
//! - signed webhooks (`Stripe-Signature: t=…,v1=…`) for
//!   `payment_intent.succeeded`, `payment_intent.payment_failed` and
//!   `refund.created`, to a configured URL;
//! - faults, set with [`StripeStandIn::faults`] or `POST /_control/faults`
//!   (`{"latency_ms":50,"fail_next":1,"lose_next":1}`): added latency, the next
//!   N requests answered `500` before doing anything, and the next N requests
//!   done but never answered (the client times out: "succeeded but the
//!   response was lost"). `GET /_control/state` shows the objects.
//!   `processing_next: N` keeps the next N confirmed PaymentIntents `processing`;
//! - for reconciliation: `GET /v1/charges`, `GET /v1/charges/{id}`,
//!   `GET /v1/balance_transactions` (derived from PaymentIntents and refunds),
//!   `created[gt|gte|lt|lte]` filters on every list, PaymentIntents and
//!   refunds kept indexed ([`table`]) so a million page as cheaply as ten, and
//!   the control endpoints of [`control`] (plant discrepancies, bulk seed).

mod control;
mod lists;
mod objects;
mod routes;
mod table;
mod webhooks;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

pub use objects::{PaymentIntent, Refund};
pub use webhooks::{WebhookTarget, signature};

/// The stripe API version our events claim (async-stripe's pinned version).
pub const API_VERSION: &str = "2026-09-30.endive";

/// Faults to inject, consumed request by request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every API request before it is handled.
    pub latency_ms: u64,
    /// The next N API requests answer `500 api_error` and change nothing.
    pub fail_next: u32,
    /// The next N API requests take effect but are never answered.
    pub lose_next: u32,
    /// The next N confirmations leave their PaymentIntent `processing` (as a
    /// bank debit does): Gavel cannot settle it until it is told more.
    pub processing_next: u32,
}

#[derive(Default)]
pub(crate) struct Store {
    pub(crate) intents: table::Table<PaymentIntent>,
    pub(crate) refunds: table::Table<Refund>,
    /// A charge's id → its PaymentIntent's.
    pub(crate) charges: std::collections::HashMap<String, String>,
    /// (idempotency key) → (method+path+params, status, body)
    pub(crate) idempotency: std::collections::HashMap<String, (String, u16, serde_json::Value)>,
    pub(crate) faults: Faults,
}

pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    pub(crate) webhook: Mutex<Option<WebhookTarget>>,
    pub(crate) http: reqwest::Client,
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        match self.store.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// A running stand-in. Dropping it does not stop the server; it stops with
/// the runtime.
#[derive(Clone)]
pub struct StripeStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl StripeStandIn {
    /// Binds `addr` (port 0 for any) and serves in the background.
    pub async fn start(addr: SocketAddr, webhook: Option<WebhookTarget>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared =
            Arc::new(Shared { store: Mutex::default(), webhook: Mutex::new(webhook), http: reqwest::Client::new() });
        let app = routes::router(shared.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(error = %err, "stripe stand-in stopped");
            }
        });
        Ok(Self { addr, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to give a Stripe client (`STRIPE_API_BASE`).
    pub fn api_base(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Where events go from now on (`None`: nowhere).
    pub fn set_webhook(&self, target: Option<WebhookTarget>) {
        *self.shared.webhook.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = target;
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.store().faults = faults;
    }

    pub fn faults(&self) -> Faults {
        self.shared.store().faults.clone()
    }

    pub fn payment_intents(&self) -> Vec<PaymentIntent> {
        self.shared.store().intents.iter().cloned().collect()
    }

    pub fn refunds(&self) -> Vec<Refund> {
        self.shared.store().refunds.iter().cloned().collect()
    }
}
