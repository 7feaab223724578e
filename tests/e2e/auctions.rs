//! Auctions as resources: create, the public read, the merchant's list,
//! refused terms, cancel; and a lifecycle that starts and ends exactly once
//! with two worker processes and every job run twice. (No bidding yet.)

use std::time::Duration;

use chrono::{DateTime, Utc};
use gavel::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{Killed, Merchant, TestApp, eventually, fresh_database, in_secs, uuid_of, worker_process};

const QUEUE: &str = "gavel.auction_lifecycle.v1";

async fn terms(app: &TestApp, merchant: &Merchant, overrides: Value) -> Value {
    let product = app.product(merchant).await;
    let mut body = json!({
        "product_id": product, "currency": "usd", "starting_price": 1000, "reserve_price": 5000,
        "starts_at": in_secs(60), "ends_at": in_secs(3600),
    });
    if let (Some(b), Some(o)) = (body.as_object_mut(), overrides.as_object()) {
        b.extend(o.clone());
    }
    body
}

async fn auctions_stored(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM auctions").fetch_one(pool).await.expect("the test's SQL runs")
}

async fn events_of(pool: &PgPool, kind: &str, auction: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE type = $1 AND subject_id = $2")
        .bind(kind)
        .bind(auction)
        .fetch_one(pool)
        .await
        .expect("the test's SQL runs")
}

