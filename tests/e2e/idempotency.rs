//! `Idempotency-Key`: a replay returns the first response; a reused key with
//! another body is refused; keys are scoped to the authenticated principal;
//! one key makes one effect through disconnects, retries and a killed server.

use std::time::Duration;

use gavel::Role;
use gavel_domain::auth::TokenSigner;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::child::ChildServer;
use crate::helpers::{Merchant, Response, TestApp, client, fresh_database, in_secs, send, test_config, uuid_of};

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&app.pool)
        .await
        .expect("the test's SQL runs")
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

/// The buyer-token signer of the test configuration.
fn signer() -> TokenSigner {
    let auth = test_config("postgres://unused").auth;
    TokenSigner::new(auth.token_secret.as_bytes(), chrono::Duration::hours(auth.token_ttl_hours))
        .expect("a token signer")
}

fn sale_body(product: &str) -> Value {
    json!({ "product_id": product, "price": 1999, "currency": "usd", "inventory": 5, "starts_at": in_secs(3600) })
}

/// Sends `POST /v1/sales` with `key` until it gets an answer other than
/// "in use" (a transport error is a dropped connection: send again).
async fn create_sale_until_answered(base: &str, merchant: &Merchant, key: &str, body: &Value) -> Response {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let req = client().post(format!("{base}/v1/sales")).bearer_auth(&merchant.key).header("Idempotency-Key", key);
        if let Ok(res) = req.json(body).send().await {
            let status = res.status();
            let headers = res.headers().clone();
            let raw = res.text().await.expect("the answer has a readable body");
            let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
            let r = Response { status, headers, body, raw };
            if r.code() != "idempotency_key_in_use" {
                return r;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "key {key} still in use after 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sales_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sales").fetch_one(pool).await.expect("the test's SQL runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_makes_one_sale_under_disconnects_and_concurrent_retries() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let product = app.product(&merchant).await;
    let body = sale_body(&product);

    // Round 1: every first send is cut while its insert waits on a table lock
    // (the client gives up after 300 ms and drops the connection).
    let mut lock = app.pool.begin().await.expect("the test's SQL runs");
    sqlx::query("LOCK TABLE sales IN SHARE MODE").execute(&mut *lock).await.expect("the test's SQL runs");
    let cut: Vec<_> = (0..6)
        .map(|_| {
            client()
                .post(format!("{}/v1/sales", app.base))
                .bearer_auth(&merchant.key)
                .header("Idempotency-Key", "sale-1")
                .timeout(Duration::from_millis(300))
                .json(&body)
                .send()
        })
        .collect();
    // Each is cut off (an error), or told the key is in use by one that was.
    for answered in futures::future::join_all(cut).await.into_iter().flatten() {
        assert_eq!(answered.status(), StatusCode::CONFLICT);
    }
    lock.rollback().await.expect("the test's SQL runs");

    // Rounds 2 and 3: first sends cut after 1 to 36 ms (before, during or
    // after the commit), each followed by retries, all at once.
    for key in ["sale-1", "sale-2", "sale-3"] {
        let clients = (0..12).map(|i| {
            let (base, merchant, body) = (app.base.clone(), merchant.clone(), body.clone());
            async move {
                if key != "sale-1" {
                    let _ = client()
                        .post(format!("{base}/v1/sales"))
                        .bearer_auth(&merchant.key)
                        .header("Idempotency-Key", key)
                        .timeout(Duration::from_millis(1 + 3 * i))
                        .json(&body)
                        .send()
                        .await;
                }
                create_sale_until_answered(&base, &merchant, key, &body).await
            }
        });
        let answers = futures::future::join_all(clients).await;
        let first = &answers[0];
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.raw);
        for answer in &answers {
            assert_eq!((answer.status, &answer.raw), (first.status, &first.raw), "{key}: every answer is the one sale");
        }
        let id = first.body["id"].as_str().expect("the answer names an id");
        let found: i64 = sqlx::query_scalar("SELECT count(*) FROM sales WHERE id = $1")
            .bind(uuid_of(id))
            .fetch_one(&app.pool)
            .await
            .expect("the test's SQL runs");
        assert_eq!(found, 1, "{key}: the answered sale exists");
    }
    assert_eq!(sales_count(&app.pool).await, 3, "one sale per key");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE idempotency_key LIKE 'start:%'")
        .fetch_one(&app.pool)
        .await
        .expect("the test's SQL runs");
    assert_eq!(jobs, 3, "one start job per sale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sale_committed_by_a_killed_server_is_replayed_at_once_after_restart() {
    let db = fresh_database().await;
    let setup = TestApp::spawn_on(&db, &[Role::Api], |_| {}).await;
    let merchant = setup.merchant().await;
    let body = sale_body(&setup.product(&merchant).await);

    let mut server = ChildServer::start(&db, &[("GAVEL_FAULTS__PAUSE_AT", "after_idempotent_commit".to_owned())]).await;
    let req = client()
        .post(format!("{}/v1/sales", server.base))
        .bearer_auth(&merchant.key)
        .header("Idempotency-Key", "killed")
        .json(&body);
    let pending = tokio::spawn(async move { req.send().await.map(|r| r.status()) });
    let paused = tokio::time::timeout(Duration::from_secs(15), server.paused.recv()).await;
    assert!(matches!(paused, Ok(Some(_))), "the server never committed the sale");
    server.kill();
    let lost = pending.await.expect("the task completes");
    assert!(lost.is_err(), "the first answer was lost with the process: {lost:?}");
    assert_eq!(sales_count(&setup.pool).await, 1, "the sale committed before the kill");

    let restarted = ChildServer::start(&db, &[]).await;
    let started = tokio::time::Instant::now();
    let retry = send(
        client()
            .post(format!("{}/v1/sales", restarted.base))
            .bearer_auth(&merchant.key)
            .header("Idempotency-Key", "killed")
            .json(&body),
    )
    .await;
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.raw);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    assert!(started.elapsed() < Duration::from_secs(5), "the retry was answered at once");
    let id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM sales").fetch_one(&setup.pool).await.expect("the test's SQL runs");
    assert_eq!(
        uuid_of(retry.body["id"].as_str().expect("the answer names an id")),
        id,
        "the replay names the committed sale"
    );
    assert_eq!(sales_count(&setup.pool).await, 1);
}

#[tokio::test]
async fn two_buyers_using_one_key_to_sign_up_and_sign_in_do_not_collide() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for who in ["ann", "bob"] {
        let email = format!("{who}-{}@example.com", uuid::Uuid::new_v4().simple());
        let signup = json!({ "email": email, "password": "correct horse" });
        let r =
            send(client().post(format!("{}/v1/buyers", app.base)).header("Idempotency-Key", "k1").json(&signup)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{who}: {}", r.raw);
        assert!(r.headers.get("idempotent-replayed").is_none(), "{who} got someone else's answer");
        let id = r.body["id"].as_str().expect("the answer names an id").to_owned();

        let signin = json!({ "email": email, "password": "correct horse" });
        let s = send(client().post(format!("{}/v1/sessions", app.base)).header("Idempotency-Key", "k2").json(&signin))
            .await;
        assert_eq!(s.status, StatusCode::OK, "{who}: {}", s.raw);
        let token = s.body["token"].as_str().expect("the answer names an id");
        let named = signer().verify(token, chrono::Utc::now()).map(|b| b.to_string());
        assert_eq!(named.as_deref(), Some(id.as_str()), "{who}'s session is {who}'s");
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(count(&app, "buyers").await, 2);
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE position('tok_' in body) > 0")
        .fetch_one(&app.pool)
        .await
        .expect("the test's SQL runs");
    assert_eq!(tokens, 0, "no session token is stored");
}

#[tokio::test]
async fn a_key_sent_with_a_bad_or_missing_token_stores_nothing() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.active_sale(&merchant, json!({ "inventory": 3 })).await;
    let attempts = [
        ("/v1/products".to_owned(), None),
        ("/v1/products".to_owned(), Some("sk_not_a_key")),
        ("/v1/products".to_owned(), Some("tok_forged.AAAA")),
        (format!("/v1/sales/{sale}/claims"), Some("tok_forged.AAAA")),
        (format!("/v1/sales/{sale}/claims"), None),
    ];
    for (path, auth) in attempts {
        let mut req = client().post(format!("{}{path}", app.base)).header("Idempotency-Key", "k");
        if let Some(auth) = auth {
            req = req.bearer_auth(auth);
        }
        let r = send(req.json(&json!({ "title": "Junk" }))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} with {auth:?}: {}", r.raw);
        assert!(r.is_problem());
    }
    assert_eq!(count(&app, "idempotency_keys").await, 0, "nothing stored for unauthenticated requests");
    // The same key, authenticated, is a first request.
    let r = send(
        client()
            .post(format!("{}/v1/products", app.base))
            .bearer_auth(&merchant.key)
            .header("Idempotency-Key", "k")
            .json(&json!({ "title": "Lamp" })),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    assert!(r.headers.get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn a_replayed_sign_up_answers_a_working_token_for_the_same_buyer_and_stores_none() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.active_sale(&merchant, json!({ "inventory": 3 })).await;
    let email = format!("cat-{}@example.com", uuid::Uuid::new_v4().simple());
    let sign_up = |password: &str| {
        send(
            client()
                .post(format!("{}/v1/buyers", app.base))
                .header("Idempotency-Key", "signup-1")
                .json(&json!({ "email": email, "password": password })),
        )
    };
    let first = sign_up("correct horse").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.raw);
    let replay = sign_up("correct horse").await;
    assert_eq!(replay.status, StatusCode::CREATED, "{}", replay.raw);
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    assert_eq!(replay.body["id"], first.body["id"]);
    let token = replay.body["token"].as_str().expect("the answer names an id");
    let named = signer().verify(token, chrono::Utc::now()).map(|b| b.to_string());
    assert_eq!(named.as_deref(), first.body["id"].as_str(), "the new token names the same buyer");
    let claim = app.post(&format!("/v1/sales/{sale}/claims"), Some(token), json!({})).await;
    assert_eq!(claim.status, StatusCode::CREATED, "the replayed token works: {}", claim.raw);

    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT body FROM idempotency_keys")
        .fetch_all(&app.pool)
        .await
        .expect("the test's SQL runs");
    assert_eq!(stored.len(), 1);
    let stored = String::from_utf8_lossy(&stored[0]);
    assert!(!stored.contains("tok_"), "a session token was stored: {stored}");

    // The key and the email without the password are worth nothing.
    let guess = sign_up("wrong horse").await;
    assert_eq!(guess.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", guess.raw);
    assert_eq!(guess.code(), "idempotency_key_reused");
    assert!(guess.body.get("token").is_none());
    assert_eq!(count(&app, "buyers").await, 1);
}

#[tokio::test]
async fn a_buyers_key_holds_across_session_tokens() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.active_sale(&merchant, json!({ "inventory": 3 })).await;
    let first_token = app.buyers(1).await.remove(0);
    let buyer = signer().verify(&first_token, chrono::Utc::now()).unwrap_or_else(|| panic!("token"));
    // A later session of the same buyer: another token, the same principal.
    let second_token = signer().issue(buyer, chrono::Utc::now() + chrono::Duration::minutes(5));
    assert_ne!(first_token, second_token);
    let claim = |token: String| {
        send(
            client()
                .post(format!("{}/v1/sales/{sale}/claims", app.base))
                .bearer_auth(token)
                .header("Idempotency-Key", "claim-1"),
        )
    };
    let first = claim(first_token).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.raw);
    let again = claim(second_token).await;
    assert_eq!((again.status, &again.raw), (StatusCode::CREATED, &first.raw));
    assert_eq!(again.headers["idempotent-replayed"], "true");
}
