//! Periodic jobs, scheduled with apalis-cron.
//!
//! apalis-cron fires every tick in every process that runs the schedule, and a
//! tick that falls while no process runs is simply never fired. So a tick here
//! never does the work itself: it queues one durable job under the key
//! `cron:<name>:<tick>`, which apalis-postgres keeps unique per job type, so
//! the work is done once however many processes tick; and when a process
//! starts it queues the schedule's latest tick, so a tick missed while every
//! process was down is made up (the key makes that a no-op when it was not).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use apalis_cron::timezone::Utc;
use apalis_cron::{CronScheduler, Schedule, Tick};
use chrono::{DateTime, NaiveDate};
use gavel_domain::error::Error;
use gavel_domain::jobs::{self, MaintenanceJob, ReconciliationJob, queues};
use sqlx::PgPool;

/// Ticks at `offset` past every multiple of `period` since the Unix epoch
/// (UTC): `Every::new(1 day, 10 min)` is 00:10 UTC each day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Every {
    period: u64,
    offset: u64,
    /// The tick last given out, so the same instant is never given twice.
    last: Option<u64>,
}

impl Every {
    /// `period` is whole seconds, at least one; `offset` is reduced modulo it.
    pub fn new(period: Duration, offset: Duration) -> Self {
        let period = period.as_secs().max(1);
        Self { period, offset: offset.as_secs() % period, last: None }
    }

    /// The latest tick at or before `now` (seconds since the epoch).
    pub fn latest(&self, now: u64) -> Option<u64> {
        let since = now.checked_sub(self.offset)?;
        Some(since / self.period * self.period + self.offset)
    }

    /// The first tick strictly after `now` (and after the last one given).
    pub fn after(&self, now: u64) -> u64 {
        let floor = now.max(self.last.unwrap_or(0));
        match self.latest(floor) {
            Some(t) => t + self.period,
            None => self.offset,
        }
    }
}

impl Schedule<Utc> for Every {
    fn next_tick(&mut self, _: &Utc) -> Option<Tick<Utc>> {
        let next = self.after(unix_now());
        self.last = Some(next);
        Some(Tick::new(next))
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// One of Gavel's periodic jobs: what a tick at a given instant queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Periodic {
    /// Housekeeping, hourly.
    Maintenance,
    /// The platform's reconciliation of the UTC day before the tick.
    DailyReconciliation,
}

impl Periodic {
    pub fn name(self) -> &'static str {
        match self {
            Self::Maintenance => "maintenance",
            Self::DailyReconciliation => "daily_reconciliation",
        }
    }

    /// Queues the job of the tick at `tick` (seconds since the epoch), once
    /// across processes: the job's key is unique in apalis's table.
    pub async fn queue(self, pool: &PgPool, tick: u64, schedule: &Every) -> Result<(), Error> {
        let at = DateTime::from_timestamp(tick as i64, 0).unwrap_or_default();
        let mut conn = pool.acquire().await?;
        let now = chrono::Utc::now();
        let queued = match self {
            Self::Maintenance => {
                let n = (tick / schedule.period) as i64;
                let job = MaintenanceJob::Prune { tick: n };
                jobs::enqueue(&mut conn, queues::MAINTENANCE, &job, now, &format!("cron:prune:{n}")).await
            }
            Self::DailyReconciliation => {
                let day = reconciled_day(at);
                let job = ReconciliationJob::Daily { day };
                let key = format!("cron:reconcile:{day}");
                jobs::enqueue(&mut conn, queues::RECONCILIATION, &job, now, &key).await
            }
        };
        queued.map(drop)
    }
}

/// A daily tick reconciles the UTC day before it.
fn reconciled_day(tick: DateTime<chrono::Utc>) -> NaiveDate {
    let today = tick.date_naive();
    today.pred_opt().unwrap_or(today)
}

/// How long a tick keeps trying to queue its job through a database outage
/// before it gives up (the next process start, or the next tick, makes up).
const QUEUE_ATTEMPTS: u32 = 12;

async fn on_tick(
    tick: Tick<Utc>,
    periodic: Data<Periodic>,
    pool: Data<PgPool>,
    schedule: Data<Every>,
) -> Result<(), BoxDynError> {
    let at = tick.get_timestamp();
    let mut wait = Duration::from_millis(500);
    for attempt in 1..=QUEUE_ATTEMPTS {
        match periodic.queue(&pool, at, &schedule).await {
            Ok(()) => return Ok(()),
            Err(err) if attempt < QUEUE_ATTEMPTS => {
                tracing::warn!(job = periodic.name(), tick = at, attempt, error = %err, "could not queue a periodic job; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
            Err(err) => {
                tracing::error!(job = periodic.name(), tick = at, error = %err, "gave up queueing a periodic job");
                return Err(Box::new(err));
            }
        }
    }
    Ok(())
}

/// Runs `periodic` on `schedule` until `stop` resolves: first queues the
/// latest tick at or before now (a tick missed while no process ran), then
/// queues each tick as apalis-cron fires it.
pub async fn run(
    name: String,
    periodic: Periodic,
    schedule: Every,
    pool: PgPool,
    stop: impl std::future::Future<Output = Result<(), std::io::Error>> + Send + 'static,
) -> Result<(), String> {
    if let Some(latest) = schedule.latest(unix_now())
        && let Err(err) = periodic.queue(&pool, latest, &schedule).await
    {
        // Not fatal: the supervisor restarts this part, which tries again.
        return Err(format!("queueing the latest {} tick: {err}", periodic.name()));
    }
    let worker = WorkerBuilder::new(name)
        .backend(CronScheduler::new(schedule))
        .data(periodic)
        .data(pool)
        .data(schedule)
        .build(on_tick);
    worker.run_until(stop).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    #[test]
    fn ticks_fall_at_the_offset_of_each_period() {
        let daily = Every::new(Duration::from_secs(DAY), Duration::from_secs(600));
        let monday = 1_764_547_200; // 2025-12-01T00:00:00Z
        assert_eq!(daily.latest(monday + 599), Some(monday - DAY + 600));
        assert_eq!(daily.latest(monday + 600), Some(monday + 600));
        assert_eq!(daily.after(monday + 599), monday + 600);
        assert_eq!(daily.after(monday + 600), monday + DAY + 600, "strictly after");
        assert_eq!(Every::new(Duration::from_secs(DAY), Duration::from_secs(DAY + 5)).offset, 5);
        assert_eq!(daily.latest(10), None, "before the first tick of the epoch");
    }

    #[test]
    fn a_tick_is_never_given_out_twice() {
        let mut hourly = Every::new(Duration::from_secs(3600), Duration::ZERO);
        let first = hourly.next_tick(&Utc).map(|t| t.get_timestamp());
        let second = hourly.next_tick(&Utc).map(|t| t.get_timestamp());
        assert!(first.is_some_and(|f| f > unix_now() && f % 3600 == 0));
        assert_eq!(second, first.map(|f| f + 3600));
    }

    #[test]
    fn a_daily_tick_reconciles_the_day_before_it() {
        let tick = DateTime::parse_from_rfc3339("2026-12-01T00:10:00Z").map(|t| t.to_utc());
        assert_eq!(tick.map(reconciled_day).ok(), NaiveDate::from_ymd_opt(2026, 11, 30));
    }
}
