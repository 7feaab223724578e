//! Periodic jobs through apalis-cron: every workers process fires each tick,
//! and the tick's job is queued once (its key is unique); a tick missed while
//! no process ran is queued when one starts.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use sqlx::PgPool;

use crate::helpers::{Killed, eventually, fresh_database};

/// A workers process whose daily reconciliation ticks at `daily_at` (UTC).
fn workers_ticking_at(db: &str, daily_at: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["serve", "--role", "workers"])
        .env("DATABASE_URL", db)
        .env("GAVEL_ENV", "test")
        .env("GAVEL_LOG", "warn")
        .env("GAVEL_RECONCILIATION__DAILY", "true")
        .env("GAVEL_RECONCILIATION__DAILY_AT", daily_at)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gavel")
}

/// The reconciliation jobs queued for `day` by the daily tick.
async fn daily_jobs(pool: &PgPool, day: NaiveDate) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE idempotency_key = $1")
        .bind(format!("cron:reconcile:{day}"))
        .fetch_one(pool)
        .await
        .expect("count the daily jobs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_tick_the_daily_reconciliation_and_queue_each_day_once() {
    let db = fresh_database().await;
    let pool = PgPool::connect(&db).await.expect("connect");
    // The tick falls a few seconds from now, in both processes at once.
    let fire = Utc::now() + chrono::Duration::seconds(6);
    let daily_at = fire.format("%H:%M:%S").to_string();
    let _a = Killed(workers_ticking_at(&db, &daily_at));
    let _b = Killed(workers_ticking_at(&db, &daily_at));
    let today = fire.date_naive();
    let yesterday = today.pred_opt().expect("a day before");
    let day_before = yesterday.pred_opt().expect("a day before that");
    // At start, each process queues the latest tick before now: yesterday's
    // tick, which reconciles the day before it.
    eventually("the missed tick made up at start", Duration::from_secs(20), || async {
        (daily_jobs(&pool, day_before).await > 0).then_some(())
    })
    .await;
    assert_eq!(daily_jobs(&pool, yesterday).await, 0, "today's tick has not fired yet");
    // Then the tick itself fires in both processes: yesterday, queued once.
    eventually("today's tick", Duration::from_secs(30), || async {
        (daily_jobs(&pool, yesterday).await > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(daily_jobs(&pool, yesterday).await, 1, "two processes ticked; the day is queued once");
    assert_eq!(daily_jobs(&pool, day_before).await, 1, "the made-up tick is queued once too");
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE idempotency_key LIKE 'cron:reconcile:%'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(all, 2);
    let queued_at: Option<chrono::DateTime<Utc>> =
        sqlx::query_scalar("SELECT min(run_at) FROM apalis.jobs WHERE idempotency_key = $1")
            .bind(format!("cron:reconcile:{yesterday}"))
            .fetch_one(&pool)
            .await
            .expect("when the tick's job was queued");
    let lag = queued_at.expect("queued") - fire.with_timezone(&Utc);
    assert!(lag >= chrono::Duration::seconds(-1), "queued by the tick, not before it (lag {lag})");
}
