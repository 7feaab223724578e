//! One provider of the notifier: what it is given and what it answers.

use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// A channel's name, as `deliveries.channel` stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Email,
    Apns,
    Fcm,
}

impl ChannelKind {
    pub const ALL: [Self; 3] = [Self::Email, Self::Apns, Self::Fcm];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Apns => "apns",
            Self::Fcm => "fcm",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A rendered message, as stored in `deliveries.payload` (so a retry or a
/// replay from the dead-letter queue sends exactly what was decided).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Email {
        subject: String,
        text: String,
        html: String,
    },
    Push {
        title: String,
        body: String,
        /// Custom data for the app (ids to open), string values only (FCM's rule).
        #[serde(default)]
        data: std::collections::BTreeMap<String, String>,
        /// `apns-collapse-id` / FCM `collapse_key`: later messages replace earlier ones.
        collapse_key: Option<String>,
        /// Critical kinds go at high priority (`apns-priority: 10`, FCM `HIGH`).
        critical: bool,
        /// How long the provider should keep trying an offline device.
        ttl_seconds: u32,
    },
}

/// Where one delivery goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// An email address, or a device token.
    pub to: String,
    /// The buyer's name, for the email's `To:` display name.
    pub name: Option<String>,
    /// The delivery's id: its stable identity at the provider (`apns-id`
    /// and, without a collapse key, `apns-collapse-id`; FCM's notification
    /// `tag`; the email's `Message-ID`), so that a repeat after a crash
    /// (sent, but the worker died before recording it) replaces the first
    /// on the device and is one message in the mailbox.
    pub delivery: uuid::Uuid,
}

impl Address {
    /// A collapse id for a message without a collapse key: the delivery's
    /// own, so that only a repeat of this delivery collapses into it.
    pub fn own_collapse_id(&self) -> String {
        format!("dlv_{}", self.delivery.simple())
    }
}

/// The provider accepted the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The provider's id for it (`apns-id`, FCM's message name, the SMTP queue id), if any.
    pub provider_id: Option<String>,
}

/// Why a send did not go through, as the delivery loop acts on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Try again later (5xx, timeouts, refused connections, 429): at the next
    /// step of the schedule, or after `retry_after` if the provider said so
    /// (whichever is later). Counts toward the provider's circuit breaker
    /// unless it was a 429.
    #[error("temporary failure: {reason}")]
    Retry { reason: String, retry_after: Option<Duration>, throttled: bool },
    /// The address is dead (APNs 410/`BadDeviceToken`/`DeviceTokenNotForTopic`,
    /// FCM `UNREGISTERED`/`INVALID_ARGUMENT` naming the token, SMTP 5xx for the
    /// recipient): retire the device, never send to it again.
    #[error("the address is dead: {reason}")]
    DeadAddress { reason: String },
    /// The provider refused this message for good (a 4xx that no retry can fix):
    /// straight to the dead-letter queue.
    #[error("rejected: {reason}")]
    Rejected { reason: String },
}

/// One provider. Implementations hold their own pooled client and time out
/// every network wait. (A boxed future so that the loop can hold
/// `Arc<dyn Channel>`; implement it as `Box::pin(async move { … })`.)
pub trait Channel: Send + Sync + 'static {
    fn kind(&self) -> ChannelKind;
    fn send<'a>(&'a self, to: &'a Address, message: &'a Message) -> BoxFuture<'a, Result<Sent, SendError>>;
}
