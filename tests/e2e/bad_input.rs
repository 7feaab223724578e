//! Bad input gets a clear 4xx problem+json and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Merchant, TestApp, client, in_secs, send};

async fn rows(app: &TestApp) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM sales), (SELECT count(*) FROM products), (SELECT count(*) FROM claims)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn sale_body(product: &str, overrides: Value) -> Value {
    let mut body = json!({
        "product_id": product, "price": 1999, "currency": "usd", "inventory": 10, "starts_at": in_secs(60),
    });
    if let (Some(b), Some(o)) = (body.as_object_mut(), overrides.as_object()) {
        for (k, v) in o {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    body
}

#[tokio::test]
async fn invalid_sales_are_refused_with_the_field_named_and_nothing_written() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let product = app.product(&merchant).await;
    let before = rows(&app).await;
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        ("negative inventory", json!({ "inventory": -1 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("zero inventory", json!({ "inventory": 0 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        (
            "huge inventory",
            json!({ "inventory": 1_000_000_000_000i64 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        ("inventory past i64", json!({ "inventory": 1e30 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("negative price", json!({ "price": -100 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("zero price", json!({ "price": 0 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("huge price", json!({ "price": 100_000_000_000i64 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("fractional price", json!({ "price": 19.99 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("unknown currency", json!({ "currency": "xyz" }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("ends before starts", json!({ "ends_at": in_secs(30) }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("zero duration", json!({ "duration_seconds": 0 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        (
            "start in the past",
            json!({ "starts_at": in_secs(-3600) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        ("bad time", json!({ "starts_at": "tomorrow" }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("missing price", json!({ "price": null }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("unknown field", json!({ "discount": 5 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ("hold too long", json!({ "hold_seconds": 86_400 }), StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        (
            "unknown product",
            json!({ "product_id": "prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "malformed product id",
            json!({ "product_id": "sale_123" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
    ];
    for (name, overrides, status, code) in cases {
        let r = app.post("/v1/sales", Some(&merchant.key), sale_body(&product, overrides)).await;
        assert_eq!(r.status, status, "{name}: {}", r.raw);
        assert_eq!(r.code(), code, "{name}");
        assert!(r.is_problem(), "{name}: {}", r.raw);
    }
    assert_eq!(rows(&app).await, before, "nothing written");
}

#[tokio::test]
async fn malformed_bodies_and_wrong_content_types_are_4xx_problems() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let before = rows(&app).await;
    let url = format!("{}/v1/products", app.base);
    let malformed = send(
        client().post(&url).bearer_auth(&merchant.key).header("content-type", "application/json").body("{\"title\": "),
    )
    .await;
    assert_eq!((malformed.status, malformed.code()), (StatusCode::BAD_REQUEST, "malformed_json"));
    assert!(malformed.is_problem());
    let wrong_type =
        send(client().post(&url).bearer_auth(&merchant.key).header("content-type", "text/plain").body("title=x")).await;
    assert_eq!((wrong_type.status, wrong_type.code()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"));
    assert!(wrong_type.is_problem());
    let not_object = app.post("/v1/products", Some(&merchant.key), json!([1, 2])).await;
    assert_eq!(not_object.status, StatusCode::UNPROCESSABLE_ENTITY);
    let empty_title = app.post("/v1/products", Some(&merchant.key), json!({ "title": "  " })).await;
    assert_eq!(
        (empty_title.status, empty_title.body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("title"))
    );
    let signup = app.post("/v1/buyers", None, json!({ "email": "not-an-email", "password": "long enough" })).await;
    assert_eq!((signup.status, signup.body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("email")));
    assert_eq!(rows(&app).await, before, "nothing written");
}

/// (name, method, path, credentials, expected status, expected code)
type AuthCase<'a> = (&'a str, Method, String, Option<&'a str>, StatusCode, &'a str);

#[tokio::test]
async fn missing_or_wrong_credentials_are_401_and_other_merchants_sales_are_404() {
    let app = TestApp::spawn().await;
    let owner = app.merchant().await;
    let stranger = app.merchant().await;
    let sale = app.sale(&owner, json!({ "starts_at": in_secs(60) })).await;
    let sale_id = sale["id"].as_str().unwrap_or_default();
    let buyer = app.buyers(1).await.remove(0);
    let bogus = Merchant { key: "sk_not_a_real_key".into() };

    let cases: Vec<AuthCase> = vec![
        ("no auth", Method::GET, format!("/v1/sales/{sale_id}"), None, StatusCode::UNAUTHORIZED, "unauthorized"),
        (
            "bad key",
            Method::GET,
            format!("/v1/sales/{sale_id}"),
            Some(&bogus.key),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "buyer on merchant route",
            Method::GET,
            format!("/v1/sales/{sale_id}"),
            Some(&buyer),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "merchant on buyer route",
            Method::POST,
            format!("/v1/sales/{sale_id}/claims"),
            Some(&owner.key),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "forged token",
            Method::POST,
            format!("/v1/sales/{sale_id}/claims"),
            Some("tok_AAAA.BBBB"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "another merchant's sale",
            Method::GET,
            format!("/v1/sales/{sale_id}"),
            Some(&stranger.key),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "another merchant cancels",
            Method::POST,
            format!("/v1/sales/{sale_id}/cancel"),
            Some(&stranger.key),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "unknown sale",
            Method::GET,
            "/v1/sales/sale_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b".into(),
            Some(&owner.key),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        ("malformed id", Method::GET, "/v1/sales/12345".into(), Some(&owner.key), StatusCode::NOT_FOUND, "not_found"),
        (
            "claim on unknown sale",
            Method::POST,
            "/v1/sales/sale_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b/claims".into(),
            Some(&buyer),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "claim before start",
            Method::POST,
            format!("/v1/sales/{sale_id}/claims"),
            Some(&buyer),
            StatusCode::CONFLICT,
            "sale_not_active",
        ),
        (
            "unknown claim",
            Method::GET,
            "/v1/claims/clm_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b".into(),
            Some(&buyer),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        ("unknown route", Method::GET, "/v1/nothing".into(), None, StatusCode::NOT_FOUND, "not_found"),
        (
            "wrong method",
            Method::DELETE,
            format!("/v1/sales/{sale_id}"),
            Some(&owner.key),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (name, method, path, auth, status, code) in cases {
        let r = app.request(method, &path, auth, None).await;
        assert_eq!(r.status, status, "{name}: {}", r.raw);
        assert_eq!(r.code(), code, "{name}");
        assert!(r.is_problem(), "{name}: {}", r.raw);
    }
    let (claims,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM claims").fetch_one(&app.pool).await.unwrap_or_default();
    assert_eq!(claims, 0);
}
