//! Sales start and end exactly once: with two worker processes, with one of
//! them killed at the start instant, and with jobs that run late.

use std::time::Duration;

use chrono::Utc;
use gavel::Role;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::{Killed, Merchant, TestApp, fresh_database, in_secs, uuid_of, worker_process};

async fn event_count(pool: &PgPool, kind: &str, sale: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE type = $1 AND subject_id = $2")
        .bind(kind)
        .bind(sale)
        .fetch_one(pool)
        .await
        .expect("the test's SQL runs")
}

async fn failed_jobs(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE status IN ('Failed', 'Killed')")
        .fetch_one(pool)
        .await
        .expect("the test's SQL runs")
}

async fn assert_started_and_ended_once(app: &TestApp, merchant: &Merchant, sale: &str) {
    let ended = app.wait_for_status(merchant, sale, "ended", Duration::from_secs(40)).await;
    assert_eq!(event_count(&app.pool, "sale.started", sale).await, 1, "sale.started exactly once");
    assert_eq!(event_count(&app.pool, "sale.ended", sale).await, 1, "sale.ended exactly once");
    let (started_at, ended_at): (chrono::DateTime<Utc>, chrono::DateTime<Utc>) =
        sqlx::query_as("SELECT started_at, ended_at FROM sales WHERE id = $1")
            .bind(uuid_of(sale))
            .fetch_one(&app.pool)
            .await
            .expect("the test's SQL runs");
    assert!(started_at >= ended.starts_at, "started before starts_at");
    assert!(ended_at >= ended.ends_at, "ended before ends_at");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_start_and_end_exactly_once_with_two_worker_processes() {
    let db = fresh_database().await;
    let api = TestApp::spawn_on(&db, &[Role::Api], |_| {}).await;
    let _a = Killed(worker_process(&db));
    let _b = Killed(worker_process(&db));
    let merchant = api.merchant().await;
    let mut sales = Vec::new();
    for _ in 0..3 {
        let sale = api.sale(&merchant, json!({ "starts_at": in_secs(2), "duration_seconds": 2 })).await;
        sales.push(sale.id);
    }
    for sale in &sales {
        assert_started_and_ended_once(&api, &merchant, sale).await;
        let lateness: f64 =
            sqlx::query_scalar("SELECT extract(epoch FROM started_at - starts_at)::float8 FROM sales WHERE id = $1")
                .bind(uuid_of(sale))
                .fetch_one(&api.pool)
                .await
                .expect("the test's SQL runs");
        assert!(lateness < 1.0, "started {lateness}s late");
    }
    assert_eq!(failed_jobs(&api.pool).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_at_the_start_instant_still_leaves_one_start_and_buyers_can_claim() {
    let db = fresh_database().await;
    let api = TestApp::spawn_on(&db, &[Role::Api], |_| {}).await;
    let mut doomed = worker_process(&db);
    let _survivor = Killed(worker_process(&db));
    let merchant = api.merchant().await;
    let tokens = api.buyers(1).await;
    let sale = api.sale(&merchant, json!({ "starts_at": in_secs(2), "duration_seconds": 12 })).await;
    let starts_at = sale.starts_at;
    let sale = sale.id;
    // Kill one worker at the start instant: it may be holding the start job.
    tokio::time::sleep((starts_at - Utc::now()).to_std().unwrap_or_default()).await;
    doomed.kill().expect("kill the child process");
    let _ = doomed.wait();
    let claim = api.post(&format!("/v1/sales/{sale}/claims"), Some(&tokens[0]), json!({})).await;
    assert_eq!(claim.status, reqwest::StatusCode::CREATED, "claims work at the start instant: {}", claim.raw);
    assert_started_and_ended_once(&api, &merchant, &sale).await;
    assert_eq!(failed_jobs(&api.pool).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_job_that_runs_late_still_starts_the_sale_once() {
    let db = fresh_database().await;
    let api = TestApp::spawn_on(&db, &[Role::Api], |_| {}).await;
    let merchant = api.merchant().await;
    let sale = api.sale(&merchant, json!({ "starts_at": in_secs(1), "duration_seconds": 60 })).await;
    let sale = sale.id;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = api.get(&format!("/v1/sales/{sale}"), Some(&merchant.key)).await;
    assert_eq!(still.body["status"], "scheduled", "nothing runs without workers");

    let _workers = TestApp::spawn_on(&db, &[Role::Workers], |_| {}).await;
    api.wait_for_status(&merchant, &sale, "active", Duration::from_secs(10)).await;
    assert_eq!(event_count(&api.pool, "sale.started", &sale).await, 1);
    let tokens = api.buyers(1).await;
    let claim = api.post(&format!("/v1/sales/{sale}/claims"), Some(&tokens[0]), json!({})).await;
    assert_eq!(claim.status, reqwest::StatusCode::CREATED, "{}", claim.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_job_that_runs_after_the_end_closes_the_sale_without_starting_it() {
    let db = fresh_database().await;
    let api = TestApp::spawn_on(&db, &[Role::Api], |_| {}).await;
    let merchant = api.merchant().await;
    let sale = api.sale(&merchant, json!({ "starts_at": in_secs(1), "duration_seconds": 1 })).await;
    let sale = sale.id;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let _workers = TestApp::spawn_on(&db, &[Role::Workers], |_| {}).await;
    api.wait_for_status(&merchant, &sale, "ended", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(event_count(&api.pool, "sale.started", &sale).await, 0);
    assert_eq!(event_count(&api.pool, "sale.ended", &sale).await, 1);
    assert_eq!(failed_jobs(&api.pool).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_releases_open_holds_and_reports_the_figures() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.active_sale(&merchant, json!({ "inventory": 5, "ends_at": in_secs(3) })).await;
    let tokens = app.buyers(3).await;
    for t in &tokens {
        let r = app.post(&format!("/v1/sales/{sale}/claims"), Some(t), json!({})).await;
        assert_eq!(r.status, reqwest::StatusCode::CREATED);
    }
    let ended = app.wait_for_status(&merchant, &sale, "ended", Duration::from_secs(10)).await;
    assert_eq!((ended.available, ended.held), (5, 0));
    let payload: serde_json::Value =
        sqlx::query_scalar("SELECT payload FROM events WHERE type = 'sale.ended' AND subject_id = $1")
            .bind(&sale)
            .fetch_one(&app.pool)
            .await
            .expect("the test's SQL runs");
    assert_eq!(payload["figures"]["released"], 3);
    assert_eq!(payload["figures"]["sold"], 0);
    let late = app.post(&format!("/v1/sales/{sale}/claims"), Some(&tokens[0]), json!({})).await;
    assert_eq!(late.code(), "sale_not_active");
}
