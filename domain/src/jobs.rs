//! Durable jobs, written in the caller's transaction.
//!
//! Jobs live in apalis-postgres's `apalis.jobs` table and are run by the apalis
//! workers (`gavel-workers`). Enqueuing goes through [`enqueue`] rather than
//! apalis's sink so that a job commits atomically with the change that causes it
//! (a transactional outbox without a separate table), and so that a duplicate
//! idempotency key is a no-op instead of an error that would abort the
//! caller's transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgExecutor};

use crate::error::{Error, Result};
use crate::ids::{AuctionId, OrderId, PaymentId, ReconciliationRunId, SaleId};

/// Queue names are explicit and versioned: renaming a Rust type must never
/// orphan queued jobs.
pub mod queues {
    pub const SALE_LIFECYCLE: &str = "gavel.sale_lifecycle.v1";
    pub const MAINTENANCE: &str = "gavel.maintenance.v1";
    pub const PAYMENTS: &str = "gavel.payments.v1";
    pub const AUCTION_LIFECYCLE: &str = "gavel.auction_lifecycle.v1";
    pub const RECONCILIATION: &str = "gavel.reconciliation.v1";
}

/// Attempts before a job is given up: its last failure dead-letters it
/// (`gavel-workers`), and apalis leaves it `Failed`.
const MAX_ATTEMPTS: i32 = 25;

/// Jobs of the sale-lifecycle queue. Each handler re-reads the sale and acts only
/// if its guard still holds, so running one twice, late, or after a newer
/// version was scheduled changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SaleJob {
    /// Activate the sale at `starts_at` if it is still at `version`.
    Start { sale_id: SaleId, version: i32 },
    /// Close the sale at `ends_at` if it is still at `version`.
    End { sale_id: SaleId, version: i32 },
    /// Return the units of holds that have expired.
    SweepHolds { sale_id: SaleId },
    /// Remind the buyers whose holds of this sale end in the second
    /// `expires_second` (unix) and are still held (`claim.expiring`).
    RemindHolds { sale_id: SaleId, expires_second: i64 },
}

/// Jobs of the auction-lifecycle queue. Each handler re-reads the auction
/// under a row lock and acts only if its guard still holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuctionJob {
    /// Open the auction at `starts_at` if it is still scheduled at `version`.
    Start { auction_id: AuctionId, version: i32 },
    /// Close the auction if its current end is still `ends_at` (bids move
    /// the version, and soft close moves the end and queues a new End job,
    /// so the end, not the version, identifies the job that may act).
    End { auction_id: AuctionId, ends_at: DateTime<Utc> },
    /// Remind the buyer of an auction's order `lead_seconds` before its
    /// deadline, if it is still unpaid (`order.payment_due`, once per lead).
    Remind { auction_id: AuctionId, order_id: OrderId, lead_seconds: i64 },
    /// At the deadline: the order lapses unless it was paid.
    Lapse { auction_id: AuctionId, order_id: OrderId },
    /// `lead_seconds` before `ends_at`: remind the bidders and watchers
    /// (`auction.ending_soon`) if the auction is still active and still ends
    /// then (a reminder for an end that soft close moved does nothing).
    EndingSoon { auction_id: AuctionId, ends_at: DateTime<Utc>, lead_seconds: i64 },
}

/// Steps of the checkout saga. Each re-reads the payment and acts only while
/// its outcome is open, so a step run twice, late, or after another path (the
/// HTTP request, a webhook) settled it changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PaymentJob {
    /// Carry a recorded attempt through: call the provider with the attempt's
    /// key (or verify, if a call's outcome is already unknown) and settle.
    /// Queued by the resume tick for attempts whose process or jobs were lost.
    Advance { payment_id: PaymentId },
    /// Ask the provider what became of an attempt whose answer was lost;
    /// `round` counts the tries (the backoff grows with it).
    Verify { payment_id: PaymentId, round: u32 },
    /// Return a payment whose unit was no longer there.
    Refund { payment_id: PaymentId, round: u32 },
}

/// Finance reconciliation. A run resumes from the cursor it committed, so a
/// job run twice, or again after its process died, continues the same run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReconciliationJob {
    /// Work the run to its end.
    Run { run_id: ReconciliationRunId },
    /// The daily platform run over the UTC day `day` (queued by every
    /// process's tick under the key `cron:reconcile:<day>`: once in all).
    Daily { day: chrono::NaiveDate },
}

/// Periodic housekeeping, one job per tick however many processes tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MaintenanceJob {
    /// Delete finished jobs and expired idempotency records.
    Prune { tick: i64 },
}

/// Queues `job` to run at `run_at`. A job with the same `key` on the same queue
/// already exists → nothing happens and `false` is returned.
pub async fn enqueue<T: Serialize>(
    conn: &mut PgConnection,
    queue: &str,
    job: &T,
    run_at: DateTime<Utc>,
    key: &str,
) -> Result<bool> {
    let payload = serde_json::to_vec(job).map_err(|e| Error::Internal(format!("job encoding: {e}")))?;
    // apalis hands a job over once `run_at < now()`. Its own sink stores whole
    // seconds; storing the exact instant makes a job due at its instant, not up
    // to a second before or after it.
    let inserted = sqlx::query!(
        "INSERT INTO apalis.jobs
             (id, job_type, job, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key)
         VALUES (apalis.generate_ulid(), $1, $2, 'Pending', 0, $3, $4, 0, ''::hstore, $5)
         ON CONFLICT (job_type, idempotency_key) DO NOTHING",
        queue,
        payload,
        MAX_ATTEMPTS,
        run_at,
        key,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Deletes jobs finished (`Done`) more than `days` ago; `Failed` and `Killed`
/// jobs stay, for an operator to see. Returns how many went.
pub async fn prune_done<'c>(db: impl PgExecutor<'c>, days: i32) -> Result<u64> {
    Ok(sqlx::query!(
        "DELETE FROM apalis.jobs WHERE status = 'Done' AND done_at < now() - make_interval(days => $1)",
        days,
    )
    .execute(db)
    .await?
    .rows_affected())
}

/// A failed run of job `task_id` (apalis's id): it becomes due again after
/// `delay` rather than at once, as apalis would have it. Returns the job's
/// `max_attempts`, or `None` if there is no such job.
pub async fn defer(conn: &mut PgConnection, task_id: &str, delay: std::time::Duration) -> Result<Option<i32>> {
    Ok(sqlx::query_scalar!(
        "UPDATE apalis.jobs SET run_at = now() + make_interval(secs => $2) WHERE id = $1 RETURNING max_attempts",
        task_id,
        delay.as_secs_f64(),
    )
    .fetch_optional(conn)
    .await?)
}
