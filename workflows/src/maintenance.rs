//! Housekeeping: nothing else prunes apalis's job table, the stored
//! idempotent responses or the received Stripe events, so an hourly job does.

use gavel_domain::jobs::{self, MaintenanceJob};
use gavel_domain::{Result, idempotency, stripe_events};
use sqlx::PgPool;

/// Finished jobs are kept this long for inspection.
const DONE_JOBS_KEPT_DAYS: i32 = 7;
/// Idempotency keys are honoured for a day, as Stripe does.
const IDEMPOTENCY_KEPT_DAYS: i32 = 1;
/// Stripe redelivers an event for up to 3 days; a stored event must outlive
/// that to catch duplicates, and is kept well beyond for an operator.
const STRIPE_EVENTS_KEPT_DAYS: i32 = 30;

pub async fn run(pool: &PgPool, job: MaintenanceJob) -> Result<()> {
    match job {
        MaintenanceJob::Prune { tick } => {
            // Failed and Killed jobs stay: they are what an operator must see.
            let jobs = jobs::prune_done(pool, DONE_JOBS_KEPT_DAYS).await?;
            let keys = idempotency::prune(pool, IDEMPOTENCY_KEPT_DAYS).await?;
            let stripe_events = stripe_events::prune(pool, STRIPE_EVENTS_KEPT_DAYS).await?;
            tracing::info!(tick, jobs, keys, stripe_events, "pruned finished jobs, idempotency keys and Stripe events");
            Ok(())
        }
    }
}
