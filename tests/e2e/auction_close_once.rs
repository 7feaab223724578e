//! An auction closes exactly once: with a worker process SIGKILLed at the end
//! instant, and with `close_if_due` raced from many tasks. The auctions and
//! bids are made as in `auction_close.rs`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gavel::Role;
use gavel_domain::ids::AuctionId;
use gavel_workflows::auction_close::PaymentReminders;
use gavel_workflows::auction_lifecycle::{self, Due};
use serde_json::json;
use sqlx::PgPool;

use crate::auction_close::{
    QUEUE, active_auction, bid, buyer, count, end_in, ended, events_of, feed_ended, jobs_of_order, masked, orders_of,
};
use crate::checkout::Shop;
use crate::helpers::{Killed, eventually, fresh_database, uuid_of, worker_process};

/// The close's effects, counted: exactly one of each.
async fn assert_closed_once(pool: &PgPool, auction: &str) {
    assert_eq!(events_of(pool, "auction.ended", auction).await, 1, "auction.ended exactly once");
    assert_eq!(orders_of(pool, auction).await, 1, "one order for the winner");
    let order: uuid::Uuid = sqlx::query_scalar("SELECT id FROM orders WHERE auction_id = $1")
        .bind(uuid_of(auction))
        .fetch_one(pool)
        .await
        .expect("the order");
    let order = format!("ord_{}", order.simple());
    assert_eq!(events_of(pool, "auction.won", &order).await, 1, "auction.won exactly once");
    assert_eq!(jobs_of_order(pool, &order).await.len(), 3, "two reminders and one lapse, queued once");
    assert_eq!(feed_ended(pool, auction).await.len(), 1, "one `ended` on the feed");
    let results: i64 =
        count(pool, "SELECT count(*) FROM auction_results WHERE auction_id = $1::uuid", &uuid_of(auction).to_string())
            .await;
    assert_eq!(results, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_runs_once_when_a_worker_process_is_sigkilled_at_the_end_instant() {
    let db = fresh_database().await;
    let shop = Shop::open_on(&db, &[Role::Api], |_| {}).await;
    let mut doomed = worker_process(&db);
    let _survivor = Killed(worker_process(&db));
    let app = &shop.app;
    let (a, _) = buyer(app).await;
    let (b, _) = buyer(app).await;
    let auction = active_auction(&shop, json!({})).await;
    assert!(bid(&app.pool, &auction, a, 1000, Some(2000)).await.is_accepted());
    assert!(bid(&app.pool, &auction, b, 1500, None).await.is_accepted());
    let ends_at = end_in(&app.pool, &auction, 2.0).await;
    // Kill one worker at the end instant: it may be holding the End job.
    tokio::time::sleep((ends_at - Utc::now()).to_std().unwrap_or_default()).await;
    doomed.kill().expect("kill the child process");
    let _ = doomed.wait();
    let body = ended(app, &auction).await;
    assert_eq!(
        (body["result"]["winner"].clone(), body["result"]["final_price"].clone()),
        (json!(masked(a)), json!(1550))
    );
    // Every End job of the auction, run once more by the survivor, changes nothing.
    sqlx::query(
        "INSERT INTO apalis.jobs
             (id, job_type, job, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key)
         SELECT apalis.generate_ulid(), job_type, job, 'Pending', 0, max_attempts, now(), priority,
                ''::hstore, idempotency_key || ':again'
         FROM apalis.jobs WHERE job_type = $1 AND convert_from(job, 'UTF8')::jsonb ->> 'kind' = 'end'",
    )
    .bind(QUEUE)
    .execute(&app.pool)
    .await
    .expect("copy the end jobs");
    eventually("the copied End jobs have run", Duration::from_secs(30), || async {
        let open = count(&app.pool, "SELECT count(*) FROM apalis.jobs WHERE job_type = $1 AND status <> 'Done' AND idempotency_key LIKE '%:again' AND idempotency_key LIKE 'end:%'", QUEUE).await;
        (open == 0).then_some(())
    })
    .await;
    assert_closed_once(&app.pool, &auction).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_if_due_raced_from_many_tasks_closes_once() {
    let db = fresh_database().await;
    // The start needs a worker; the end is left to the racing tasks alone.
    let shop = Shop::open_on(&db, &[Role::Api, Role::Workers], |_| {}).await;
    let app = &shop.app;
    let (a, _) = buyer(app).await;
    let auction = active_auction(&shop, json!({})).await;
    assert!(bid(&app.pool, &auction, a, 1200, None).await.is_accepted());
    // The end passes with no End job queued for it.
    let id: AuctionId = auction.parse().expect("an auction id");
    let ends_at = DateTime::from_timestamp_micros(Utc::now().timestamp_micros() + 300_000).expect("a time");
    sqlx::query("UPDATE auctions SET ends_at = $2, version = version + 1 WHERE id = $1")
        .bind(id.uuid())
        .bind(ends_at)
        .execute(&app.pool)
        .await
        .expect("move the end");
    let early = auction_lifecycle::close_if_due(&app.pool, &PaymentReminders::default(), id).await.expect("runs");
    assert_eq!(early, Due::NotYet { ends_at });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let pool = app.pool.clone();
            tokio::spawn(async move { auction_lifecycle::close_if_due(&pool, &PaymentReminders::default(), id).await })
        })
        .collect();
    let mut closed = 0;
    for t in tasks {
        match t.await.expect("the task completes").expect("close_if_due succeeds") {
            Due::Closed => closed += 1,
            Due::Final => {}
            other => panic!("after the end: {other:?}"),
        }
    }
    assert_eq!(closed, 1, "exactly one caller closes");
    assert_closed_once(&app.pool, &auction).await;
}
