//! A buyer's devices, notification preferences and watches over the API,
//! and the bad input they refuse (4xx problem+json, nothing written).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, client, send};

fn apns_token(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

async fn rows(app: &TestApp) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM devices), (SELECT count(*) FROM notification_preferences),
                (SELECT count(*) FROM watches)",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the test's SQL runs")
}

#[tokio::test]
async fn a_device_registers_once_lists_and_deletes() {
    let app = TestApp::spawn().await;
    let buyer = app.buyers(1).await.remove(0);
    let body = json!({ "platform": "apns", "token": apns_token(1).to_uppercase() });
    let first = app.post("/v1/buyers/me/devices", Some(&buyer), body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.raw);
    let id = first.body["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("dev_"));
    assert_eq!((first.body["platform"].as_str(), first.body["status"].as_str()), (Some("apns"), Some("active")));
    assert!(first.body["created_at"].is_string());
    assert!(first.body.get("token").is_none(), "the token is not echoed");

    // The same token again (any case: APNs tokens are hex) is the same device.
    let again =
        app.post("/v1/buyers/me/devices", Some(&buyer), json!({ "platform": "apns", "token": apns_token(1) })).await;
    assert_eq!((again.status, again.body["id"].as_str()), (StatusCode::OK, Some(id.as_str())));

    let fcm =
        app.post("/v1/buyers/me/devices", Some(&buyer), json!({ "platform": "fcm", "token": "cX1:APA91b-_x" })).await;
    assert_eq!(fcm.status, StatusCode::CREATED, "{}", fcm.raw);
    let list = app.get("/v1/buyers/me/devices", Some(&buyer)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!((list.body["object"].as_str(), list.body["has_more"].as_bool()), (Some("list"), Some(false)));
    assert_eq!(list.body["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(list.body["data"][0]["platform"], "fcm", "newest first");

    let delete = app.request(Method::DELETE, &format!("/v1/buyers/me/devices/{id}"), Some(&buyer), None).await;
    assert_eq!(delete.status, StatusCode::NO_CONTENT, "{}", delete.raw);
    let list = app.get("/v1/buyers/me/devices", Some(&buyer)).await;
    assert_eq!(list.body["data"].as_array().map(Vec::len), Some(1), "a deleted device is not listed");
    let gone = app.request(Method::DELETE, &format!("/v1/buyers/me/devices/{id}"), Some(&buyer), None).await;
    assert_eq!((gone.status, gone.code()), (StatusCode::NOT_FOUND, "not_found"));
    assert!(gone.is_problem());
    // Registering a deleted device's token again makes a new, active device.
    let back = app.post("/v1/buyers/me/devices", Some(&buyer), body).await;
    assert_eq!(back.status, StatusCode::CREATED);
    assert_ne!(back.body["id"].as_str(), Some(id.as_str()));
}

#[tokio::test]
async fn a_token_registered_by_another_buyer_moves_to_them_and_is_retired_for_the_first() {
    let app = TestApp::spawn().await;
    let buyers = app.buyers(2).await;
    let (ann, bob) = (&buyers[0], &buyers[1]);
    let token = json!({ "platform": "fcm", "token": "phone-that-changed-hands" });
    let anns = app.post("/v1/buyers/me/devices", Some(ann), token.clone()).await;
    assert_eq!(anns.status, StatusCode::CREATED);
    let bobs = app.post("/v1/buyers/me/devices", Some(bob), token).await;
    assert_eq!(bobs.status, StatusCode::CREATED, "{}", bobs.raw);
    assert_ne!(bobs.body["id"], anns.body["id"]);

    let ann_list = app.get("/v1/buyers/me/devices", Some(ann)).await;
    let ann_device = &ann_list.body["data"][0];
    assert_eq!(ann_device["status"], "retired");
    assert!(ann_device["retired_at"].is_string());
    let bob_list = app.get("/v1/buyers/me/devices", Some(bob)).await;
    assert_eq!(bob_list.body["data"][0]["status"], "active");
    let active: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM devices WHERE token = 'phone-that-changed-hands' AND status = 'active'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the test's SQL runs");
    assert_eq!(active, 1, "one owner at a time");
    // Ann cannot delete what is now Bob's.
    let id = bobs.body["id"].as_str().expect("an id");
    let r = app.request(Method::DELETE, &format!("/v1/buyers/me/devices/{id}"), Some(ann), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn preferences_default_then_put_replaces_the_whole_object() {
    let app = TestApp::spawn().await;
    let buyer = app.buyers(1).await.remove(0);
    let defaults = app.get("/v1/buyers/me/preferences", Some(&buyer)).await;
    assert_eq!(defaults.status, StatusCode::OK);
    assert_eq!(defaults.body, json!({ "email": true, "push": true, "deals": false, "kinds": {} }));

    let put =
        json!({ "email": false, "push": true, "deals": true, "kinds": { "outbid": false, "sale_starting": true } });
    let r = app.request(Method::PUT, "/v1/buyers/me/preferences", Some(&buyer), Some(put.clone())).await;
    assert_eq!((r.status, &r.body), (StatusCode::OK, &put), "{}", r.raw);
    assert_eq!(app.get("/v1/buyers/me/preferences", Some(&buyer)).await.body, put);

    // A PUT without `kinds` replaces them with none (every kind on).
    let r = app
        .request(
            Method::PUT,
            "/v1/buyers/me/preferences",
            Some(&buyer),
            Some(json!({ "email": true, "push": false, "deals": false })),
        )
        .await;
    assert_eq!(r.body, json!({ "email": true, "push": false, "deals": false, "kinds": {} }));
}

#[tokio::test]
async fn watches_are_201_then_200_listed_and_deleted() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let product = app.product(&merchant).await;
    let buyer = app.buyers(1).await.remove(0);
    let first = app.post("/v1/watches", Some(&buyer), json!({ "product_id": product })).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.raw);
    assert_eq!(first.body["product_id"].as_str(), Some(product.as_str()));
    let again = app.post("/v1/watches", Some(&buyer), json!({ "product_id": product })).await;
    assert_eq!((again.status, &again.body), (StatusCode::OK, &first.body));
    let list = app.get("/v1/watches", Some(&buyer)).await;
    assert_eq!(list.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(list.body["data"][0]["product_id"].as_str(), Some(product.as_str()));

    let delete = app.request(Method::DELETE, &format!("/v1/watches/{product}"), Some(&buyer), None).await;
    assert_eq!(delete.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/v1/watches", Some(&buyer)).await.body["data"], json!([]));
    let again = app.request(Method::DELETE, &format!("/v1/watches/{product}"), Some(&buyer), None).await;
    assert_eq!((again.status, again.code()), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn bad_devices_preferences_and_watches_are_4xx_problems_and_write_nothing() {
    let app = TestApp::spawn().await;
    let buyer = app.buyers(1).await.remove(0);
    let before = rows(&app).await;
    let cases: Vec<(&str, Method, &str, Value, StatusCode, &str)> = vec![
        (
            "APNs token not hex",
            Method::POST,
            "/v1/buyers/me/devices",
            json!({ "platform": "apns", "token": "z".repeat(64) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "APNs token too short",
            Method::POST,
            "/v1/buyers/me/devices",
            json!({ "platform": "apns", "token": "ab12" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "FCM token with a space",
            Method::POST,
            "/v1/buyers/me/devices",
            json!({ "platform": "fcm", "token": "a b" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "FCM token too long",
            Method::POST,
            "/v1/buyers/me/devices",
            json!({ "platform": "fcm", "token": "a".repeat(4097) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "empty token",
            Method::POST,
            "/v1/buyers/me/devices",
            json!({ "platform": "fcm", "token": "" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "unknown platform",
            Method::POST,
            "/v1/buyers/me/devices",
            json!({ "platform": "webpush", "token": "abc" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "missing token",
            Method::POST,
            "/v1/buyers/me/devices",
            json!({ "platform": "fcm" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "token not a string",
            Method::POST,
            "/v1/buyers/me/devices",
            json!({ "platform": "fcm", "token": 12 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "preferences: wrong type",
            Method::PUT,
            "/v1/buyers/me/preferences",
            json!({ "email": "yes", "push": true, "deals": false }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "preferences: missing member",
            Method::PUT,
            "/v1/buyers/me/preferences",
            json!({ "email": true, "push": true }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "preferences: unknown kind",
            Method::PUT,
            "/v1/buyers/me/preferences",
            json!({ "email": true, "push": true, "deals": false, "kinds": { "spam": true } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "preferences: kind not a bool",
            Method::PUT,
            "/v1/buyers/me/preferences",
            json!({ "email": true, "push": true, "deals": false, "kinds": { "outbid": "off" } }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "preferences: unknown member",
            Method::PUT,
            "/v1/buyers/me/preferences",
            json!({ "email": true, "push": true, "deals": false, "sms": true }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            "watch: unknown product",
            Method::POST,
            "/v1/watches",
            json!({ "product_id": "prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b" }),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "watch: not a product id",
            Method::POST,
            "/v1/watches",
            json!({ "product_id": "sale_123" }),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "watch: missing product",
            Method::POST,
            "/v1/watches",
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
    ];
    for (name, method, path, body, status, code) in cases {
        let r = app.request(method, path, Some(&buyer), Some(body)).await;
        assert_eq!(r.status, status, "{name}: {}", r.raw);
        assert_eq!(r.code(), code, "{name}");
        assert!(r.is_problem(), "{name}: {}", r.raw);
    }
    let unknown_kind = app
        .request(
            Method::PUT,
            "/v1/buyers/me/preferences",
            Some(&buyer),
            Some(json!({ "email": true, "push": true, "deals": false, "kinds": { "spam": true } })),
        )
        .await;
    assert_eq!(unknown_kind.body["field"], "kinds");
    let malformed = send(
        client()
            .post(format!("{}/v1/buyers/me/devices", app.base))
            .bearer_auth(&buyer)
            .header("content-type", "application/json")
            .body("{\"platform\": "),
    )
    .await;
    assert_eq!((malformed.status, malformed.code()), (StatusCode::BAD_REQUEST, "malformed_json"));
    assert_eq!(rows(&app).await, before, "nothing written");
}

#[tokio::test]
async fn every_notification_setting_needs_a_buyer() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let before = rows(&app).await;
    let cases = [
        (Method::POST, "/v1/buyers/me/devices", Some(json!({ "platform": "fcm", "token": "abc" }))),
        (Method::GET, "/v1/buyers/me/devices", None),
        (Method::DELETE, "/v1/buyers/me/devices/dev_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", None),
        (Method::GET, "/v1/buyers/me/preferences", None),
        (Method::PUT, "/v1/buyers/me/preferences", Some(json!({ "email": true, "push": true, "deals": false }))),
        (Method::POST, "/v1/watches", Some(json!({ "product_id": "prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b" }))),
        (Method::GET, "/v1/watches", None),
        (Method::DELETE, "/v1/watches/prod_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", None),
    ];
    for (method, path, body) in cases {
        for auth in [None, Some("not-a-token"), Some(merchant.key.as_str())] {
            let r = app.request(method.clone(), path, auth, body.clone()).await;
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::UNAUTHORIZED, "unauthorized"),
                "{method} {path} {auth:?}: {}",
                r.raw
            );
            assert!(r.is_problem());
        }
    }
    assert_eq!(rows(&app).await, before, "nothing written");
}
