//! An SMTP stand-in: a small real SMTP server (RFC 5321, the part a client
//! such as lettre speaks without extensions: greeting, `EHLO`/`HELO`,
//! `MAIL FROM`, `RCPT TO`, `DATA` with dot-unstuffing, `RSET`, `NOOP`,
//! `QUIT`) that records every message it accepts, with a small HTTP control
//! endpoint:
//!
//! - `GET /messages` → the recorded messages (`[{id, from, to, data, subject,
//!   received_at}]`); `DELETE /messages` clears them;
//! - `GET /faults`, `POST /faults` with `{"refuse_connections": bool,
//!   "latency_ms": n, "temp_fail_next": n, "reject_recipients": ["a@b"]}`:
//!   close every new connection at once; wait before every reply; answer the
//!   next `n` transactions `451` at `MAIL FROM` (a temporary failure); answer
//!   `550` at `RCPT TO` for those recipients (a dead mailbox).
//!
//! Every read waits at most a minute; a line is at most 1,000 bytes and a
//! message at most 10 MiB (RFC 5321's limits, loosely), so a stuck or hostile
//! client cannot hold the server.

mod control;
mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// Faults to inject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpFaults {
    /// Close every new connection before the greeting.
    pub refuse_connections: bool,
    /// Wait this long before every reply.
    pub latency_ms: u64,
    /// The next N transactions are answered `451` at `MAIL FROM`.
    pub temp_fail_next: u32,
    /// Recipients answered `550` at `RCPT TO`.
    pub reject_recipients: Vec<String>,
}

/// One accepted message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub id: String,
    /// The envelope sender and recipients.
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and body), dot-unstuffed, CRLF line ends.
    pub data: String,
    /// The `Subject:` header, if any (as written on the wire).
    pub subject: Option<String>,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

impl Received {
    /// The `Message-ID:` header's value, if the message has one.
    pub fn message_id(&self) -> Option<&str> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        head.split("\r\n").find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("message-id").then(|| value.trim())
        })
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) messages: Vec<Received>,
    pub(crate) faults: SmtpFaults,
    pub(crate) connections: u64,
}

#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running stand-in (it stops with the runtime).
#[derive(Clone)]
pub struct SmtpStandIn {
    smtp: SocketAddr,
    control: SocketAddr,
    shared: Arc<Shared>,
}

impl SmtpStandIn {
    /// Binds the SMTP port `smtp` and the control port `control` (port 0 for any).
    pub async fn start(smtp: SocketAddr, control: SocketAddr) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let listener = TcpListener::bind(smtp).await?;
        let smtp = listener.local_addr()?;
        let control_listener = TcpListener::bind(control).await?;
        let control = control_listener.local_addr()?;
        tokio::spawn(wire::serve(listener, shared.clone()));
        let app = control::router(shared.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(control_listener, app).await {
                tracing::error!(error = %err, "smtp stand-in control endpoint stopped");
            }
        });
        Ok(Self { smtp, control, shared })
    }

    /// The address to give an SMTP client.
    pub fn addr(&self) -> SocketAddr {
        self.smtp
    }

    /// `smtp://host:port` (`SMTP_URL`).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.smtp)
    }

    /// The control endpoint's base URL.
    pub fn control_base(&self) -> String {
        format!("http://{}", self.control)
    }

    pub fn messages(&self) -> Vec<Received> {
        self.shared.state().messages.clone()
    }

    /// What the mailboxes hold: per recipient, one message per
    /// `Message-ID` (a mailbox keeps one copy of a message id), else one per
    /// message received.
    pub fn shown(&self) -> std::collections::HashMap<String, usize> {
        let state = self.shared.state();
        crate::shown(state.messages.iter().flat_map(|m| {
            let id = m.message_id().unwrap_or(&m.id);
            m.to.iter().map(move |to| (to.as_str(), id))
        }))
    }

    pub fn clear(&self) {
        self.shared.state().messages.clear();
    }

    pub fn set_faults(&self, faults: SmtpFaults) {
        self.shared.state().faults = faults;
    }

    pub fn faults(&self) -> SmtpFaults {
        self.shared.state().faults.clone()
    }

    /// Connections accepted so far (refused ones included).
    pub fn connections(&self) -> u64 {
        self.shared.state().connections
    }
}
