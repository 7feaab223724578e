//! The merchant's sale API: read, list, edit with If-Match, cancel.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, client, in_secs, send};

#[tokio::test]
async fn a_sale_is_created_scheduled_with_the_contracts_defaults() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.sale(&merchant, json!({ "starts_at": in_secs(60), "inventory": 10_000 })).await;
    assert!(sale["id"].as_str().is_some_and(|id| id.starts_with("sale_")));
    assert_eq!(sale["status"], "scheduled");
    assert_eq!((sale["inventory"].as_i64(), sale["available"].as_i64()), (Some(10_000), Some(10_000)));
    assert_eq!((sale["held"].as_i64(), sale["sold"].as_i64(), sale["version"].as_i64()), (Some(0), Some(0), Some(1)));
    assert_eq!((sale["hold_seconds"].as_i64(), sale["per_buyer_limit"].as_i64()), (Some(180), Some(1)));
    let starts = crate::helpers::parse_time(&sale["starts_at"]);
    let ends = crate::helpers::parse_time(&sale["ends_at"]);
    assert_eq!((ends - starts).num_seconds(), 600);
}

#[tokio::test]
async fn patch_needs_the_current_version_in_if_match() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.sale(&merchant, json!({ "starts_at": in_secs(60) })).await;
    let url = format!("{}/v1/sales/{}", app.base, sale["id"].as_str().unwrap_or_default());
    let patch = |if_match: Option<&str>, body: serde_json::Value| {
        let mut req = client().patch(&url).bearer_auth(&merchant.key).json(&body);
        if let Some(v) = if_match {
            req = req.header("If-Match", v);
        }
        send(req)
    };
    let missing = patch(None, json!({ "price": 2500 })).await;
    assert_eq!((missing.status, missing.code()), (StatusCode::PRECONDITION_REQUIRED, "if_match_required"));
    let stale = patch(Some("\"7\""), json!({ "price": 2500 })).await;
    assert_eq!((stale.status, stale.code()), (StatusCode::PRECONDITION_FAILED, "version_mismatch"));
    assert_eq!(stale.body["current_version"], 1);
    let invalid = patch(Some("\"1\""), json!({ "inventory": 0 })).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);

    let ok = patch(Some("\"1\""), json!({ "price": 2500, "inventory": 50 })).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.raw);
    assert_eq!(ok.headers["etag"], "\"2\"");
    assert_eq!((ok.body["price"].as_i64(), ok.body["available"].as_i64()), (Some(2500), Some(50)));
    let again = patch(Some("\"1\""), json!({ "price": 3000 })).await;
    assert_eq!(again.status, StatusCode::PRECONDITION_FAILED);
    let got = app.get(&format!("/v1/sales/{}", sale["id"].as_str().unwrap_or_default()), Some(&merchant.key)).await;
    assert_eq!((got.body["price"].as_i64(), got.headers["etag"].to_str().ok()), (Some(2500), Some("\"2\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_sale_can_no_longer_be_patched_but_can_be_cancelled_releasing_holds() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.active_sale(&merchant, json!({ "inventory": 4 })).await;
    let tokens = app.buyers(2).await;
    for t in &tokens {
        assert_eq!(app.post(&format!("/v1/sales/{sale}/claims"), Some(t), json!({})).await.status, StatusCode::CREATED);
    }
    let patched = send(
        client()
            .patch(format!("{}/v1/sales/{sale}", app.base))
            .bearer_auth(&merchant.key)
            .header("If-Match", "\"1\"")
            .json(&json!({ "price": 1 })),
    )
    .await;
    assert_eq!((patched.status, patched.code()), (StatusCode::CONFLICT, "sale_not_editable"));
    assert!(patched.is_problem(), "the problem's own status stays the HTTP status: {}", patched.raw);
    assert_eq!(patched.body["sale_status"], "active", "{}", patched.raw);

    let cancelled = app.post(&format!("/v1/sales/{sale}/cancel"), Some(&merchant.key), json!({})).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.raw);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!((cancelled.body["available"].as_i64(), cancelled.body["held"].as_i64()), (Some(4), Some(0)));
    let twice = app.post(&format!("/v1/sales/{sale}/cancel"), Some(&merchant.key), json!({})).await;
    assert_eq!((twice.status, &twice.body["status"]), (StatusCode::OK, &json!("cancelled")));
    let claim = app.post(&format!("/v1/sales/{sale}/claims"), Some(&tokens[0]), json!({})).await;
    assert_eq!(claim.code(), "sale_not_active");
    assert!(app.invariant_holds(&sale).await);
}

#[tokio::test]
async fn sales_list_newest_first_in_pages() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let other = app.merchant().await;
    app.sale(&other, json!({ "starts_at": in_secs(60) })).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let s = app.sale(&merchant, json!({ "starts_at": in_secs(60) })).await;
        ids.push(s["id"].as_str().unwrap_or_default().to_owned());
    }
    ids.reverse();
    let page1 = app.get("/v1/sales?limit=3", Some(&merchant.key)).await;
    let got: Vec<&str> = page1.body["data"].as_array().into_iter().flatten().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(got, ids[..3].iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(page1.body["has_more"], true);
    let page2 = app.get(&format!("/v1/sales?limit=3&starting_after={}", ids[2]), Some(&merchant.key)).await;
    let got: Vec<&str> = page2.body["data"].as_array().into_iter().flatten().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(got, ids[3..].iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(page2.body["has_more"], false);
    let bad = app.get("/v1/sales?limit=0", Some(&merchant.key)).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"));
    for query in ["limit=ten", "limit=-1&limit=2", "starting_after=ord_1"] {
        let bad = app.get(&format!("/v1/sales?{query}"), Some(&merchant.key)).await;
        assert_eq!(
            (bad.status, bad.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            "{query}: {}",
            bad.raw
        );
        assert!(bad.is_problem(), "{query}");
        let orders = app.get(&format!("/v1/orders?{query}"), Some(&merchant.key)).await;
        assert_eq!((orders.status, orders.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"), "{query}");
    }
}

#[tokio::test]
async fn buyers_sign_up_once_and_sign_in_with_their_password() {
    let app = TestApp::spawn().await;
    let body = json!({ "email": "Ann@Example.com", "password": "correct horse", "name": "Ann" });
    let created = app.post("/v1/buyers", None, body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert!(created.body["id"].as_str().is_some_and(|id| id.starts_with("byr_")));
    let dup = app.post("/v1/buyers", None, json!({ "email": "ann@example.com", "password": "another one" })).await;
    assert_eq!((dup.status, dup.code()), (StatusCode::CONFLICT, "email_taken"));
    let session =
        app.post("/v1/sessions", None, json!({ "email": "ann@example.com", "password": "correct horse" })).await;
    assert_eq!(session.status, StatusCode::OK);
    assert!(session.body["token"].as_str().is_some_and(|t| t.starts_with("tok_")));
    let wrong = app.post("/v1/sessions", None, json!({ "email": "ann@example.com", "password": "wrong horse" })).await;
    assert_eq!((wrong.status, wrong.code()), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    let stored: String =
        sqlx::query_scalar("SELECT password_hash FROM buyers").fetch_one(&app.pool).await.unwrap_or_default();
    assert!(stored.starts_with("$argon2id$"), "passwords are stored hashed");
}
