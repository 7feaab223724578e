//! The endpoints API: create, list, get, update (with and without If-Match),
//! delete; bad URLs are `422 invalid_webhook_url` and write nothing; unknown
//! ids and another merchant's endpoints are `404`; `gavel merchants create
//! --webhook-url` makes a normal endpoint whose secret is the printed one.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{app, endpoint, problem};
use crate::helpers::client;

#[tokio::test]
async fn an_endpoint_is_created_listed_read_updated_and_deleted() {
    let app = app(|_| {}).await;
    let merchant = app.merchant().await;
    let (id, secret) = endpoint(&app, &merchant, "https://hooks.example.com/gavel", json!(["order.paid"])).await;
    assert!(id.starts_with("we_"), "{id}");

    let r = app.get(&format!("/v1/webhook_endpoints/{id}"), Some(&merchant.key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(
        (r.body["url"].as_str(), r.body["secret"].as_str()),
        (Some("https://hooks.example.com/gavel"), Some(secret.as_str()))
    );
    assert_eq!(
        (r.body["events"].clone(), r.body["enabled"].clone(), r.body["version"].clone()),
        (json!(["order.paid"]), json!(true), json!(1))
    );
    assert_eq!(r.headers.get("etag").and_then(|v| v.to_str().ok()), Some("\"1\""));

    let r = app.get("/v1/webhook_endpoints", Some(&merchant.key)).await;
    assert_eq!(
        (r.body["object"].as_str(), r.body["data"].as_array().map(Vec::len)),
        (Some("list"), Some(1)),
        "{}",
        r.raw
    );

    // PATCH without If-Match; then with a stale one (412), then the right one.
    let patch = |body: Value, if_match: Option<&str>| {
        let mut req =
            client().patch(format!("{}/v1/webhook_endpoints/{id}", app.base)).bearer_auth(&merchant.key).json(&body);
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        crate::helpers::send(req)
    };
    let r = patch(json!({ "events": [], "enabled": false }), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!((r.body["enabled"].clone(), r.body["version"].clone()), (json!(false), json!(2)));
    assert_eq!(
        r.body["events"].as_array().map(Vec::len),
        Some(gavel_domain::webhooks::EVENT_TYPES.len()),
        "empty: all"
    );
    problem(
        &patch(json!({ "enabled": true }), Some("\"1\"")).await,
        StatusCode::PRECONDITION_FAILED,
        "version_mismatch",
    );
    let r = patch(json!({ "enabled": true, "url": "https://other.example.com/h" }), Some("\"2\"")).await;
    assert_eq!(
        (r.status, r.body["enabled"].clone(), r.body["url"].clone()),
        (StatusCode::OK, json!(true), json!("https://other.example.com/h")),
        "{}",
        r.raw
    );
    problem(
        &patch(json!({ "url": "gopher://hooks.example.com/" }), None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_webhook_url",
    );

    let r =
        app.request(reqwest::Method::DELETE, &format!("/v1/webhook_endpoints/{id}"), Some(&merchant.key), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.raw);
    let r = app.get(&format!("/v1/webhook_endpoints/{id}"), Some(&merchant.key)).await;
    problem(&r, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn bad_urls_are_422_invalid_webhook_url_and_nothing_is_written() {
    // Private targets refused, as in production.
    let app = app(|c| c.webhooks.allow_private_targets = false).await;
    let merchant = app.merchant().await;
    for url in [
        "ftp://example.com/hook",
        "not a url",
        "http://127.0.0.1:8080/hook",
        "http://2130706433/",
        "http://[::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost/hook",
        "http://0.0.0.0/",
    ] {
        let r = app.post("/v1/webhook_endpoints", Some(&merchant.key), json!({ "url": url })).await;
        problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_webhook_url");
        assert_eq!(r.body["field"], "url", "{}", r.raw);
    }
    let r = app
        .post(
            "/v1/webhook_endpoints",
            Some(&merchant.key),
            json!({ "url": "https://x.example.com", "events": ["bid.outbid"] }),
        )
        .await;
    problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let r = app.post("/v1/webhook_endpoints", Some(&merchant.key), json!({ "events": [] })).await;
    assert_eq!(r.status.as_u16() / 100, 4, "{}", r.raw);
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints").fetch_one(&app.pool).await.expect("count");
    assert_eq!(n, 0, "nothing written");
    let r = app.post("/v1/webhook_endpoints", None, json!({ "url": "https://x.example.com" })).await;
    problem(&r, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn unknown_ids_and_another_merchants_endpoints_and_deliveries_are_404() {
    let app = app(|_| {}).await;
    let (mine, theirs) = (app.merchant().await, app.merchant().await);
    let (id, _) = endpoint(&app, &theirs, "https://hooks.example.com/a", Value::Null).await;
    for path in [
        format!("/v1/webhook_endpoints/{id}"),
        "/v1/webhook_endpoints/we_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b".into(),
        "/v1/webhook_endpoints/sale_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b".into(),
        "/v1/webhook_deliveries/wd_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b".into(),
    ] {
        problem(&app.get(&path, Some(&mine.key)).await, StatusCode::NOT_FOUND, "not_found");
    }
    for path in [
        format!("/v1/webhook_endpoints/{id}/rotate_secret"),
        "/v1/webhook_deliveries/wd_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b/retry".into(),
    ] {
        problem(&app.post(&path, Some(&mine.key), json!({})).await, StatusCode::NOT_FOUND, "not_found");
    }
    let r = app
        .post(
            &format!("/v1/webhook_endpoints/{id}/recover"),
            Some(&mine.key),
            json!({ "since": "2026-01-01T00:00:00Z" }),
        )
        .await;
    problem(&r, StatusCode::NOT_FOUND, "not_found");
    let r = app.request(reqwest::Method::DELETE, &format!("/v1/webhook_endpoints/{id}"), Some(&mine.key), None).await;
    problem(&r, StatusCode::NOT_FOUND, "not_found");
    let r = app.get("/v1/webhook_endpoints", Some(&mine.key)).await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(0), "{}", r.raw);
    let r = app.get(&format!("/v1/webhook_deliveries?endpoint={id}&status=bogus"), Some(&mine.key)).await;
    assert_eq!(r.status.as_u16() / 100, 4, "{}", r.raw);
    // Still theirs, untouched.
    assert_eq!(app.get(&format!("/v1/webhook_endpoints/{id}"), Some(&theirs.key)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_merchants_webhook_url_is_a_normal_endpoint_signing_with_the_printed_secret() {
    let app = app(|_| {}).await;
    let created = gavel_domain::merchants::create_with(&app.pool, "Hooked", Some("http://127.0.0.1:9/hook"), true)
        .await
        .expect("a merchant with a webhook URL");
    assert!(created.webhook_secret.starts_with("whsec_"));
    let r = app.get("/v1/webhook_endpoints", Some(&created.api_key)).await;
    let data = r.body["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(data.len(), 1, "{}", r.raw);
    assert_eq!(
        (data[0]["url"].as_str(), data[0]["secret"].as_str()),
        (Some("http://127.0.0.1:9/hook"), Some(created.webhook_secret.as_str()))
    );
    assert_eq!(data[0]["events"].as_array().map(Vec::len), Some(gavel_domain::webhooks::EVENT_TYPES.len()));
    let refused =
        gavel_domain::merchants::create_with(&app.pool, "Sneaky", Some("http://127.0.0.1:9/hook"), false).await;
    assert!(refused.is_err(), "a loopback URL is refused unless private targets are allowed");
}
