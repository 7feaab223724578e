//! The delivery loop: claims due deliveries, sends each through its
//! channel, and records the outcome.
//!
//! - **Claim**: one statement takes up to a batch of due `pending` rows
//!   (critical first, then oldest due) and up to a batch of `sending` rows
//!   whose lease ran out (their worker crashed) — with `FOR UPDATE SKIP
//!   LOCKED`, marks them `sending` with this worker's lease (`lease_owner`,
//!   `lease_until`) and counts the attempt. A second takes one chunk of a
//!   started sale's `held` rows ([`crate::sale_start`]) by its lease row in
//!   `sale_notice_chunks`: those rows are not written until their outcome is
//!   (`held` → `sent`, guarded on the chunk's lease), so a sale-start
//!   delivery costs one row write. No row lock is held while a provider is
//!   called.
//! - **Send**: through the channel, bounded per provider (a semaphore) and by
//!   a timeout; the provider's circuit breaker, when open, postpones the
//!   delivery (the attempt is not counted) instead of failing it.
//! - **Record**, guarded on still holding the lease: `sent` (with the
//!   provider's id); a temporary failure back to `pending` at the next step of
//!   the retry schedule (`Retry-After` lengthens it) with `{at, error}`
//!   appended to `attempt_log`; the budget spent or a permanent refusal →
//!   `failed` and a `dead_letters` entry in the same transaction; a dead
//!   address → `skipped` (and the device retired).
//!
//! **At-least-once window**: if a worker dies after the provider accepted a
//! message but before `sent` was recorded, the lease (the row's or its
//! chunk's) runs out and another worker sends it again. The dedupe key
//! guarantees one row (one decision) per (event, recipient, channel[,
//! device]); the window is one send plus one batched UPDATE. A repeat goes
//! out under the same identity as the first (the delivery's id as `apns-id`
//! and collapse id, FCM notification tag, email `Message-ID`), so the device
//! replaces it and the mailbox keeps one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gavel_domain::breaker::Breaker;
use gavel_domain::dead_letters::{self, Kind, NewDeadLetter};
use gavel_domain::ids::DeliveryId;
use serde::Deserialize;
use sqlx::PgPool;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::channel::{Address, Channel, ChannelKind, Message, SendError};
use crate::schedule::{Next, RetrySchedule};

mod chunks;

/// `sent` outcomes written per statement, at most.
const SENT_FLUSH: usize = 500;
/// …and at least this often while a batch is in flight.
const SENT_FLUSH_EVERY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Deliveries claimed per round.
    pub batch: i64,
    /// How long a claimed delivery is this worker's; past it, another takes it.
    pub lease: Duration,
    /// One send's limit (on top of the channel's own timeouts).
    pub send_timeout: Duration,
    /// Sends in flight per provider, per process.
    pub concurrency: usize,
    /// Delivery loops per process, each claiming its own batches (so one
    /// batch's slowest send does not hold the next claim back).
    pub workers: usize,
    pub schedule: RetrySchedule,
    /// Consecutive failures that open a provider's breaker, and how long it stays open.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// This worker's name, as `lease_owner` stores it.
    pub owner: String,
    /// Coalescing and per-buyer rate limits of non-critical pushes (`policy.rs`).
    pub policy: crate::policy::PolicyConfig,
}

struct Provider {
    channel: Arc<dyn Channel>,
    breaker: Breaker,
    permits: Semaphore,
}

#[derive(Clone)]
pub struct Deliverer {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    providers: HashMap<ChannelKind, Provider>,
    config: DeliveryConfig,
}

/// The two kinds of a sale's chunks: a chunk's rows are all push (APNs and
/// FCM) or all email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    Push,
    Email,
}

impl ChunkKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Email => "email",
        }
    }
}

/// How this worker holds a claimed delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Lease {
    /// The row's own lease: `sending`, `lease_owner`, `lease_until`.
    #[default]
    Row,
    /// Its sale's chunk lease (`sale_notice_chunks`): the row stays `held`
    /// until its outcome is recorded.
    Chunk(ChunkLease),
}

/// One chunk of a sale's held deliveries, leased by this worker.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ChunkLease {
    sale: Uuid,
    chunk: i32,
}

/// `sent` outcomes not written yet: by row lease, and by the chunk's lease.
#[derive(Default)]
struct SentOutcomes {
    rows: Vec<(DeliveryId, Option<String>)>,
    held: Vec<(DeliveryId, Option<String>)>,
}

