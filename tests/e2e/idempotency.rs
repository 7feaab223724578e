//! `Idempotency-Key`: a replay returns the first response; a reused key with
//! another body is refused; keys are scoped to the caller.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, client, send};

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn a_replay_returns_the_identical_response_and_creates_nothing_new() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let post = |body: serde_json::Value, key: &str| {
        send(
            client()
                .post(format!("{}/v1/products", app.base))
                .bearer_auth(&merchant.key)
                .header("Idempotency-Key", key)
                .json(&body),
        )
    };
    let first = post(json!({ "title": "Lamp" }), "key-1").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let replay = post(json!({ "title": "Lamp" }), "key-1").await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.raw, first.raw, "same body, byte for byte");
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(count(&app, "products").await, 1);

    let reused = post(json!({ "title": "Chair" }), "key-1").await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.code(), "idempotency_key_reused");
    assert!(reused.is_problem());
    assert_eq!(count(&app, "products").await, 1);

    // Another merchant's identical key is theirs alone.
    let other = app.merchant().await;
    let theirs = send(
        client()
            .post(format!("{}/v1/products", app.base))
            .bearer_auth(&other.key)
            .header("Idempotency-Key", "key-1")
            .json(&json!({ "title": "Chair" })),
    )
    .await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert_eq!(count(&app, "products").await, 2);
}

#[tokio::test]
async fn an_idempotent_claim_replays_the_first_answer() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.active_sale(&merchant, json!({ "inventory": 3 })).await;
    let token = app.buyers(1).await.remove(0);
    let claim = || {
        send(
            client()
                .post(format!("{}/v1/sales/{sale}/claims", app.base))
                .bearer_auth(&token)
                .header("Idempotency-Key", "claim-once"),
        )
    };
    let first = claim().await;
    let second = claim().await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!((second.status, &second.raw), (StatusCode::CREATED, &first.raw));
    assert_eq!(count(&app, "claims").await, 1);
}

#[tokio::test]
async fn a_failed_request_is_replayed_as_the_same_failure() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let post = || {
        send(
            client()
                .post(format!("{}/v1/sales", app.base))
                .bearer_auth(&merchant.key)
                .header("Idempotency-Key", "bad-sale")
                .json(&json!({ "product_id": "prod_00000000000000000000000000000000", "price": 0 })),
        )
    };
    let first = post().await;
    let second = post().await;
    assert_eq!(first.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!((second.status, second.raw), (first.status, first.raw));
}
