//! Housekeeping: nothing else prunes apalis's job table, the stored
//! idempotent responses, the received Stripe events, the live feed's
//! stored events or the failed jobs' recorded errors, so an hourly job does.

use gavel_domain::jobs::{self, MaintenanceJob};
use gavel_domain::{Result, feed, idempotency, job_dead_letters, stripe_events};
use sqlx::PgPool;

/// Finished jobs are kept this long for inspection.
const DONE_JOBS_KEPT_DAYS: i32 = 7;
/// Idempotency keys are honoured for a day, as Stripe does.
const IDEMPOTENCY_KEPT_DAYS: i32 = 1;
/// Stripe redelivers an event for up to 3 days; a stored event must outlive
/// that to catch duplicates, and is kept well beyond for an operator.
const STRIPE_EVENTS_KEPT_DAYS: i32 = 30;

/// A failed job's recorded errors outlive its retries (about 85 minutes by
/// default, a refund's rounds about as long) by far.
const JOB_ATTEMPTS_KEPT_DAYS: i32 = 30;

/// Feeds (of closed subjects) and job errors pruned per run; the next hourly
/// run takes the rest.
const FEEDS_PER_RUN: i64 = 10_000;
const JOB_ATTEMPTS_PER_RUN: i64 = 100_000;

/// What housekeeping keeps, where it is configurable.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// The live feed of a sale or auction is kept this long after it closed
    /// (`feed.retention_days`), for watchers resuming with `Last-Event-ID`.
    pub feed_days: i32,
}

impl Default for Retention {
    fn default() -> Self {
        Self { feed_days: 7 }
    }
}

/// [`run_with`] the default retention.
pub async fn run(pool: &PgPool, job: MaintenanceJob) -> Result<()> {
    run_with(pool, job, Retention::default()).await
}

pub async fn run_with(pool: &PgPool, job: MaintenanceJob, retention: Retention) -> Result<()> {
    match job {
        MaintenanceJob::Prune { tick } => {
            // Failed and Killed jobs stay: they are what an operator must see.
            let jobs = jobs::prune_done(pool, DONE_JOBS_KEPT_DAYS).await?;
            let keys = idempotency::prune(pool, IDEMPOTENCY_KEPT_DAYS).await?;
            let stripe_events = stripe_events::prune(pool, STRIPE_EVENTS_KEPT_DAYS).await?;
            let feed_events = feed::prune(pool, retention.feed_days, FEEDS_PER_RUN).await?;
            let job_attempts = job_dead_letters::prune(pool, JOB_ATTEMPTS_KEPT_DAYS, JOB_ATTEMPTS_PER_RUN).await?;
            tracing::info!(
                tick,
                jobs,
                keys,
                stripe_events,
                feed_events,
                job_attempts,
                "pruned finished jobs, idempotency keys, Stripe events, closed feeds and old job errors"
            );
            Ok(())
        }
    }
}