/// A claimed delivery with its address.
#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    id: DeliveryId,
    #[sqlx(skip)]
    lease: Lease,
    channel: String,
    device_id: Option<Uuid>,
    payload: serde_json::Value,
    attempts: i32,
    email: String,
    name: Option<String>,
    token: Option<String>,
    device_status: Option<String>,
}

/// How one attempt ended, as recorded.
enum Outcome {
    Sent(Option<String>),
    Retry { error: String, retry_after: Option<Duration> },
    Postponed(Duration),
    Skipped(String),
    Failed(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Self::Sent(_) => "sent",
            Self::Retry { .. } => "retry",
            Self::Postponed(_) => "postponed",
            Self::Skipped(_) => "skipped",
            Self::Failed(_) => "failed",
        }
    }
}

impl Deliverer {
    pub fn new(pool: PgPool, channels: Vec<Arc<dyn Channel>>, config: DeliveryConfig) -> Self {
        let providers = channels
            .into_iter()
            .map(|channel| {
                let kind = channel.kind();
                let breaker = Breaker::new(kind.as_str(), config.breaker_failures.max(1), config.breaker_cooldown);
                (kind, Provider { channel, breaker, permits: Semaphore::new(config.concurrency.max(1)) })
            })
            .collect();
        Self { inner: Arc::new(Inner { pool, providers, config }) }
    }

    /// Delivery loops per process ([`DeliveryConfig::workers`]).
    pub fn workers(&self) -> usize {
        self.inner.config.workers
    }

    /// Claims one batch and delivers it; returns how many were claimed.
    pub async fn run_once(&self) -> Result<usize, sqlx::Error> {
        self.run_batch(self.inner.config.batch).await
    }

    /// The configured batch size ([`DeliveryConfig::batch`]).
    pub fn batch(&self) -> i64 {
        self.inner.config.batch.max(1)
    }

    /// Claims up to `limit` deliveries (per arm of the claim, at most the
    /// configured batch) and delivers them; returns how many were claimed.
    /// `sent` outcomes (the bulk) are written in batches, one statement per
    /// [`SENT_FLUSH`] rows or [`SENT_FLUSH_EVERY`], whichever comes first;
    /// any other outcome is recorded on its own as it comes.
    pub async fn run_batch(&self, limit: i64) -> Result<usize, sqlx::Error> {
        self.run_batch_preferring(limit, ChunkKind::Push).await
    }

    /// [`Self::run_batch`], taking a sale's chunk of the kind `prefer` if one
    /// is free, else of the other kind.
    pub async fn run_batch_preferring(&self, limit: i64, prefer: ChunkKind) -> Result<usize, sqlx::Error> {
        let mut claimed = self.claim(limit.clamp(1, self.batch())).await?;
        // A chunk taken counts as work even if none of its rows is left (it
        // is finished below), so that the loop goes on to the next one.
        let chunk = self.claim_chunk(prefer).await?.map(|(lease, rows)| {
            claimed.extend(rows);
            lease
        });
        let n = claimed.len().max(usize::from(chunk.is_some()));
        // The delivery policy (policy.rs): coalescing and rate limits may hold
        // some back (already recorded) or merge newer messages into them.
        let ids: Vec<DeliveryId> = claimed.iter().map(|c| c.id).collect();
        let c = &self.inner.config;
        let screened = crate::policy::screen(&self.inner.pool, &c.policy, &c.owner, &ids).await?;
        claimed.retain_mut(|row| screened.keep(row.id, &mut row.payload));
        let mut sends = JoinSet::new();
        for row in claimed {
            let this = self.clone();
            // Boxed: the task then holds a pointer, not the whole state of a
            // send and a record, which every spawn, poll-to-completion and
            // join would otherwise copy (most of the notifier's `memmove`,
            // which was a seventh of its CPU).
            sends.spawn(Box::pin(async move {
                let outcome = this.attempt(&row).await;
                let counted = (channel_label(&row.channel), outcome.label());
                let recorded = match outcome {
                    Outcome::Sent(provider_id) => Ok(Some((row.id, provider_id, row.lease))),
                    other => Box::pin(this.record_other(row, other)).await.map(|()| None),
                };
                (counted, recorded)
            }));
        }
        // Outcomes per (channel, outcome), added to the metric once per batch.
        let mut counts: HashMap<(&'static str, &'static str), u64> = HashMap::new();
        let mut sent = SentOutcomes::default();
        let mut flush_at = tokio::time::Instant::now() + SENT_FLUSH_EVERY;
        loop {
            match tokio::time::timeout_at(flush_at, sends.join_next()).await {
                Ok(None) => break,
                Ok(Some(Ok((counted, recorded)))) => {
                    *counts.entry(counted).or_insert(0) += 1;
                    match recorded {
                        Ok(Some((id, provider_id, Lease::Row))) => sent.rows.push((id, provider_id)),
                        Ok(Some((id, provider_id, Lease::Chunk(_)))) => sent.held.push((id, provider_id)),
                        Ok(None) => {}
                        Err(err) => tracing::warn!(error = %err, "recording a delivery failed; its lease will run out"),
                    }
                }
                Ok(Some(Err(err))) => tracing::error!(error = %err, "a delivery task panicked; its lease will run out"),
                Err(_) => {} // time to write what was sent
            }
            if tokio::time::Instant::now() >= flush_at {
                self.flush_sent(&mut sent, chunk, 1).await?;
                flush_at = tokio::time::Instant::now() + SENT_FLUSH_EVERY;
            } else {
                self.flush_sent(&mut sent, chunk, SENT_FLUSH).await?;
            }
        }
        for ((channel, outcome), n) in counts {
            metrics::counter!("gavel_notifier_deliveries_total", "channel" => channel, "outcome" => outcome)
                .increment(n);
        }
        self.flush_sent(&mut sent, chunk, 1).await?;
        if let Some(chunk) = chunk {
            self.finish_chunk(chunk).await?;
        }
        Ok(n)
    }

