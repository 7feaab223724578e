//! An APNs stand-in: Apple's provider API over HTTP/2 with prior knowledge on
//! plain TCP (point `APNS_ENDPOINT` at `http://ADDR`).
//!
//! - `POST /3/device/{token}` checks what Apple checks: HTTP/2, the bearer
//!   provider token (an ES256 JWT whose signature verifies with the configured
//!   key, `kid` = key id, `iss` = team id, `iat` under an hour old — else `403`
//!   `InvalidProviderToken`/`ExpiredProviderToken`/`MissingProviderToken`),
//!   `apns-topic` (`MissingTopic`/`BadTopic`), `apns-push-type`
//!   (`InvalidPushType`), `apns-priority` 5 or 10 (`BadPriority`),
//!   `apns-expiration` (`BadExpirationDate`), `apns-collapse-id` ≤ 64 bytes
//!   (`BadCollapseId`), a hex token (`BadDeviceToken`), a JSON payload with
//!   `aps` of at most 4 KiB (`PayloadEmpty`/`PayloadTooLarge`); answers `200`
//!   with an `apns-id` and records the delivery.
//! - Faults ([`ApnsStandIn::set_faults`] or `POST /_control/faults` with
//!   [`ApnsFaults`] as JSON): `latency_ms`; `refuse` (push connections are cut
//!   and new ones closed at once); the next `fail_next` pushes `500
//!   InternalServerError`; the next `throttle_next` `429 TooManyRequests`; both
//!   with `Retry-After: retry_after_seconds` if set; `dead_tokens` maps a token
//!   to `Unregistered` (`410`), `BadDeviceToken` or `DeviceTokenNotForTopic`
//!   (`400`).
//! - `GET /_control/state` (faults, deliveries, every request's answer),
//!   `GET /_control/deliveries`, `POST /_control/reset`.

mod routes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::serve::{self, Gate};

/// What the stand-in accepts.
#[derive(Debug, Clone)]
pub struct ApnsStandInConfig {
    /// The provider key's public half (an uncompressed P-256 point; see
    /// [`crate::keys::apns_public_key`]).
    pub public_key: Vec<u8>,
    pub key_id: String,
    pub team_id: String,
    pub topic: String,
}

/// Faults to inject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApnsFaults {
    pub latency_ms: u64,
    pub refuse: bool,
    pub fail_next: u32,
    pub throttle_next: u32,
    pub retry_after_seconds: Option<u64>,
    /// token → `Unregistered` | `BadDeviceToken` | `DeviceTokenNotForTopic`.
    pub dead_tokens: BTreeMap<String, String>,
}

/// A push the stand-in accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApnsDelivery {
    pub apns_id: String,
    pub token: String,
    pub topic: String,
    pub push_type: String,
    pub priority: String,
    pub expiration: Option<String>,
    pub collapse_id: Option<String>,
    /// The JWT's `kid` and `iat`.
    pub key_id: String,
    pub issued_at: i64,
    pub payload: serde_json::Value,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// Any push request and how it was answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApnsRequest {
    pub token: String,
    pub http_version: String,
    pub status: u16,
    pub reason: Option<String>,
    /// The provider token as sent (to tell a reused one from a new one).
    pub jwt: Option<String>,
}

#[derive(Default)]
pub(crate) struct Store {
    pub(crate) faults: ApnsFaults,
    pub(crate) deliveries: Vec<ApnsDelivery>,
    pub(crate) requests: Vec<ApnsRequest>,
}

pub(crate) struct Shared {
    pub(crate) config: ApnsStandInConfig,
    pub(crate) store: Mutex<Store>,
    pub(crate) gate: Arc<Gate>,
    pub(crate) verified: crate::jwt::LastVerified,
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set_faults(&self, faults: ApnsFaults) {
        self.gate.set_refusing(faults.refuse);
        self.store().faults = faults;
    }
}

/// A running APNs stand-in (it stops with the runtime).
#[derive(Clone)]
pub struct ApnsStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl ApnsStandIn {
    /// Binds `addr` (port 0 for any) and serves in the background.
    pub async fn start(addr: SocketAddr, config: ApnsStandInConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let gate = Gate::new();
        let shared =
            Arc::new(Shared { config, store: Mutex::default(), gate: gate.clone(), verified: Default::default() });
        serve::spawn(listener, routes::router(shared.clone()), gate);
        Ok(Self { addr, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `APNS_ENDPOINT` for a client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_faults(&self, faults: ApnsFaults) {
        self.shared.set_faults(faults);
    }

    pub fn faults(&self) -> ApnsFaults {
        self.shared.store().faults.clone()
    }

    pub fn deliveries(&self) -> Vec<ApnsDelivery> {
        self.shared.store().deliveries.clone()
    }

    /// What the devices show: per token, the notifications as a user sees
    /// them — one per `apns-collapse-id` (a later one replaces an earlier
    /// one in place), else one per `apns-id`.
    pub fn shown(&self) -> std::collections::HashMap<String, usize> {
        let store = self.shared.store();
        crate::shown(
            store.deliveries.iter().map(|d| (d.token.as_str(), d.collapse_id.as_deref().unwrap_or(&d.apns_id))),
        )
    }

    pub fn requests(&self) -> Vec<ApnsRequest> {
        self.shared.store().requests.clone()
    }
}
