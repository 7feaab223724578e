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
    .expect("the test's SQL runs")
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
    let sale_id = sale.id.as_str();
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
        sqlx::query_as("SELECT count(*) FROM claims").fetch_one(&app.pool).await.expect("the test's SQL runs");
    assert_eq!(claims, 0);
}

async fn counts(app: &TestApp) -> (i64, i64) {
    sqlx::query_as("SELECT (SELECT count(*) FROM products), (SELECT count(*) FROM buyers)")
        .fetch_one(&app.pool)
        .await
        .expect("the test's SQL runs")
}

#[tokio::test]
async fn control_characters_in_text_are_422_naming_the_field_never_500() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let product = app.product(&merchant).await;
    let before = counts(&app).await;
    let key = Some(merchant.key.as_str());
    let signup = |email: &str, name: &str| json!({ "email": email, "password": "correct horse", "name": name });
    let checkout = "/v1/claims/clm_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b/checkout";
    let buyer = app.buyers(1).await.remove(0);
    // (case, path, credentials, body, field named)
    let cases: Vec<(&str, &str, Option<&str>, Value, &str)> = vec![
        ("NUL in title", "/v1/products", key, json!({ "title": "Sneak\u{0}ers" }), "title"),
        ("escape in title", "/v1/products", key, json!({ "title": "\u{1b}[31mred" }), "title"),
        ("newline in title", "/v1/products", key, json!({ "title": "two\nlines" }), "title"),
        ("NUL in description", "/v1/products", key, json!({ "title": "ok", "description": "a\u{0}b" }), "description"),
        ("bell in description", "/v1/products", key, json!({ "title": "ok", "description": "a\u{7}b" }), "description"),
        ("NUL in email", "/v1/buyers", None, signup("ann\u{0}@example.com", "Ann"), "email"),
        ("NUL in name", "/v1/buyers", None, signup("ann@example.com", "A\u{0}nn"), "name"),
        ("DEL in name", "/v1/buyers", None, signup("ann@example.com", "Ann\u{7f}"), "name"),
        ("C1 control in name", "/v1/buyers", None, signup("ann@example.com", "A\u{85}nn"), "name"),
        (
            "NUL in sign-in email",
            "/v1/sessions",
            None,
            json!({ "email": "a\u{0}@example.com", "password": "x" }),
            "email",
        ),
        ("NUL in currency", "/v1/sales", key, sale_body(&product, json!({ "currency": "us\u{0}d" })), "currency"),
        (
            "NUL in payment method",
            checkout,
            Some(&buyer),
            json!({ "payment_method": "pm_\u{0}visa" }),
            "payment_method",
        ),
    ];
    for (name, path, auth, body, field) in cases {
        for idempotency_key in [None, Some(uuid::Uuid::new_v4().to_string())] {
            let mut req = client().post(format!("{}{path}", app.base)).json(&body);
            if let Some(auth) = auth {
                req = req.bearer_auth(auth);
            }
            if let Some(k) = &idempotency_key {
                req = req.header("idempotency-key", k);
            }
            let r = send(req).await;
            let what = format!("{name} (Idempotency-Key: {})", idempotency_key.is_some());
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
                "{what}: {}",
                r.raw
            );
            assert_eq!(r.body["field"].as_str(), Some(field), "{what}: {}", r.raw);
            assert!(r.is_problem(), "{what}: {}", r.raw);
        }
    }
    assert_eq!(counts(&app).await, (before.0, before.1 + 1), "nothing written");
    let kept = app
        .post("/v1/products", key, json!({ "title": "Boots", "description": "Line one\n\tindented line two" }))
        .await;
    assert_eq!(kept.status, StatusCode::CREATED, "a description keeps line feeds and tabs: {}", kept.raw);
    assert_eq!(kept.body["description"], "Line one\n\tindented line two");
}

#[tokio::test]
async fn length_limits_count_characters_not_bytes() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let name = "ä".repeat(200);
    let r = app
        .post("/v1/buyers", None, json!({ "email": "ann@example.com", "password": "correct horse", "name": name }))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "200 two-byte letters fit a 200-character name: {}", r.raw);
    let r = app
        .post(
            "/v1/buyers",
            None,
            json!({ "email": "bob@example.com", "password": "correct horse", "name": format!("{name}ä") }),
        )
        .await;
    assert_eq!((r.status, r.body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("name")), "{}", r.raw);
    let title = "靴".repeat(200);
    let r = app.post("/v1/products", Some(&merchant.key), json!({ "title": title })).await;
    assert_eq!(r.status, StatusCode::CREATED, "200 three-byte characters fit a title: {}", r.raw);
    let r = app.post("/v1/products", Some(&merchant.key), json!({ "title": format!("{title}靴") })).await;
    assert_eq!((r.status, r.body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("title")), "{}", r.raw);
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_case_insensitively() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let buyer = app.buyers(1).await.remove(0);
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let r = send(
            client()
                .get(format!("{}/v1/sales", app.base))
                .header("authorization", format!("{scheme} {}", merchant.key)),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "merchant, {scheme}: {}", r.raw);
        let r =
            send(client().get(format!("{}/v1/orders", app.base)).header("authorization", format!("{scheme} {buyer}")))
                .await;
        assert_eq!(r.status, StatusCode::OK, "buyer, {scheme}: {}", r.raw);
    }
    let r =
        send(client().get(format!("{}/v1/sales", app.base)).header("authorization", format!("Basic {}", merchant.key)))
            .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "another scheme is still refused: {}", r.raw);
}

#[tokio::test]
async fn an_oversized_body_is_413_body_too_large_with_or_without_an_idempotency_key() {
    let app = TestApp::spawn().await;
    let body = json!({ "email": "ann@example.com", "password": "correct horse", "name": "x".repeat(1024 * 1024 + 1) });
    for idempotency_key in [None, Some("oversized-1")] {
        let mut req = client().post(format!("{}/v1/buyers", app.base)).json(&body);
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        let r = send(req).await;
        let what = format!("Idempotency-Key: {idempotency_key:?}");
        assert_eq!((r.status, r.code()), (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"), "{what}: {}", r.raw);
        assert!(r.is_problem(), "{what}: {}", r.raw);
    }
    // A route that reads no body answers the same, declared length or not.
    let merchant = app.merchant().await;
    let sale = app.active_sale(&merchant, json!({})).await;
    let token = app.buyers(1).await.remove(0);
    let big = vec![b'x'; 1024 * 1024 + 1];
    for (idempotency_key, chunked) in [(None, false), (Some("oversized-2"), false), (None, true)] {
        let mut req = client().post(format!("{}/v1/sales/{sale}/claims", app.base)).bearer_auth(&token);
        req = if chunked {
            let chunks = futures::stream::iter(
                big.chunks(64 * 1024).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
            );
            req.body(reqwest::Body::wrap_stream(chunks))
        } else {
            req.body(big.clone())
        };
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        let r = send(req).await;
        let what = format!("claim, Idempotency-Key: {idempotency_key:?}, chunked: {chunked}");
        assert_eq!((r.status, r.code()), (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"), "{what}: {}", r.raw);
    }
    let held: i64 =
        sqlx::query_scalar("SELECT count(*) FROM claims").fetch_one(&app.pool).await.expect("the test's SQL runs");
    assert_eq!(held, 0, "an oversized request changes nothing");
}
