//! Runs Gavel's durable jobs: one apalis worker per queue over
//! apalis-postgres, polling on a short interval (apalis otherwise wakes only on
//! its heartbeat, and a job scheduled for later sends no notification when its
//! time comes). A worker that stops heartbeating has its jobs re-enqueued for
//! the others after three missed beats (6 s). Every worker and tick is a
//! supervised part: it is restarted with backoff whatever ends it.
#![forbid(unsafe_code)]

pub mod cron;
mod failures;
pub mod webhooks;

use std::future::Future;
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::{Config, PostgresStorage};
use failures::Failures;
pub use failures::JobRetry;
use gavel_domain::health::{Liveness, supervise};
use gavel_domain::jobs::{AuctionJob, MaintenanceJob, PaymentJob, ReconciliationJob, SaleJob, queues};
use gavel_workflows::auction_close::PaymentReminders;
use gavel_workflows::checkout::Checkout;
use gavel_workflows::maintenance::Retention;
use gavel_workflows::reconciliation::{Reconciler, ReconciliationConfig};
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How often an idle worker looks for due jobs.
    pub poll_interval: Duration,
    /// Jobs fetched per poll.
    pub batch_size: usize,
    /// A name unique to this process, so apalis can tell workers apart.
    pub instance: String,
    /// When the buyer of an auction's order is reminded before its deadline.
    pub payment_reminders: PaymentReminders,
    /// How often held-back trailing stock is published to sales' live feeds.
    pub feed_stock_flush: Duration,
    /// What housekeeping keeps.
    pub retention: Retention,
    /// How reconciliation runs judge.
    pub reconciliation: ReconciliationConfig,
    /// When (after midnight UTC) the daily platform reconciliation of the
    /// day before is queued; `None`: it is not.
    pub daily_reconciliation: Option<Duration>,
    /// The delays between a failing job's runs.
    pub retry: JobRetry,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    #[error("setting up the job tables: {0}")]
    Setup(#[from] apalis_postgres::Error),
}

/// Creates (or upgrades) apalis's own tables in schema `apalis`.
pub async fn setup(pool: &PgPool) -> Result<(), WorkersError> {
    PostgresStorage::setup(pool).await?;
    Ok(())
}

async fn sale_lifecycle(
    job: SaleJob,
    pool: Data<PgPool>,
    failures: Data<Failures>,
    task: TaskId,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let Err(err) = gavel_workflows::sale_lifecycle::run(&pool, job.clone()).await else { return Ok(()) };
    Err(failures.failed(queues::SALE_LIFECYCLE, &task, &attempt, &job, err).await)
}

async fn auction_lifecycle(
    job: AuctionJob,
    pool: Data<PgPool>,
    reminders: Data<PaymentReminders>,
    failures: Data<Failures>,
    task: TaskId,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let Err(err) = gavel_workflows::auction_lifecycle::run(&pool, &reminders, job.clone()).await else { return Ok(()) };
    Err(failures.failed(queues::AUCTION_LIFECYCLE, &task, &attempt, &job, err).await)
}

async fn payments(
    job: PaymentJob,
    payments: Data<Checkout>,
    failures: Data<Failures>,
    task: TaskId,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let Err(err) = payments.run(job.clone()).await else { return Ok(()) };
    Err(failures.failed(queues::PAYMENTS, &task, &attempt, &job, err).await)
}

async fn reconciliation(
    job: ReconciliationJob,
    reconciler: Data<Reconciler>,
    failures: Data<Failures>,
    task: TaskId,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let Err(err) = reconciler.run(job.clone()).await else { return Ok(()) };
    Err(failures.failed(queues::RECONCILIATION, &task, &attempt, &job, err).await)
}

async fn maintenance(
    job: MaintenanceJob,
    pool: Data<PgPool>,
    retention: Data<Retention>,
    failures: Data<Failures>,
    task: TaskId,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let Err(err) = gavel_workflows::maintenance::run_with(&pool, job.clone(), *retention).await else { return Ok(()) };
    Err(failures.failed(queues::MAINTENANCE, &task, &attempt, &job, err).await)
}

/// How often housekeeping runs.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

fn queue_config(queue: &str, config: &WorkerConfig) -> Config {
    Config::default()
        .queue(queue)
        .batch_size(config.batch_size)
        .heartbeat_interval(Duration::from_secs(2))
        .missed_heartbeats(3)
}

