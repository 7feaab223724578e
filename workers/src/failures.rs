//! What a durable job's failed run does.
//!
//! Left to itself, apalis runs a failed job again at once (its `run_at` is
//! unchanged) until `max_attempts`, so a job that fails for a minute spends
//! its whole budget in a second or two, then stays `Failed` with a log line.
//! Here each failed run instead records its error (`job_attempts`, under the
//! job's subject) and moves the job's `run_at` by a doubling, jittered delay
//! ([`JobRetry`]); the run that spends the budget dead-letters the job (kind
//! `job`, its queue and payload, every run's error), for an operator to
//! replay once (`gavel dlq retry`) once the cause is fixed. A job that keeps
//! its own rounds (the refund) dead-letters itself and never gets here.

use std::fmt::Debug;
use std::time::Duration;

use apalis::prelude::{Attempt, BoxDynError, TaskId};
use gavel_domain::backoff::{doubling, jitter};
use gavel_domain::{Result, job_dead_letters, jobs};
use serde::Serialize;
use sqlx::PgPool;

/// The delays between a job's runs after failures: `first`, doubled each
/// time, at most `max`, each with ±10% jitter (`jobs.retry_first_ms`,
/// `jobs.retry_max_ms`). The defaults (1 s, 5 min) spread the 25 runs of a
/// job over about 85 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRetry {
    pub first: Duration,
    pub max: Duration,
}

impl Default for JobRetry {
    fn default() -> Self {
        Self { first: Duration::from_secs(1), max: Duration::from_secs(300) }
    }
}

impl JobRetry {
    /// The delay after the `failures`-th failed run (from 1).
    fn delay(&self, failures: u32) -> Duration {
        jitter(doubling(self.first, self.max, failures))
    }
}

/// Handed to every queue's handler (as apalis `Data`).
#[derive(Clone)]
pub(crate) struct Failures {
    pool: PgPool,
    retry: JobRetry,
}

impl Failures {
    pub(crate) fn new(pool: PgPool, retry: JobRetry) -> Self {
        Self { pool, retry }
    }

    /// The run `attempt` of `job` (task `task` of `queue`) failed with
    /// `err`: records it and defers the next run, or dead-letters the job
    /// if this was its last. Returns the error for apalis to store. If the
    /// database cannot be reached to record it, apalis's own retry stands.
    pub(crate) async fn failed<J, E>(
        &self,
        queue: &'static str,
        task: &TaskId,
        attempt: &Attempt,
        job: &J,
        err: E,
    ) -> BoxDynError
    where
        J: Serialize + Debug,
        E: std::error::Error + Send + Sync + 'static,
    {
        let error = err.to_string();
        let run = u32::try_from(attempt.current()).unwrap_or(u32::MAX);
        match self.record(queue, &task.to_string(), run, job, &error).await {
            Ok(Recorded::Deferred(delay)) => {
                tracing::warn!(queue, ?job, run, error, ?delay, "job failed; it will be retried");
            }
            Ok(Recorded::DeadLettered) => {}
            Err(record) => {
                tracing::warn!(queue, ?job, run, error, %record, "job failed, and the failure could not be recorded");
            }
        }
        Box::new(err)
    }

    async fn record<J: Serialize>(&self, queue: &str, task: &str, run: u32, job: &J, error: &str) -> Result<Recorded> {
        let subject = subject(queue, job)?;
        let delay = self.retry.delay(run);
        let mut tx = self.pool.begin().await?;
        let max_attempts = jobs::defer(&mut tx, task, delay).await?;
        let recorded = match max_attempts {
            Some(max) if i64::from(run) >= i64::from(max) => {
                job_dead_letters::dead_letter(&mut tx, &subject, queue, job, error).await?;
                Recorded::DeadLettered
            }
            _ => {
                job_dead_letters::record_failure(&mut tx, &subject, error).await?;
                Recorded::Deferred(delay)
            }
        };
        tx.commit().await?;
        Ok(recorded)
    }
}

enum Recorded {
    Deferred(Duration),
    DeadLettered,
}

/// A job's name in `job_attempts` and the dead-letter queue: its queue and
/// its payload, so a replayed job that fails again re-opens the same entry.
fn subject<J: Serialize>(queue: &str, job: &J) -> Result<String> {
    let job = serde_json::to_string(job).map_err(|e| gavel_domain::Error::Internal(format!("job encoding: {e}")))?;
    Ok(format!("{queue}:{job}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gavel_domain::ids::SaleId;
    use gavel_domain::jobs::{SaleJob, queues};

    #[test]
    fn a_jobs_subject_is_its_queue_and_payload() {
        let sale_id = SaleId::new();
        let s = subject(queues::SALE_LIFECYCLE, &SaleJob::Start { sale_id, version: 3 }).expect("encodes");
        assert_eq!(s, format!(r#"gavel.sale_lifecycle.v1:{{"kind":"start","sale_id":"{sale_id}","version":3}}"#));
    }

    #[test]
    fn the_default_delays_double_from_a_second_to_five_minutes() {
        let r = JobRetry::default();
        let first = r.delay(1);
        assert!((Duration::from_millis(900)..=Duration::from_millis(1100)).contains(&first), "{first:?}");
        let late = r.delay(20);
        assert!((Duration::from_secs(270)..=Duration::from_secs(330)).contains(&late), "{late:?}");
        let total: Duration = (1..25).map(|n| doubling(r.first, r.max, n)).sum();
        assert_eq!(total, Duration::from_secs(511 + 15 * 300));
    }
}