/// Makes the jobs of `auction` due now (with `twice`, also queues a second
/// copy of each under a new key, so each runs twice) and waits until the
/// workers have run them all.
async fn run_jobs_of(pool: &PgPool, auction: &str, twice: bool) {
    if twice {
        let copied = sqlx::query(
            "INSERT INTO apalis.jobs
                 (id, job_type, job, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key)
             SELECT apalis.generate_ulid(), job_type, job, 'Pending', 0, max_attempts, now(), priority,
                    ''::hstore, idempotency_key || ':again'
             FROM apalis.jobs WHERE job_type = $1 AND convert_from(job, 'UTF8')::jsonb ->> 'auction_id' = $2",
        )
        .bind(QUEUE)
        .bind(auction)
        .execute(pool)
        .await
        .expect("copy the jobs")
        .rows_affected();
        assert!(copied >= 2, "the auction's start and end jobs are found ({copied})");
    }
    sqlx::query("UPDATE apalis.jobs SET run_at = now() WHERE status = 'Pending' AND job_type = $1 AND convert_from(job, 'UTF8')::jsonb ->> 'auction_id' = $2")
        .bind(QUEUE)
        .bind(auction)
        .execute(pool)
        .await
        .expect("make the jobs due");
    eventually("the auction's jobs have run", Duration::from_secs(30), || async {
        let open: i64 =
            sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE status <> 'Done' AND job_type = $1 AND convert_from(job, 'UTF8')::jsonb ->> 'auction_id' = $2")
                .bind(QUEUE)
                .bind(auction)
                .fetch_one(pool)
                .await
                .expect("count the open jobs");
        (open == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auction_is_created_read_publicly_listed_refused_when_wrong_and_cancelled() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let other = app.merchant().await;
    let body = terms(&app, &merchant, json!({})).await;
    let created = app.post("/v1/auctions", Some(&merchant.key), body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let a = &created.body;
    let id = a["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("auc_"), "{id}");
    assert_eq!(
        (a["object"].as_str(), a["status"].as_str(), a["currency"].as_str()),
        (Some("auction"), Some("scheduled"), Some("usd"))
    );
    assert_eq!(
        (a["starting_price"].as_i64(), a["current_price"].as_i64(), a["min_next_bid"].as_i64()),
        (Some(1000), Some(1000), Some(1000))
    );
    assert_eq!(
        (a["reserve_price"].as_i64(), a["bid_count"].as_i64(), a["extensions"].as_i64()),
        (Some(5000), Some(0), Some(0))
    );
    assert_eq!(
        (a["soft_close_seconds"].as_i64(), a["extension_seconds"].as_i64(), a["max_extensions"].as_i64()),
        (Some(30), Some(60), Some(5))
    );
    assert_eq!((a["payment_window_seconds"].as_i64(), a["version"].as_i64()), (Some(86_400), Some(1)));
    assert!(a["leader"].is_null() && a["leader_buyer_id"].is_null(), "{a}");
    assert_eq!(a["increments"][0], json!({ "from": 0, "increment": 5 }), "eBay's table by default");
    assert_eq!(created.headers.get("etag").and_then(|v| v.to_str().ok()), Some("\"1\""));

    let public = app.get(&format!("/v1/auctions/{id}"), None).await;
    assert_eq!(public.status, StatusCode::OK, "anyone may read an auction: {}", public.raw);
    assert_eq!((public.body["id"].as_str(), public.body["min_next_bid"].as_i64()), (Some(id.as_str()), Some(1000)));
    assert!(public.body["leader"].is_null());
    for hidden in ["reserve_price", "leader_buyer_id", "merchant_id"] {
        assert!(public.body.get(hidden).is_none(), "{hidden} is the merchant's: {}", public.raw);
    }
    let unknown = app.get("/v1/auctions/auc_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", None).await;
    assert_eq!((unknown.status, unknown.code()), (StatusCode::NOT_FOUND, "not_found"));

    let second = app.post("/v1/auctions", Some(&merchant.key), terms(&app, &merchant, json!({})).await).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.raw);
    app.post("/v1/auctions", Some(&other.key), terms(&app, &other, json!({})).await).await;
    let list = app.get("/v1/auctions?limit=1", Some(&merchant.key)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.raw);
    assert_eq!(
        (list.body["data"][0]["id"].as_str(), list.body["has_more"].as_bool()),
        (second.body["id"].as_str(), Some(true))
    );
    let next = app
        .get(
            &format!("/v1/auctions?limit=5&starting_after={}", second.body["id"].as_str().unwrap_or("")),
            Some(&merchant.key),
        )
        .await;
    let ids: Vec<_> = next.body["data"].as_array().expect("a page").iter().filter_map(|x| x["id"].as_str()).collect();
    assert_eq!(
        (ids, next.body["has_more"].as_bool()),
        (vec![id.as_str()], Some(false)),
        "only this merchant's, newest first"
    );
    let anonymous = app.get("/v1/auctions", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let before = auctions_stored(&app.pool).await;
    let cases = [
        ("reserve_price", json!({ "reserve_price": 999 })),
        ("ends_at", json!({ "ends_at": in_secs(30) })),
        ("currency", json!({ "currency": "xyz" })),
        ("increments", json!({ "increments": [{ "from": 100, "increment": 5 }] })),
        ("increments", json!({ "increments": [] })),
        ("starting_price", json!({ "starting_price": 0 })),
        ("starts_at", json!({ "starts_at": in_secs(-3600) })),
    ];
    for (field, overrides) in cases {
        let r = app.post("/v1/auctions", Some(&merchant.key), terms(&app, &merchant, overrides.clone()).await).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            "{overrides}: {}",
            r.raw
        );
        assert_eq!(r.body["field"].as_str(), Some(field), "{overrides}: {}", r.raw);
        assert!(r.is_problem(), "{}", r.raw);
    }
    assert_eq!(auctions_stored(&app.pool).await, before, "refused terms store nothing");

    let theirs = app.post(&format!("/v1/auctions/{id}/cancel"), Some(&other.key), json!({})).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "another merchant's auction is not found");
    let cancelled = app.post(&format!("/v1/auctions/{id}/cancel"), Some(&merchant.key), json!({})).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.raw);
    assert_eq!((cancelled.body["status"].as_str(), cancelled.body["version"].as_i64()), (Some("cancelled"), Some(2)));
    assert!(cancelled.body["ended_at"].is_string());
    let again = app.post(&format!("/v1/auctions/{id}/cancel"), Some(&merchant.key), json!({})).await;
    assert_eq!((again.status, again.body["status"].as_str()), (StatusCode::OK, Some("cancelled")));
    // Its start and end jobs, run now and again, find nothing to do.
    run_jobs_of(&app.pool, &id, true).await;
    let after = app.get(&format!("/v1/auctions/{id}"), None).await;
    assert_eq!(after.body["status"].as_str(), Some("cancelled"));
    assert_eq!(events_of(&app.pool, "auction.cancelled", &id).await, 1);
    assert_eq!(events_of(&app.pool, "auction.started", &id).await, 0);
    assert_eq!(events_of(&app.pool, "auction.ended", &id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auction_starts_and_ends_exactly_once_with_two_worker_processes_and_every_job_run_twice() {
    let db = fresh_database().await;
    let app = TestApp::spawn_on(&db, &[Role::Api], |_| {}).await;
    let _a = Killed(worker_process(&db));
    let _b = Killed(worker_process(&db));
    let merchant = app.merchant().await;
    let body = terms(&app, &merchant, json!({ "starts_at": in_secs(1), "ends_at": in_secs(3) })).await;
    let created = app.post("/v1/auctions", Some(&merchant.key), body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let id = created.body["id"].as_str().expect("an id").to_owned();

    let path = format!("/v1/auctions/{id}");
    eventually("the auction is active", Duration::from_secs(20), || async {
        let r = app.get(&path, None).await;
        matches!(r.body["status"].as_str(), Some("active" | "ended")).then_some(())
    })
    .await;
    let ended = eventually("the auction has ended", Duration::from_secs(30), || async {
        let r = app.get(&path, None).await;
        (r.body["status"].as_str() == Some("ended")).then_some(r.body)
    })
    .await;
    assert!(ended["leader"].is_null(), "no bids, no leader: {ended}");
    run_jobs_of(&app.pool, &id, true).await;

    assert_eq!(events_of(&app.pool, "auction.started", &id).await, 1, "auction.started exactly once");
    assert_eq!(events_of(&app.pool, "auction.ended", &id).await, 1, "auction.ended exactly once");
    let (status, ends_at, ended_at, version): (String, DateTime<Utc>, Option<DateTime<Utc>>, i32) =
        sqlx::query_as("SELECT status, ends_at, ended_at, version FROM auctions WHERE id = $1")
            .bind(uuid_of(&id))
            .fetch_one(&app.pool)
            .await
            .expect("the test's SQL runs");
    assert_eq!((status.as_str(), version), ("ended", 3), "one start and one end");
    assert!(ended_at.is_some_and(|at| at >= ends_at), "ended at {ended_at:?}, before its end {ends_at}");
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE status IN ('Failed', 'Killed')")
        .fetch_one(&app.pool)
        .await
        .expect("the test's SQL runs");
    assert_eq!(failed, 0);
    // An ended auction can no longer be cancelled, and nothing changes.
    let late = app.post(&format!("/v1/auctions/{id}/cancel"), Some(&merchant.key), json!({})).await;
    assert_eq!((late.status, late.body["code"].as_str()), (StatusCode::CONFLICT, Some("auction_not_editable")));
    assert_eq!(events_of(&app.pool, "auction.cancelled", &id).await, 0);
}
