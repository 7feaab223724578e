//! Housekeeping: nothing else prunes apalis's job table or the stored
//! idempotent responses, so an hourly job does. It also resumes payment
//! attempts whose chain of jobs broke, so no checkout stays open for good.

use chrono::Utc;
use gavel_domain::jobs::{self, MaintenanceJob, PaymentJob, queues};
use gavel_domain::{Result, idempotency, payments};
use sqlx::PgPool;

/// Finished jobs are kept this long for inspection.
const DONE_JOBS_KEPT_DAYS: i32 = 7;
/// Idempotency keys are honoured for a day, as Stripe does.
const IDEMPOTENCY_KEPT_DAYS: i32 = 1;
/// An open payment attempt not touched for this long has lost its jobs
/// (verification touches it at least every 15 minutes).
const STALLED_PAYMENT_MINUTES: i32 = 30;

pub async fn run(pool: &PgPool, job: MaintenanceJob) -> Result<()> {
    match job {
        MaintenanceJob::Prune { tick } => {
            // Failed and Killed jobs stay: they are what an operator must see.
            let jobs = sqlx::query(
                "DELETE FROM apalis.jobs
                 WHERE status = 'Done' AND done_at < now() - make_interval(days => $1)",
            )
            .bind(DONE_JOBS_KEPT_DAYS)
            .execute(pool)
            .await?
            .rows_affected();
            let keys = idempotency::prune(pool, IDEMPOTENCY_KEPT_DAYS).await?;
            tracing::info!(tick, jobs, keys, "pruned finished jobs and old idempotency keys");
            resume_stalled_payments(pool, tick).await
        }
    }
}

async fn resume_stalled_payments(pool: &PgPool, tick: i64) -> Result<()> {
    let mut tx = pool.begin().await?;
    let stalled = payments::stalled(&mut tx, STALLED_PAYMENT_MINUTES).await?;
    for id in &stalled {
        let job = PaymentJob::Advance { payment_id: *id };
        jobs::enqueue(&mut tx, queues::PAYMENTS, &job, Utc::now(), &format!("resume:{id}:{tick}")).await?;
    }
    tx.commit().await?;
    if !stalled.is_empty() {
        tracing::warn!(tick, count = stalled.len(), "resumed payment attempts whose jobs were lost");
    }
    Ok(())
}