/// Runs every queue's worker and the ticks until `shutdown` is cancelled.
///
/// Each is a supervised part (see [`health::supervise`]): a worker whose
/// backend poll fails (a database blip, a pool timeout at a sale's peak)
/// ends, is reported down on `/readyz`, and is started again with backoff —
/// never left dead, and never taking the process down with it. Jobs a dead
/// worker held are re-enqueued by apalis's heartbeats.
///
/// The parts are registered with `liveness` when this is called; the future
/// runs them until `shutdown`.
pub fn run(
    pool: PgPool,
    config: WorkerConfig,
    saga: Checkout,
    liveness: Liveness,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send + 'static {
    let mut parts = JoinSet::new();
    let part = |name: &'static str| (name, liveness.clone(), shutdown.clone());

    let (name, live, stop) = part("worker:sale_lifecycle");
    let (p, c, s) = (pool.clone(), config.clone(), shutdown.clone());
    parts.spawn(supervise(name, live, stop, move || {
        let storage = PostgresStorage::<SaleJob>::new(&p)
            .with_config(queue_config(queues::SALE_LIFECYCLE, &c))
            .poll_with_interval(c.poll_interval);
        let worker = WorkerBuilder::new(format!("{}:{}", c.instance, queues::SALE_LIFECYCLE))
            .backend(storage)
            .data(Failures::new(p.clone(), c.retry))
            .data(p.clone())
            .build(sale_lifecycle);
        until(worker.run_until(stopped(s.clone())))
    }));

    let (name, live, stop) = part("worker:auction_lifecycle");
    let (p, c, s) = (pool.clone(), config.clone(), shutdown.clone());
    parts.spawn(supervise(name, live, stop, move || {
        let storage = PostgresStorage::<AuctionJob>::new(&p)
            .with_config(queue_config(queues::AUCTION_LIFECYCLE, &c))
            .poll_with_interval(c.poll_interval);
        let worker = WorkerBuilder::new(format!("{}:{}", c.instance, queues::AUCTION_LIFECYCLE))
            .backend(storage)
            .data(Failures::new(p.clone(), c.retry))
            .data(p.clone())
            .data(c.payment_reminders.clone())
            .build(auction_lifecycle);
        until(worker.run_until(stopped(s.clone())))
    }));

    let (name, live, stop) = part("worker:payments");
    let (p, c, s, saga_) = (pool.clone(), config.clone(), shutdown.clone(), saga.clone());
    parts.spawn(supervise(name, live, stop, move || {
        let storage = PostgresStorage::<PaymentJob>::new(&p)
            .with_config(queue_config(queues::PAYMENTS, &c))
            .poll_with_interval(c.poll_interval);
        let worker = WorkerBuilder::new(format!("{}:{}", c.instance, queues::PAYMENTS))
            .backend(storage)
            .data(Failures::new(p.clone(), c.retry))
            .data(saga_.clone())
            .build(payments);
        until(worker.run_until(stopped(s.clone())))
    }));

    let (name, live, stop) = part("worker:maintenance");
    let (p, c, s) = (pool.clone(), config.clone(), shutdown.clone());
    parts.spawn(supervise(name, live, stop, move || {
        let storage = PostgresStorage::<MaintenanceJob>::new(&p)
            .with_config(queue_config(queues::MAINTENANCE, &c))
            .poll_with_interval(Duration::from_secs(5));
        let worker = WorkerBuilder::new(format!("{}:{}", c.instance, queues::MAINTENANCE))
            .backend(storage)
            .data(Failures::new(p.clone(), c.retry))
            .data(p.clone())
            .data(c.retention)
            .build(maintenance);
        until(worker.run_until(stopped(s.clone())))
    }));

    let reconciler = Reconciler::new(pool.clone(), saga.clone(), config.reconciliation.clone());
    let (name, live, stop) = part("worker:reconciliation");
    let (p, c, s, r) = (pool.clone(), config.clone(), shutdown.clone(), reconciler.clone());
    parts.spawn(supervise(name, live, stop, move || {
        let storage = PostgresStorage::<ReconciliationJob>::new(&p)
            .with_config(queue_config(queues::RECONCILIATION, &c))
            .poll_with_interval(c.poll_interval.max(Duration::from_millis(500)));
        let worker = WorkerBuilder::new(format!("{}:{}", c.instance, queues::RECONCILIATION))
            .backend(storage)
            .data(Failures::new(p.clone(), c.retry))
            .data(r.clone())
            .build(reconciliation);
        until(worker.run_until(stopped(s.clone())))
    }));

    let (name, live, stop) = part("tick:reconciliation");
    let s = shutdown.clone();
    parts.spawn(supervise(name, live, stop, move || {
        let (r, s) = (reconciler.clone(), s.clone());
        async move {
            tick_reconciliation(r, s).await;
            Ok(())
        }
    }));

    // Periodic jobs (apalis-cron): each tick queues one job, once across processes.
    let day = Duration::from_secs(86_400);
    let mut periodic =
        vec![("cron:maintenance", cron::Periodic::Maintenance, cron::Every::new(MAINTENANCE_EVERY, Duration::ZERO))];
    if let Some(at) = config.daily_reconciliation {
        periodic.push(("cron:daily_reconciliation", cron::Periodic::DailyReconciliation, cron::Every::new(day, at)));
    }
    for (name, job, schedule) in periodic {
        let (live, stop) = (liveness.clone(), shutdown.clone());
        let (p, s, instance) = (pool.clone(), shutdown.clone(), config.instance.clone());
        parts.spawn(supervise(name, live, stop, move || {
            cron::run(format!("{instance}:{name}"), job, schedule, p.clone(), stopped(s.clone()))
        }));
    }

    let (name, live, stop) = part("tick:feed_stock");
    let (p, s, every) = (pool.clone(), shutdown.clone(), config.feed_stock_flush);
    parts.spawn(supervise(name, live, stop, move || {
        let (p, s) = (p.clone(), s.clone());
        async move {
            tick_feed_stock(p, every, s).await;
            Ok(())
        }
    }));

    let (name, live, stop) = part("tick:resume_payments");
    let s = shutdown.clone();
    parts.spawn(supervise(name, live, stop, move || {
        let (saga, s) = (saga.clone(), s.clone());
        async move {
            tick_resume(saga, s).await;
            Ok(())
        }
    }));

    async move { while parts.join_next().await.is_some() {} }
}

