//! The thundering herd: many buyers at once on one sale never oversell.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gavel::Role;
use gavel_domain::auth::TokenSigner;
use gavel_domain::ids::BuyerId;
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Barrier;

use crate::helpers::{TestApp, client, fresh_database, invariant_holds, send, test_config, uuid_of};

const BUYERS: usize = 2_000;
const UNITS: i64 = 500;

/// Runs the herd against `apps` (buyers spread over them round-robin) and checks
/// every invariant, from HTTP and from SQL, during and after the burst.
async fn herd(apps: &[&TestApp]) {
    let first = apps[0];
    let merchant = first.merchant().await;
    let sale = first.active_sale(&merchant, json!({ "inventory": UNITS })).await;
    let tokens = first.buyers(BUYERS).await;

    // Watch the invariant from SQL while the herd runs.
    let done = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (done, checks, pool, sale) = (done.clone(), checks.clone(), first.pool.clone(), sale.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                assert!(invariant_holds(&pool, &sale).await, "invariant broken during the burst");
                checks.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let barrier = Arc::new(Barrier::new(BUYERS));
    let mut tasks = Vec::with_capacity(BUYERS);
    for (i, token) in tokens.into_iter().enumerate() {
        let url = format!("{}/v1/sales/{sale}/claims", apps[i % apps.len()].base);
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let r = send(client().post(url).bearer_auth(&token)).await;
            (token, r.status, r.body["code"].as_str().map(str::to_owned), r.body["id"].as_str().map(str::to_owned))
        }));
    }
    let mut statuses: HashMap<StatusCode, usize> = HashMap::new();
    let mut claim_ids = Vec::new();
    for task in tasks {
        let (_, status, code, id) = task.await.expect("the task completes");
        *statuses.entry(status).or_default() += 1;
        match status {
            StatusCode::CREATED => claim_ids.push(id.expect("a 201 names its claim")),
            StatusCode::CONFLICT => assert_eq!(code.as_deref(), Some("sold_out")),
            other => panic!("unexpected answer {other} ({code:?})"),
        }
    }
    done.store(true, Ordering::Relaxed);
    watcher.await.expect("invariant watcher");

    assert_eq!(statuses.get(&StatusCode::CREATED).copied(), Some(UNITS as usize), "{statuses:?}");
    assert_eq!(statuses.get(&StatusCode::CONFLICT).copied(), Some(BUYERS - UNITS as usize), "{statuses:?}");
    assert!(checks.load(Ordering::Relaxed) > 0, "the invariant was never checked during the burst");

    claim_ids.sort();
    claim_ids.dedup();
    assert_eq!(claim_ids.len(), UNITS as usize, "every hold is a distinct claim");
    let (held, buyers): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT buyer_id) FROM claims WHERE sale_id = $1 AND status = 'held'")
            .bind(uuid_of(&sale))
            .fetch_one(&first.pool)
            .await
            .expect("the test's SQL runs");
    assert_eq!((held, buyers), (UNITS, UNITS), "no buyer holds two units");
    assert!(first.invariant_holds(&sale).await);
    let after = first.get(&format!("/v1/sales/{sale}"), Some(&merchant.key)).await;
    assert_eq!((after.body["available"].as_i64(), after.body["held"].as_i64()), (Some(0), Some(UNITS)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_buyers_on_five_hundred_units_get_exactly_five_hundred_holds() {
    let app = TestApp::spawn().await;
    herd(&[&app]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_server_instances_on_one_database_never_oversell() {
    let db = fresh_database().await;
    let a = TestApp::spawn_on(&db, &[Role::Api, Role::Workers], |_| {}).await;
    let b = TestApp::spawn_on(&db, &[Role::Api], |_| {}).await;
    herd(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claiming_again_returns_the_same_claim_and_after_sell_out_is_409_sold_out() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.active_sale(&merchant, json!({ "inventory": 1 })).await;
    let tokens = app.buyers(2).await;
    let path = format!("/v1/sales/{sale}/claims");
    let first = app.post(&path, Some(&tokens[0]), json!({})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.raw);
    assert_eq!(first.body["status"], "held");
    let again = app.post(&path, Some(&tokens[0]), json!({})).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], first.body["id"]);
    // Twice: once from the database, once from the cached sold-out answer.
    for _ in 0..2 {
        let other = app.post(&path, Some(&tokens[1]), json!({})).await;
        assert_eq!(other.status, StatusCode::CONFLICT);
        assert_eq!(other.code(), "sold_out");
        assert!(other.is_problem(), "{}", other.raw);
    }
    // The holder still gets their own claim back after the sale is known sold out.
    let holder = app.post(&path, Some(&tokens[0]), json!({})).await;
    assert_eq!((holder.status, &holder.body["id"]), (StatusCode::OK, &first.body["id"]));
}

#[tokio::test]
async fn claim_attempts_past_the_rate_limit_are_429_with_retry_after() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.active_sale(&merchant, json!({ "inventory": 5 })).await;
    let token = app.buyers(1).await.remove(0);
    let path = format!("/v1/sales/{sale}/claims");
    for _ in 0..10 {
        let r = app.post(&path, Some(&token), json!({})).await;
        assert!(r.status.is_success(), "{}", r.raw);
    }
    let limited = app.post(&path, Some(&token), json!({})).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"].to_str().ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!((1..=6).contains(&retry_after), "Retry-After {retry_after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_batch_with_a_buyer_that_does_not_exist_answers_the_others_201() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.active_sale(&merchant, json!({ "inventory": 200 })).await;
    let real = app.buyers(60).await;
    // Genuine tokens (the test secret) naming buyers with no account.
    let auth = test_config("postgres://unused").auth;
    let signer = TokenSigner::new(auth.token_secret.as_bytes(), chrono::Duration::hours(1)).expect("a token signer");
    let ghosts: Vec<String> = (0..20).map(|_| signer.issue(BuyerId::new(), chrono::Utc::now())).collect();

    // Interleaved and released at once, so batches mix both kinds.
    let mut everyone: Vec<(bool, String)> = Vec::new();
    for (i, token) in real.into_iter().enumerate() {
        everyone.push((true, token));
        if i % 3 == 0
            && let Some(ghost) = ghosts.get(i / 3)
        {
            everyone.push((false, ghost.clone()));
        }
    }
    let barrier = Arc::new(Barrier::new(everyone.len()));
    let tasks: Vec<_> = everyone
        .into_iter()
        .map(|(real, token)| {
            let url = format!("{}/v1/sales/{sale}/claims", app.base);
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                (real, send(client().post(url).bearer_auth(&token)).await)
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        let (real, r) = task.await.expect("the task completes");
        if real {
            assert_eq!(r.status, StatusCode::CREATED, "a real buyer was failed by a batch-mate: {}", r.raw);
            granted += 1;
        } else {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.raw);
            assert!(r.is_problem(), "{}", r.raw);
        }
    }
    assert_eq!(granted, 60);
    assert!(app.invariant_holds(&sale).await);
    let after = app.get(&format!("/v1/sales/{sale}"), Some(&merchant.key)).await;
    assert_eq!((after.body["available"].as_i64(), after.body["held"].as_i64()), (Some(140), Some(60)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_lane_without_a_database_connection_answers_503_overloaded() {
    let db = fresh_database().await;
    let app = TestApp::spawn_on(&db, &[Role::Api], |c| c.database.max_connections = 2).await;
    let merchant = app.merchant().await;
    // Past its start: the first claim starts it (no workers here).
    let sale = app.sale(&merchant, json!({ "inventory": 5 })).await;
    let path = format!("/v1/sales/{}/claims", sale.id);
    let token = app.buyers(1).await.remove(0);

    // Take every connection of the server's pool.
    let mut held = Vec::new();
    while let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_millis(300), app.pool.acquire()).await {
        held.push(conn);
    }
    assert!(!held.is_empty());
    let starved = app.post(&path, Some(&token), json!({})).await;
    assert_eq!(starved.status, StatusCode::SERVICE_UNAVAILABLE, "{}", starved.raw);
    assert_eq!(starved.code(), "overloaded");
    assert!(starved.headers.contains_key("retry-after"));

    drop(held);
    let claimed = app.post(&path, Some(&token), json!({})).await;
    assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.raw);
}
