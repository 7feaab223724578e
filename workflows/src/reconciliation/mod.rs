//! Finance reconciliation: Gavel's ledger (payments, refunds, their orders)
//! against Stripe's records for a period.
//!
//! A run pages through, in order: the provider's PaymentIntents of the
//! period, its refunds, then the ledger's payments and refunds of the period
//! that no provider page matched (each looked up at the provider by id, in
//! case it was created outside the period), then re-applies its
//! auto-settlements. Each page's discrepancies, the ledger rows it matched and
//! the cursor commit in one transaction, so a run killed mid-way continues
//! from its last page, and only one page is in memory at a time. One process
//! works a run at a time (a session advisory lock, released if it dies).
//! What is compared and what is settled: [`compare`].

pub mod compare;
mod phases;

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use gavel_domain::ids::ReconciliationRunId;
use gavel_domain::jobs::{self, ReconciliationJob, queues};
use gavel_domain::reconciliation::{self as recon, Period, Phase, Run, RunStatus, Scope};
use gavel_domain::{Error, Result};
use sqlx::PgPool;

use crate::checkout::Checkout;

#[derive(Debug, Clone)]
pub struct ReconciliationConfig {
    /// `reconciliation.stuck_pending_after_seconds`.
    pub stuck_pending_after: Duration,
    /// Provider objects per list request (1..=100) and ledger rows per page.
    pub page_size: u8,
}

impl Default for ReconciliationConfig {
    fn default() -> Self {
        Self { stuck_pending_after: Duration::from_secs(3600), page_size: 100 }
    }
}

/// Retries of one page before the run is marked failed (the provider or the
/// database kept failing); the waits double from one second.
const PAGE_RETRIES: u32 = 5;

#[derive(Clone)]
pub struct Reconciler {
    pool: PgPool,
    checkout: Checkout,
    config: ReconciliationConfig,
}

impl Reconciler {
    pub fn new(pool: PgPool, checkout: Checkout, config: ReconciliationConfig) -> Self {
        Self { pool, checkout, config }
    }

    /// `POST /v1/reconciliation_runs`: the run of `scope` over `period`, new
    /// (queued for the workers, in the same transaction) or the one already
    /// pending, running or completed.
    pub async fn request(&self, scope: Scope, period: Period) -> Result<(Run, bool)> {
        let mut tx = self.pool.begin().await?;
        let (run, created) = recon::create_or_get(&mut tx, scope, period).await?;
        if created {
            let job = ReconciliationJob::Run { run_id: run.id };
            jobs::enqueue(&mut tx, queues::RECONCILIATION, &job, Utc::now(), &format!("run:{}", run.id)).await?;
        }
        tx.commit().await?;
        Ok((run, created))
    }

    /// A run as `scope` may see it.
    pub async fn get(&self, scope: Scope, id: ReconciliationRunId) -> Result<Run> {
        recon::get(&mut *self.pool.acquire().await?, scope, id).await
    }

    /// The daily platform run over the UTC day `day`, requested and worked.
    pub async fn daily(&self, day: NaiveDate) -> Result<Run> {
        let from = day.and_time(chrono::NaiveTime::MIN).and_utc();
        let period = Period::new(from, from + chrono::Duration::days(1))?;
        let (run, _) = self.request(Scope::Platform, period).await?;
        self.work(run.id).await
    }

    /// Queues a `Run` job for every unfinished run (one per run and tick).
    pub async fn resume_unfinished(&self, tick: i64) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let ids = recon::unfinished(&mut tx).await?;
        for id in &ids {
            let job = ReconciliationJob::Run { run_id: *id };
            jobs::enqueue(&mut tx, queues::RECONCILIATION, &job, Utc::now(), &format!("resume:{id}:{tick}")).await?;
        }
        tx.commit().await?;
        Ok(ids.len())
    }

    /// Runs one job of the reconciliation queue.
    pub async fn run(&self, job: ReconciliationJob) -> Result<()> {
        match job {
            ReconciliationJob::Run { run_id } => self.work(run_id).await.map(drop),
            ReconciliationJob::Daily { day } => self.daily(day).await.map(drop),
        }
    }

    /// Works the run to its end from wherever it stands, unless another
    /// process is working it (then returns it as it stands).
    pub async fn work(&self, id: ReconciliationRunId) -> Result<Run> {
        let mut lock = self.pool.acquire().await?;
        let key = lock_key(id);
        let held =
            sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "held!""#, key).fetch_one(&mut *lock).await?;
        if !held {
            return recon::get(&mut lock, Scope::Platform, id).await;
        }
        let result = self.work_locked(id).await;
        let unlocked =
            sqlx::query_scalar!(r#"SELECT pg_advisory_unlock($1) AS "unlocked!""#, key).fetch_one(&mut *lock).await;
        if let Err(err) = unlocked {
            // The session ends with the connection: close it so the lock goes too.
            tracing::warn!(run = %id, error = %err, "could not release a reconciliation lock");
            let _ = lock.detach();
        }
        result
    }

    async fn work_locked(&self, id: ReconciliationRunId) -> Result<Run> {
        let claimed = recon::claim(&mut *self.pool.acquire().await?, id).await?;
        let Some(mut run) = claimed else {
            return recon::get(&mut *self.pool.acquire().await?, Scope::Platform, id).await;
        };
        tracing::info!(run = %id, phase = run.phase.as_str(), "reconciliation run working");
        let mut failures = 0u32;
        while run.phase != Phase::Done {
            match self.step(&run).await {
                Ok((phase, cursor)) => {
                    failures = 0;
                    run.phase = phase;
                    run.cursor = cursor;
                }
                Err(err) if failures < PAGE_RETRIES => {
                    failures += 1;
                    let wait = Duration::from_secs(1 << (failures - 1));
                    tracing::warn!(run = %id, phase = run.phase.as_str(), error = %err, ?wait, "reconciliation page failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(err) => {
                    tracing::error!(run = %id, error = %err, "reconciliation run failed");
                    recon::finish(&mut *self.pool.acquire().await?, id, Some(&err.to_string())).await?;
                    return recon::get(&mut *self.pool.acquire().await?, Scope::Platform, id).await;
                }
            }
        }
        recon::finish(&mut *self.pool.acquire().await?, id, None).await?;
        let run = recon::get(&mut *self.pool.acquire().await?, Scope::Platform, id).await?;
        metrics::counter!("gavel_reconciliation_runs_total", "status" => run.status.as_str()).increment(1);
        tracing::info!(run = %id, status = run.status.as_str(), "reconciliation run finished");
        Ok(run)
    }

    /// Waits until the run has finished (another process may be working it).
    pub async fn wait(&self, scope: Scope, id: ReconciliationRunId, within: Duration) -> Result<Run> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let run = self.get(scope, id).await?;
            if matches!(run.status, RunStatus::Completed | RunStatus::Failed) {
                return Ok(run);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Internal(format!("reconciliation run {id} did not finish in time")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn judge(&self, run: &Run) -> compare::Judge {
        let stuck = chrono::Duration::from_std(self.config.stuck_pending_after).unwrap_or(chrono::Duration::MAX);
        compare::Judge { as_of: run.as_of, stuck_after: stuck }
    }

    fn period(run: &Run) -> (DateTime<Utc>, DateTime<Utc>) {
        (run.period_from, run.period_to)
    }
}

/// The advisory lock key of a run: its UUID's low 64 bits.
fn lock_key(id: ReconciliationRunId) -> i64 {
    let bytes = id.uuid().as_u64_pair().1;
    i64::from_ne_bytes(bytes.to_ne_bytes())
}