    /// Writes each kind of `sent` outcome of which at least `min` wait.
    async fn flush_sent(
        &self,
        sent: &mut SentOutcomes,
        chunk: Option<ChunkLease>,
        min: usize,
    ) -> Result<(), sqlx::Error> {
        let min = min.max(1);
        if sent.rows.len() >= min {
            self.record_sent(std::mem::take(&mut sent.rows)).await?;
        }
        if let Some(chunk) = chunk
            && sent.held.len() >= min
        {
            self.record_sent_held(chunk, std::mem::take(&mut sent.held)).await?;
        }
        Ok(())
    }

    /// `sent` for many deliveries in one statement, each guarded on this
    /// worker still holding its lease.
    async fn record_sent(&self, sent: Vec<(DeliveryId, Option<String>)>) -> Result<(), sqlx::Error> {
        let (ids, provider_ids) = split(&sent);
        let done = sqlx::query!(
            "UPDATE deliveries d SET status = 'sent', provider_id = NULLIF(u.provider_id, ''), sent_at = now(),
                    lease_owner = NULL, lease_until = NULL
             FROM UNNEST($1::uuid[], $2::text[]) AS u(id, provider_id)
             WHERE d.id = u.id AND d.status = 'sending' AND d.lease_owner = $3",
            &ids,
            &provider_ids,
            &self.inner.config.owner,
        )
        .execute(&self.inner.pool)
        .await?;
        report_lost(ids.len(), done.rows_affected());
        Ok(())
    }

