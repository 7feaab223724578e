//! The notifier (issue 11): turns the events outbox into messages to buyers
//! over email (SMTP), APNs and FCM, one durable `deliveries` row per
//! (event, recipient, channel[, device]).
//!
//! The seams:
//! - [`channel::Channel`]: one provider (email, APNs, FCM). A channel sends one
//!   rendered [`channel::Message`] to one address and says how it went
//!   ([`channel::Sent`] or a [`channel::SendError`] that tells the delivery loop
//!   whether to retry, when, or to retire the address). [`apns`] and [`fcm`]
//!   are the push channels; [`push::channels`] builds those configured.
//! - The outbox: `events.notified_at IS NULL` rows are not yet fanned out; the
//!   fan-out ([`fanout`]) takes them with `FOR UPDATE SKIP LOCKED`, writes their
//!   deliveries and marks them in one transaction (exactly once across processes).
//! - The delivery loop ([`delivery`]) sends what is due, retries on the
//!   schedule ([`schedule`]) and dead-letters what exhausts it.
#![forbid(unsafe_code)]

pub mod apns;
pub mod channel;
pub mod delivery;
pub mod email;
pub mod fanout;
pub mod fcm;
mod http;
pub mod policy;
pub mod push;
pub mod sale_start;
pub mod schedule;
pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::channel::Channel;
use crate::delivery::{ChunkKind, Deliverer, DeliveryConfig};
use crate::fanout::{FanOut, FanOutConfig};
use crate::templates::Templates;

/// The notifier's two loops over one pool, and the channels they send through.
#[derive(Clone)]
pub struct Notifier {
    pool: PgPool,
    fanout: FanOut,
    deliverer: Deliverer,
    poll: Duration,
}

impl Notifier {
    /// `channels`: every configured provider (one per kind); deliveries are
    /// made only for these.
    pub fn new(
        pool: PgPool,
        channels: Vec<Arc<dyn Channel>>,
        fanout: FanOutConfig,
        delivery: DeliveryConfig,
        poll: Duration,
    ) -> Result<Self, String> {
        let templates = Templates::load().map_err(|e| e.to_string())?;
        let fanout_config = FanOutConfig { channels: channels.iter().map(|c| c.kind()).collect(), ..fanout };
        Ok(Self {
            fanout: FanOut::new(pool.clone(), templates, fanout_config),
            deliverer: Deliverer::new(pool.clone(), channels, delivery),
            pool,
            poll: poll.max(Duration::from_millis(10)),
        })
    }

    /// The fan-out loop: until stopped, or until the database fails (the
    /// supervisor restarts it).
    pub async fn run_fanout(self, stop: CancellationToken) -> Result<(), String> {
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            match self.fanout.run_once().await {
                Ok(0) => idle(&stop, self.poll).await,
                Ok(_) => {}
                Err(err) => return Err(format!("fan-out: {err}")),
            }
        }
    }

    /// The delivery loops (`workers` of them, each claiming its own
    /// batches); the first also keeps the DLQ depth gauge current.
    pub async fn run_delivery(self, stop: CancellationToken) -> Result<(), String> {
        let workers = self.deliverer.workers().max(1);
        // With two loops or more, the last prefers a started sale's email
        // chunks and the rest its push chunks: email (slower per message)
        // never holds the pushes back, and each kind helps the other when
        // its own runs out.
        let loops = (0..workers).map(|i| {
            let prefer = if workers > 1 && i == workers - 1 { ChunkKind::Email } else { ChunkKind::Push };
            self.clone().delivery_loop(stop.clone(), i == 0, prefer)
        });
        futures::future::try_join_all(loops).await.map(|_| ())
    }

    /// One delivery loop. Coming out of idle it claims a small batch
    /// ([`FIRST_BATCH`]) and doubles it each busy round up to the configured
    /// size: the first messages of a burst (a sale's start) go out as soon
    /// as a few rows are claimed, not after a whole batch's claim and
    /// policy round, and the bulk still moves in full batches.
    async fn delivery_loop(self, stop: CancellationToken, gauge: bool, prefer: ChunkKind) -> Result<(), String> {
        let mut gauge_at = tokio::time::Instant::now();
        let full = self.deliverer.batch();
        let mut batch = FIRST_BATCH.min(full);
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            if gauge && tokio::time::Instant::now() >= gauge_at {
                self.report_dead_letters().await;
                gauge_at = tokio::time::Instant::now() + Duration::from_secs(10);
            }
            match self.deliverer.run_batch_preferring(batch, prefer).await {
                Ok(0) => {
                    batch = FIRST_BATCH.min(full);
                    idle(&stop, self.poll).await;
                }
                Ok(_) => batch = (batch * 2).min(full),
                Err(err) => return Err(format!("delivery: {err}")),
            }
        }
    }

    /// The sale-start preparer ([`sale_start`]): prepares the recipients of
    /// sales about to start, and refreshes them until they do.
    pub async fn run_prepare(self, stop: CancellationToken) -> Result<(), String> {
        let every = self.poll.max(Duration::from_secs(1));
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            match self.fanout.sale_start().prepare_due().await {
                Ok(0) => idle(&stop, every).await,
                Ok(_) => {}
                Err(err) => return Err(format!("sale-start preparation: {err}")),
            }
        }
    }

    async fn report_dead_letters(&self) {
        match gavel_domain::dead_letters::open_counts(&self.pool).await {
            Ok(counts) => {
                for kind in ["notification", "webhook", "job"] {
                    let n = counts.iter().find(|(k, _)| k == kind).map_or(0, |(_, n)| *n);
                    metrics::gauge!("gavel_dead_letters_open", "kind" => kind).set(n as f64);
                }
            }
            Err(err) => tracing::warn!(error = %err, "counting dead letters failed"),
        }
    }
}

/// Deliveries a loop claims in its first round after idling.
const FIRST_BATCH: i64 = 50;

async fn idle(stop: &CancellationToken, poll: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(poll) => {}
    }
}