/// Resolves once `shutdown` is cancelled, in the form apalis's `run_until` takes.
async fn stopped(shutdown: CancellationToken) -> Result<(), std::io::Error> {
    shutdown.cancelled().await;
    Ok(())
}

/// A worker's run as a supervised part sees it.
async fn until(run: impl Future<Output = Result<(), WorkerError>> + Send + 'static) -> Result<(), String> {
    run.await.map_err(|e| e.to_string())
}

/// How often a workers process looks for reconciliation runs left unfinished.
const RECONCILIATION_EVERY: Duration = Duration::from_secs(60);

/// Runs left unfinished (their process died) are queued again to continue
/// from their cursor; the tick number in the key makes each look one job
/// across processes.
async fn tick_reconciliation(reconciler: Reconciler, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(RECONCILIATION_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let tick = chrono::Utc::now().timestamp() / RECONCILIATION_EVERY.as_secs() as i64;
        if let Err(err) = reconciler.resume_unfinished(tick).await {
            tracing::warn!(error = %err, "could not look for unfinished reconciliation runs");
        }
    }
}

/// Publishes the trailing stock that the 100 ms rule held back (sales marked
/// `feed_stock_dirty`), so a sale's watchers never stay on a stale number.
/// Every worker process ticks; the guarded `UPDATE` makes each publication
/// one event whichever process gets there first.
async fn tick_feed_stock(pool: PgPool, every: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(err) = gavel_domain::feed::flush_stock(&pool, 100).await {
            tracing::warn!(error = %err, "could not publish held-back sale stock to the live feed");
        }
    }
}

/// Every process ticks, every `Checkout::resume_every`, so a checkout whose
/// process died is carried on within about `payments.resume_after`; the tick
/// number in the job keys makes each tick one job per attempt across processes.
async fn tick_resume(saga: Checkout, shutdown: CancellationToken) {
    let every = saga.resume_every();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let tick = chrono::Utc::now().timestamp_millis() / every.as_millis().max(1) as i64;
        if let Err(err) = saga.resume_stalled(tick).await {
            tracing::warn!(error = %err, "could not look for stalled payment attempts");
        }
    }
}
