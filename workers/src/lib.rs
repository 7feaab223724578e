//! Runs Gavel's durable jobs: one apalis worker per queue over
//! apalis-postgres, polling on a short interval (apalis otherwise wakes only on
//! its heartbeat, and a job scheduled for later sends no notification when its
//! time comes). A worker that stops heartbeating has its jobs re-enqueued for
//! the others after three missed beats (6 s).
#![forbid(unsafe_code)]

use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::{Config, PostgresStorage};
use gavel_domain::jobs::{self, MaintenanceJob, PaymentJob, SaleJob, queues};
use gavel_workflows::checkout::Payments;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How often an idle worker looks for due jobs.
    pub poll_interval: Duration,
    /// Jobs fetched per poll.
    pub batch_size: usize,
    /// A name unique to this process, so apalis can tell workers apart.
    pub instance: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    #[error("setting up the job tables: {0}")]
    Setup(#[from] apalis_postgres::Error),
    #[error("the job monitor stopped: {0}")]
    Monitor(String),
}

/// Creates (or upgrades) apalis's own tables in schema `apalis`.
pub async fn setup(pool: &PgPool) -> Result<(), WorkersError> {
    PostgresStorage::setup(pool).await?;
    Ok(())
}

async fn sale_lifecycle(job: SaleJob, pool: Data<PgPool>) -> Result<(), BoxDynError> {
    gavel_workflows::sale_lifecycle::run(&pool, job.clone()).await.map_err(|err| {
        tracing::warn!(?job, error = %err, "sale lifecycle job failed; it will be retried");
        Box::new(err) as BoxDynError
    })
}

async fn payments(job: PaymentJob, payments: Data<Payments>) -> Result<(), BoxDynError> {
    payments.run(job.clone()).await.map_err(|err| {
        tracing::warn!(?job, error = %err, "payment job failed; it will be retried");
        Box::new(err) as BoxDynError
    })
}

async fn maintenance(job: MaintenanceJob, pool: Data<PgPool>) -> Result<(), BoxDynError> {
    gavel_workflows::maintenance::run(&pool, job).await.map_err(|err| Box::new(err) as BoxDynError)
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

/// Runs every queue's worker until `shutdown` is cancelled, then lets
/// in-flight jobs finish (up to 30 s).
pub async fn run(
    pool: PgPool,
    config: WorkerConfig,
    saga: Payments,
    shutdown: CancellationToken,
) -> Result<(), WorkersError> {
    tokio::spawn(tick_maintenance(pool.clone(), shutdown.clone()));
    tokio::spawn(tick_resume(saga.clone(), shutdown.clone()));
    let (lifecycle_pool, lifecycle_config) = (pool.clone(), config.clone());
    let (payments_pool, payments_config) = (pool.clone(), config.clone());
    let monitor = Monitor::new()
        .shutdown_timeout(Duration::from_secs(30))
        .register(move |_restarts| {
            let (pool, config) = (&lifecycle_pool, &lifecycle_config);
            let storage = PostgresStorage::<SaleJob>::new(pool)
                .with_config(queue_config(queues::SALE_LIFECYCLE, config))
                .poll_with_interval(config.poll_interval);
            WorkerBuilder::new(format!("{}:{}", config.instance, queues::SALE_LIFECYCLE))
                .backend(storage)
                .data(pool.clone())
                .build(sale_lifecycle)
        })
        .register(move |_restarts| {
            let (pool, config) = (&payments_pool, &payments_config);
            let storage = PostgresStorage::<PaymentJob>::new(pool)
                .with_config(queue_config(queues::PAYMENTS, config))
                .poll_with_interval(config.poll_interval);
            WorkerBuilder::new(format!("{}:{}", config.instance, queues::PAYMENTS))
                .backend(storage)
                .data(saga.clone())
                .build(payments)
        })
        .register(move |_restarts| {
            let storage = PostgresStorage::<MaintenanceJob>::new(&pool)
                .with_config(queue_config(queues::MAINTENANCE, &config))
                .poll_with_interval(Duration::from_secs(5));
            WorkerBuilder::new(format!("{}:{}", config.instance, queues::MAINTENANCE))
                .backend(storage)
                .data(pool.clone())
                .build(maintenance)
        });
    monitor
        .run_with_signal(async move {
            shutdown.cancelled().await;
            Ok(())
        })
        .await
        .map_err(|e| WorkersError::Monitor(e.to_string()))
}

/// Every process ticks; the job's idempotency key (`cron:prune:<tick>`) makes
/// each tick one job however many processes run, and a tick missed while all
/// were down is simply the next one.
async fn tick_maintenance(pool: PgPool, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(MAINTENANCE_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let now = chrono::Utc::now();
        let tick = now.timestamp() / MAINTENANCE_EVERY.as_secs() as i64;
        let job = MaintenanceJob::Prune { tick };
        let queued = match pool.acquire().await {
            Ok(mut conn) => {
                jobs::enqueue(&mut conn, queues::MAINTENANCE, &job, now, &format!("cron:prune:{tick}")).await
            }
            Err(e) => Err(e.into()),
        };
        if let Err(err) = queued {
            tracing::warn!(error = %err, "could not queue the maintenance job");
        }
    }
}

/// Every process ticks, every `Payments::resume_every`, so a checkout whose
/// process died is carried on within about `payments.resume_after`; the tick
/// number in the job keys makes each tick one job per attempt across processes.
async fn tick_resume(saga: Payments, shutdown: CancellationToken) {
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
