//! Housekeeping: nothing else prunes apalis's job table or the stored
//! idempotent responses, so an hourly job does.

use gavel_domain::jobs::MaintenanceJob;
use gavel_domain::{Result, idempotency};
use sqlx::PgPool;

/// Finished jobs are kept this long for inspection.
const DONE_JOBS_KEPT_DAYS: i32 = 7;
/// Idempotency keys are honoured for a day, as Stripe does.
const IDEMPOTENCY_KEPT_DAYS: i32 = 1;

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
            Ok(())
        }
    }
}
