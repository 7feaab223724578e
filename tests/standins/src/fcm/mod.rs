//! An FCM HTTP v1 stand-in with its OAuth2 token endpoint, on one plain-TCP
//! port (HTTP/1.1 or HTTP/2): point `FCM_API_BASE` at `http://ADDR` and use a
//! service-account file whose `token_uri` is `http://ADDR/token`
//! ([`FcmStandIn::service_account_json`]).
//!
//! - `POST /token` (form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
//!   `assertion=JWT`): verifies the RS256 assertion with the service account's
//!   public key (`iss` = its `client_email`, `scope` naming
//!   `firebase.messaging`, `aud` ending in `/token`, `exp` in the future and at
//!   most an hour after `iat`) and issues a bearer token valid
//!   `token_ttl_seconds`; `400 invalid_grant` otherwise.
//! - `POST /v1/projects/{project}/messages:send`: `401 UNAUTHENTICATED`
//!   without a live bearer token, `403 PERMISSION_DENIED` for another
//!   project, `400 INVALID_ARGUMENT` for a malformed message; answers
//!   `{"name":"projects/{project}/messages/{id}"}` and records the message.
//! - Faults ([`FcmStandIn::set_faults`] or `POST /_control/faults` with
//!   [`FcmFaults`] as JSON): `latency_ms`; `refuse` (connections cut and
//!   closed); the next `fail_next` sends `503 UNAVAILABLE`; the next
//!   `throttle_next` `429 QUOTA_EXCEEDED`, both with `Retry-After:
//!   retry_after_seconds` if set; `dead_tokens` maps a token to
//!   `UNREGISTERED` (`404`), `INVALID_ARGUMENT` (`400`, a field violation on
//!   `message.token`) or `SENDER_ID_MISMATCH` (`403`).
//!   `POST /_control/revoke_tokens` revokes every bearer issued (the next send
//!   is `401`).
//! - `GET /_control/state` (faults, tokens issued, messages, every send's
//!   answer), `GET /_control/messages`, `POST /_control/reset`.

mod routes;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::serve::{self, Gate};

/// What the stand-in accepts.
#[derive(Debug, Clone)]
pub struct FcmStandInConfig {
    pub project_id: String,
    pub client_email: String,
    /// The service account key's public half (PKCS#1 DER; see [`crate::keys::rsa_public_key`]).
    pub public_key: Vec<u8>,
    pub token_ttl_seconds: u64,
}

impl FcmStandInConfig {
    /// The TEST-ONLY service account of [`crate::keys`], for `project_id`.
    pub fn test_account(project_id: &str) -> Result<Self, String> {
        Ok(Self {
            project_id: project_id.to_owned(),
            client_email: crate::keys::FCM_TEST_CLIENT_EMAIL.to_owned(),
            public_key: crate::keys::rsa_public_key(crate::keys::FCM_TEST_KEY_PEM)?,
            token_ttl_seconds: 3600,
        })
    }
}

/// Faults to inject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FcmFaults {
    pub latency_ms: u64,
    pub refuse: bool,
    pub fail_next: u32,
    pub throttle_next: u32,
    pub retry_after_seconds: Option<u64>,
    /// token → `UNREGISTERED` | `INVALID_ARGUMENT` | `SENDER_ID_MISMATCH`.
    pub dead_tokens: BTreeMap<String, String>,
}

/// A message the stand-in accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FcmMessage {
    pub name: String,
    pub token: String,
    /// The whole `message` object as sent.
    pub message: serde_json::Value,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// Any send and how it was answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FcmSend {
    pub token: Option<String>,
    pub bearer: Option<String>,
    pub status: u16,
    pub error: Option<String>,
}

#[derive(Default)]
pub(crate) struct Store {
    pub(crate) faults: FcmFaults,
    /// bearer → expiry (unix seconds).
    pub(crate) bearers: HashMap<String, i64>,
    pub(crate) tokens_issued: u64,
    pub(crate) messages: Vec<FcmMessage>,
    pub(crate) sends: Vec<FcmSend>,
}

pub(crate) struct Shared {
    pub(crate) config: FcmStandInConfig,
    pub(crate) store: Mutex<Store>,
    pub(crate) gate: Arc<Gate>,
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set_faults(&self, faults: FcmFaults) {
        self.gate.set_refusing(faults.refuse);
        self.store().faults = faults;
    }
}

/// A running FCM stand-in (it stops with the runtime).
#[derive(Clone)]
pub struct FcmStandIn {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FcmStandIn {
    /// Binds `addr` (port 0 for any) and serves in the background.
    pub async fn start(addr: SocketAddr, config: FcmStandInConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let gate = Gate::new();
        let shared = Arc::new(Shared { config, store: Mutex::default(), gate: gate.clone() });
        serve::spawn(listener, routes::router(shared.clone()), gate);
        Ok(Self { addr, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `FCM_API_BASE` for a client.
    pub fn api_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The service account's `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// A service-account file's text for the TEST-ONLY key, minting here.
    pub fn service_account_json(&self) -> String {
        crate::keys::fcm_service_account(&self.shared.config.project_id, &self.token_uri())
    }

    pub fn set_faults(&self, faults: FcmFaults) {
        self.shared.set_faults(faults);
    }

    pub fn faults(&self) -> FcmFaults {
        self.shared.store().faults.clone()
    }

    /// Every bearer issued so far stops working.
    pub fn revoke_tokens(&self) {
        self.shared.store().bearers.clear();
    }

    pub fn tokens_issued(&self) -> u64 {
        self.shared.store().tokens_issued
    }

    pub fn messages(&self) -> Vec<FcmMessage> {
        self.shared.store().messages.clone()
    }

    /// What the devices show: per token, one notification per Android
    /// notification `tag` (a later one with the tag replaces the earlier in
    /// the drawer), else one per message.
    pub fn shown(&self) -> std::collections::HashMap<String, usize> {
        let store = self.shared.store();
        crate::shown(store.messages.iter().map(|m| {
            let tag = m.message["android"]["notification"]["tag"].as_str();
            (m.token.as_str(), tag.unwrap_or(&m.name))
        }))
    }

    pub fn sends(&self) -> Vec<FcmSend> {
        self.shared.store().sends.clone()
    }
}