    async fn claim(&self, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
        let c = &self.inner.config;
        let channels: Vec<&str> = self.inner.providers.keys().map(|k| k.as_str()).collect();
        sqlx::query_as::<_, Claimed>(
            "WITH due AS (
                 SELECT id FROM deliveries
                 WHERE status = 'pending' AND next_attempt_at <= now() AND channel = ANY($1)
                   -- A collapsible message waits while an older one of its group
                   -- is open: that one carries the group (policy.rs), so two
                   -- loops or processes never send one group twice at once.
                   AND (collapse_key IS NULL OR NOT EXISTS (
                       SELECT 1 FROM deliveries o
                       WHERE o.buyer_id = deliveries.buyer_id AND o.collapse_key = deliveries.collapse_key
                         AND o.channel = deliveries.channel
                         AND o.device_id IS NOT DISTINCT FROM deliveries.device_id
                         AND o.status IN ('pending', 'sending')
                         AND (o.created_at, o.id) < (deliveries.created_at, deliveries.id)))
                 ORDER BY critical DESC, next_attempt_at
                 LIMIT $2 FOR UPDATE SKIP LOCKED),
             stale AS (
                 SELECT id FROM deliveries
                 WHERE status = 'sending' AND lease_until < now() AND channel = ANY($1)
                 ORDER BY lease_until
                 LIMIT $2 FOR UPDATE SKIP LOCKED),
             picked AS (SELECT id FROM due UNION ALL SELECT id FROM stale),
             taken AS (
                 UPDATE deliveries d SET status = 'sending', lease_owner = $3,
                        lease_until = now() + $4 * interval '1 millisecond', attempts = d.attempts + 1
                 FROM picked WHERE d.id = picked.id
                 RETURNING d.id, d.channel, d.device_id, d.payload, d.attempts, d.buyer_id)
             SELECT t.id, t.channel, t.device_id, t.payload, t.attempts, b.email, b.name,
                    dv.token, dv.status AS device_status
             FROM taken t JOIN buyers b ON b.id = t.buyer_id LEFT JOIN devices dv ON dv.id = t.device_id",
        )
        .bind(&channels)
        .bind(limit)
        .bind(&c.owner)
        .bind(c.lease.as_millis() as f64)
        .fetch_all(&self.inner.pool)
        .await
    }

    async fn attempt(&self, row: &Claimed) -> Outcome {
        let Some(provider) = ChannelKind::parse(&row.channel).and_then(|k| self.inner.providers.get(&k)) else {
            return Outcome::Postponed(Duration::from_secs(60));
        };
        let message = match Message::deserialize(&row.payload) {
            Ok(m) => m,
            Err(err) => return Outcome::Failed(format!("the stored message is unreadable: {err}")),
        };
        let to = match (row.device_id, &row.token) {
            (None, _) => Address { to: row.email.clone(), name: row.name.clone(), delivery: row.id.uuid() },
            (Some(_), Some(token)) if row.device_status.as_deref() == Some("active") => {
                Address { to: token.clone(), name: row.name.clone(), delivery: row.id.uuid() }
            }
            (Some(_), _) => return Outcome::Skipped("the device is retired".into()),
        };
        if let Err(open) = provider.breaker.admit() {
            return Outcome::Postponed(open.retry_after.max(Duration::from_millis(100)));
        }
        let Ok(_permit) = provider.permits.acquire().await else {
            return Outcome::Postponed(Duration::from_secs(1));
        };
        let sent = tokio::time::timeout(self.inner.config.send_timeout, provider.channel.send(&to, &message))
            .await
            .unwrap_or_else(|_| {
                Err(SendError::Retry { reason: "the send timed out".into(), retry_after: None, throttled: false })
            });
        match sent {
            Ok(sent) => {
                provider.breaker.record(true);
                Outcome::Sent(sent.provider_id)
            }
            Err(SendError::Retry { reason, retry_after, throttled }) => {
                if !throttled {
                    provider.breaker.record(false);
                }
                Outcome::Retry { error: reason, retry_after }
            }
            Err(SendError::DeadAddress { reason }) => {
                provider.breaker.record(true);
                Outcome::Skipped(format!("dead address: {reason}"))
            }
            Err(SendError::Rejected { reason }) => {
                provider.breaker.record(true);
                Outcome::Failed(format!("rejected: {reason}"))
            }
        }
    }

    async fn record(&self, row: &Claimed, outcome: Outcome) -> Result<(), sqlx::Error> {
        let pool = &self.inner.pool;
        let owner = &self.inner.config.owner;
        const GUARD: &str = "id = $1 AND status = 'sending' AND lease_owner = $2";
        let attempts = u32::try_from(row.attempts).unwrap_or(0);
        let (error, retry_after) = match outcome {
            Outcome::Sent(provider_id) => {
                let sql = format!(
                    "UPDATE deliveries SET status = 'sent', provider_id = $3, sent_at = now(),
                            lease_owner = NULL, lease_until = NULL WHERE {GUARD}"
                );
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(row.id)
                    .bind(owner)
                    .bind(provider_id)
                    .execute(pool)
                    .await?;
                return lease_kept(row, done.rows_affected());
            }
            Outcome::Postponed(wait) => {
                let sql = format!(
                    "UPDATE deliveries SET status = 'pending', attempts = attempts - 1,
                            next_attempt_at = now() + $3 * interval '1 millisecond',
                            lease_owner = NULL, lease_until = NULL WHERE {GUARD}"
                );
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(row.id)
                    .bind(owner)
                    .bind(wait.as_millis() as f64)
                    .execute(pool)
                    .await?;
                return lease_kept(row, done.rows_affected());
            }
            Outcome::Skipped(reason) => {
                let mut tx = pool.begin().await?;
                let sql = format!(
                    "UPDATE deliveries SET status = 'skipped', lease_owner = NULL, lease_until = NULL,
                            attempt_log = attempt_log || jsonb_build_array(jsonb_build_object('at', now(), 'error', $3::text))
                     WHERE {GUARD}"
                );
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(row.id)
                    .bind(owner)
                    .bind(&reason)
                    .execute(&mut *tx)
                    .await?;
                if let (Some(device), true) = (row.device_id, done.rows_affected() == 1) {
                    // Never used again: retire it and skip what is queued for it.
                    sqlx::query(
                        "UPDATE devices SET status = 'retired', retired_at = now() WHERE id = $1 AND status = 'active'",
                    )
                    .bind(device)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE deliveries SET status = 'skipped',
                                attempt_log = attempt_log || jsonb_build_array(jsonb_build_object('at', now(), 'error', 'the device is retired'))
                         WHERE device_id = $1 AND status = 'pending'",
                    )
                    .bind(device)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                return lease_kept(row, done.rows_affected());
            }
            Outcome::Retry { error, retry_after } => (error, retry_after),
            Outcome::Failed(error) => return self.fail(row, &error).await,
        };
        match self.inner.config.schedule.after(attempts, retry_after) {
            Next::GiveUp => self.fail(row, &error).await,
            Next::RetryIn(wait) => {
                let sql = format!(
                    "UPDATE deliveries SET status = 'pending', lease_owner = NULL, lease_until = NULL,
                            next_attempt_at = now() + $4 * interval '1 millisecond',
                            attempt_log = attempt_log || jsonb_build_array(jsonb_build_object('at', now(), 'error', $3::text))
                     WHERE {GUARD}"
                );
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(row.id)
                    .bind(owner)
                    .bind(&error)
                    .bind(wait.as_millis() as f64)
                    .execute(pool)
                    .await?;
                lease_kept(row, done.rows_affected())
            }
        }
    }

    /// `failed`, and its dead letter with every attempt, in one transaction.
    async fn fail(&self, row: &Claimed, error: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.inner.pool.begin().await?;
        let log: Option<serde_json::Value> = sqlx::query_scalar(
            "UPDATE deliveries SET status = 'failed', lease_owner = NULL, lease_until = NULL,
                    attempt_log = attempt_log || jsonb_build_array(jsonb_build_object('at', now(), 'error', $3::text))
             WHERE id = $1 AND status = 'sending' AND lease_owner = $2 RETURNING attempt_log",
        )
        .bind(row.id)
        .bind(&self.inner.config.owner)
        .bind(error)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(log) = log else {
            return lease_kept(row, 0);
        };
        let recipient = match row.device_id {
            None => row.email.clone(),
            Some(device) => format!("device {device}"),
        };
        let subject = row.id.to_string();
        let entry = NewDeadLetter {
            kind: Kind::Notification,
            subject: &subject,
            recipient: Some(&recipient),
            channel: Some(&row.channel),
            payload: &row.payload,
            attempts: &log,
        };
        dead_letters::open(&mut tx, &entry).await.map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        tx.commit().await?;
        tracing::warn!(delivery = %row.id, channel = %row.channel, error, "delivery dead-lettered");
        Ok(())
    }
}

fn split(sent: &[(DeliveryId, Option<String>)]) -> (Vec<Uuid>, Vec<String>) {
    sent.iter().map(|(id, p)| (id.uuid(), p.clone().unwrap_or_default())).unzip()
}

fn report_lost(sent: usize, recorded: u64) {
    let lost = (sent as u64).saturating_sub(recorded);
    if lost > 0 {
        tracing::warn!(lost, "deliveries' leases ran out before their outcome was recorded");
    }
}

fn lease_kept(row: &Claimed, affected: u64) -> Result<(), sqlx::Error> {
    if affected == 0 {
        tracing::warn!(delivery = %row.id, "the delivery's lease ran out before its outcome was recorded");
    }
    Ok(())
}

/// Bounded metric labels.
fn channel_label(channel: &str) -> &'static str {
    ChannelKind::parse(channel).map_or("unknown", ChannelKind::as_str)
}
