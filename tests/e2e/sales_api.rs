//! The merchant's sale API: read, list, edit with If-Match, cancel.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, in_secs};

#[tokio::test]
async fn a_sale_is_created_scheduled_with_the_contracts_defaults() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.sale(&merchant, json!({ "starts_at": in_secs(60), "inventory": 10_000 })).await;
    assert!(sale.id.starts_with("sale_"), "{sale:?}");
    assert_eq!(sale.status, "scheduled");
    assert_eq!((sale.inventory, sale.available), (10_000, 10_000));
    assert_eq!((sale.held, sale.sold, sale.version), (0, 0, 1));
    assert_eq!((sale.hold_seconds, sale.per_buyer_limit), (180, 1));
    assert_eq!((sale.ends_at - sale.starts_at).num_seconds(), 600);
    assert_eq!(sale.etag.as_deref(), Some("\"1\""));
}

#[tokio::test]
async fn patch_needs_the_current_version_in_if_match() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let api = app.as_(&merchant.key);
    let sale = app.sale(&merchant, json!({ "starts_at": in_secs(60) })).await.id;
    let missing = api.patch_sale(&sale, None, json!({ "price": 2500 })).await.expect_err("If-Match is required");
    assert_eq!(missing.is(), (StatusCode::PRECONDITION_REQUIRED, "if_match_required"));
    let stale = api.patch_sale(&sale, Some("\"7\""), json!({ "price": 2500 })).await.expect_err("version 7 is stale");
    assert_eq!(stale.is(), (StatusCode::PRECONDITION_FAILED, "version_mismatch"));
    assert_eq!(stale.fact("current_version"), &json!(1));
    let invalid = api.patch_sale(&sale, Some("\"1\""), json!({ "inventory": 0 })).await.expect_err("no inventory");
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);

    let ok = api
        .patch_sale(&sale, Some("\"1\""), json!({ "price": 2500, "inventory": 50 }))
        .await
        .expect("the current version may edit");
    assert_eq!(ok.etag.as_deref(), Some("\"2\""));
    assert_eq!((ok.price, ok.available), (2500, 50));
    let again = api.patch_sale(&sale, Some("\"1\""), json!({ "price": 3000 })).await.expect_err("version 1 is gone");
    assert_eq!(again.status, StatusCode::PRECONDITION_FAILED);
    let got = api.sale(&sale).await.expect("the merchant reads its sale");
    assert_eq!((got.price, got.etag.as_deref()), (2500, Some("\"2\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_sale_can_no_longer_be_patched_but_can_be_cancelled_releasing_holds() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let api = app.as_(&merchant.key);
    let sale = app.active_sale(&merchant, json!({ "inventory": 4 })).await;
    let tokens = app.buyers(2).await;
    for t in &tokens {
        let claim = app.as_(t).claim(&sale).await.expect("a unit is free");
        assert_eq!(claim.status, "held");
    }
    let patched = api.patch_sale(&sale, Some("\"1\""), json!({ "price": 1 })).await.expect_err("it has started");
    assert_eq!(patched.is(), (StatusCode::CONFLICT, "sale_not_editable"));
    assert!(patched.is_well_formed(), "the problem's own status stays the HTTP status: {patched}");
    assert_eq!(patched.fact("sale_status"), &json!("active"), "{patched}");

    let cancelled = api.cancel_sale(&sale).await.expect("an active sale can be cancelled");
    assert_eq!(cancelled.status, "cancelled");
    assert_eq!((cancelled.available, cancelled.held), (4, 0));
    let twice = api.cancel_sale(&sale).await.expect("cancelling again answers the sale");
    assert_eq!(twice.status, "cancelled");
    let claim = app.as_(&tokens[0]).claim(&sale).await.expect_err("a cancelled sale takes no claims");
    assert_eq!(claim.code, "sale_not_active");
    assert!(app.invariant_holds(&sale).await);
}

#[tokio::test]
async fn sales_list_newest_first_in_pages() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let api = app.as_(&merchant.key);
    let other = app.merchant().await;
    app.sale(&other, json!({ "starts_at": in_secs(60) })).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.sale(&merchant, json!({ "starts_at": in_secs(60) })).await.id);
    }
    ids.reverse();
    let page1 = api.sales("limit=3").await.expect("a first page");
    assert_eq!(page1.ids(|s| s.id.as_str()), ids[..3].iter().map(String::as_str).collect::<Vec<_>>());
    assert!(page1.has_more);
    let page2 = api.sales(&format!("limit=3&starting_after={}", ids[2])).await.expect("a second page");
    assert_eq!(page2.ids(|s| s.id.as_str()), ids[3..].iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!page2.has_more);
    let bad = api.sales("limit=0").await.expect_err("limit 0 is out of range");
    assert_eq!(bad.is(), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"));
    for query in ["limit=ten", "limit=-1&limit=2", "starting_after=ord_1"] {
        let bad = api.sales(query).await.expect_err(query);
        assert_eq!(bad.is(), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"), "{query}: {bad}");
        assert!(bad.is_well_formed(), "{query}");
        let orders = api.orders(query).await.expect_err(query);
        assert_eq!(orders.is(), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"), "{query}");
    }
}

#[tokio::test]
async fn buyers_sign_up_once_and_sign_in_with_their_password() {
    let app = TestApp::spawn().await;
    let created = app
        .post("/v1/buyers", None, json!({ "email": "Ann@Example.com", "password": "correct horse", "name": "Ann" }))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    assert!(created.body["id"].as_str().is_some_and(|id| id.starts_with("byr_")));
    let anyone = app.anonymous();
    let dup = anyone.sign_up("ann@example.com", "another one").await.expect_err("the email is taken, in any case");
    assert_eq!(dup.is(), (StatusCode::CONFLICT, "email_taken"));
    let session = anyone.sign_in("ann@example.com", "correct horse").await.expect("the right password signs in");
    assert!(session.token.starts_with("tok_"));
    let wrong = anyone.sign_in("ann@example.com", "wrong horse").await.expect_err("a wrong password does not");
    assert_eq!(wrong.is(), (StatusCode::UNAUTHORIZED, "invalid_credentials"));
    let stored: String =
        sqlx::query_scalar("SELECT password_hash FROM buyers").fetch_one(&app.pool).await.expect("the test's SQL runs");
    assert!(stored.starts_with("$argon2id$"), "passwords are stored hashed");
}
