//! Holds that are not checked out expire and their units go back on sale.

use std::time::Duration;

use gavel::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, eventually, fresh_database};

async fn claim_all(app: &TestApp, sale: &str, tokens: &[String]) -> Vec<StatusCode> {
    let path = format!("/v1/sales/{sale}/claims");
    let answers = tokens.iter().map(|t| app.post(&path, Some(t), json!({})));
    futures::future::join_all(answers).await.into_iter().map(|r| r.status).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_holds_return_their_units_and_a_second_wave_claims_them_all() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.active_sale(&merchant, json!({ "inventory": 20, "hold_seconds": 2 })).await;
    let first_wave = app.buyers(20).await;
    let second_wave = app.buyers(20).await;

    assert!(claim_all(&app, &sale, &first_wave).await.iter().all(|s| *s == StatusCode::CREATED));
    let sold_out = app.post(&format!("/v1/sales/{sale}/claims"), Some(&second_wave[0]), json!({})).await;
    assert_eq!(sold_out.code(), "sold_out");

    // The sweeper job returns the stock once the holds run out.
    let api = app.as_(&merchant.key);
    let (api, id) = (&api, sale.as_str());
    let back = eventually("the stock comes back", Duration::from_secs(10), move || async move {
        api.sale(id).await.ok().filter(|s| s.available == 20)
    })
    .await;
    assert_eq!(back.held, 0);
    assert!(app.invariant_holds(&sale).await);
    let expired: i64 = sqlx::query_scalar("SELECT count(*) FROM claims WHERE status = 'expired'")
        .fetch_one(&app.pool)
        .await
        .expect("the test's SQL runs");
    assert_eq!(expired, 20);

    assert!(claim_all(&app, &sale, &second_wave).await.iter().all(|s| *s == StatusCode::CREATED));
    let s = app.get(&format!("/v1/sales/{sale}"), Some(&merchant.key)).await;
    assert_eq!((s.body["available"].as_i64(), s.body["held"].as_i64()), (Some(0), Some(20)));
}

/// With no worker running at all, the read path still treats a hold past its
/// expiry as expired, and the next claim takes its unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_hold_is_expired_on_read_even_before_the_sweeper_runs() {
    let db = fresh_database().await;
    let workers = TestApp::spawn_on(&db, &[Role::Api, Role::Workers], |_| {}).await;
    let merchant = workers.merchant().await;
    let sale = workers.active_sale(&merchant, json!({ "inventory": 1, "hold_seconds": 1 })).await;
    drop(workers);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let api = TestApp::spawn_on(&db, &[Role::Api], |_| {}).await;
    let tokens = api.buyers(2).await;
    let path = format!("/v1/sales/{sale}/claims");

    let held = api.post(&path, Some(&tokens[0]), json!({})).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.raw);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let claim = held.body["id"].as_str().expect("the answer names an id");
    let read = api.as_(&tokens[0]).get_claim(claim).await.expect("the buyer reads its claim");
    assert_eq!(read.status, "expired", "{read:?}");
    let next = api.post(&path, Some(&tokens[1]), json!({})).await;
    assert_eq!(next.status, StatusCode::CREATED, "the overdue unit is claimable: {}", next.raw);
    assert!(api.invariant_holds(&sale).await);
}
