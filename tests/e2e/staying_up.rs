//! Staying up: a database outage, slow clients, SIGTERM, and the probes of
//! every role — against `gavel serve` as a child process, so that its exit
//! (or its staying alive) is what is checked.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::child::ChildServer;
use crate::helpers::{client, fresh_database, in_secs, server_url};

async fn get(base: &str, path: &str, auth: Option<&str>) -> (StatusCode, Value, Option<String>) {
    let mut req = client().get(format!("{base}{path}"));
    if let Some(auth) = auth {
        req = req.bearer_auth(auth);
    }
    let res = req.send().await.expect("the request reaches the server");
    let status = res.status();
    let retry = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
    (status, res.json().await.unwrap_or(Value::Null), retry)
}

/// Refuses (true) or allows connections to the test's own database, and ends
/// every session it has — an outage as an operator's failover would cause.
async fn database_down(db: &str, down: bool) {
    let name = db.rsplit('/').next().expect("a database URL ends in its name").to_owned();
    let mut admin = PgConnection::connect(&format!("{}/postgres", server_url())).await.expect("the test's SQL runs");
    let allow = if down { "false" } else { "true" };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {allow}")))
        .execute(&mut admin)
        .await
        .expect("the test's SQL runs");
    if down {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(&name)
            .execute(&mut admin)
            .await
            .expect("the test's SQL runs");
    }
}

async fn merchant_key(db: &str) -> String {
    let pool = sqlx::PgPool::connect(db).await.expect("the test's SQL runs");
    let m = gavel_domain::merchants::create(&pool, "Outage Shop", None).await.expect("create a merchant");
    pool.close().await;
    m.api_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_degrades_service_and_the_process_stays_up() {
    let db = fresh_database().await;
    let mut server = ChildServer::start(&db, &[]).await;
    let key = merchant_key(&db).await;
    let product = client()
        .post(format!("{}/v1/products", server.base))
        .bearer_auth(&key)
        .json(&json!({ "title": "Boots" }))
        .send()
        .await
        .expect("the task completes");
    let product: Value = product.json().await.expect("a JSON product");
    // Scheduled to start while the database is down, and to end soon after.
    let sale = client()
        .post(format!("{}/v1/sales", server.base))
        .bearer_auth(&key)
        .json(&json!({ "product_id": product["id"], "price": 500, "currency": "usd", "inventory": 5,
                       "starts_at": in_secs(2), "duration_seconds": 6 }))
        .send()
        .await
        .expect("the task completes");
    assert_eq!(sale.status(), StatusCode::CREATED);
    let sale: Value = sale.json().await.expect("a JSON sale");
    let sale_path = format!("/v1/sales/{}", sale["id"].as_str().expect("the answer names an id"));

    database_down(&db, true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body, retry) = get(&server.base, &sale_path, Some(&key)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a dead connection is a 503, not a 500: {body}");
    assert!(retry.is_some(), "with Retry-After");
    let (status, ready, _) = get(&server.base, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready["database"], "unreachable", "{ready}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(server.exited_within(Duration::from_millis(10)).await.is_none(), "the process survives the outage");
    database_down(&db, false).await;

    // Service comes back by itself: ready again, and the sale scheduled during
    // the outage starts and ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let (status, body, _) = get(&server.base, &sale_path, Some(&key)).await;
        if status == StatusCode::OK {
            let s = body["status"].as_str().unwrap_or_default().to_owned();
            if seen.last() != Some(&s) {
                seen.push(s.clone());
            }
            if s == "ended" {
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "the sale never ended after the outage: {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen.last().map(String::as_str), Some("ended"));
    let (status, ready, _) = get(&server.base, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "ready again: {ready}");
    assert!(server.exited_within(Duration::from_millis(10)).await.is_none(), "still running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_slow_client_connected_exits_within_the_grace_period() {
    let db = fresh_database().await;
    // test.toml: shutdown_grace_ms = 3000; the slow client never finishes.
    let mut server = ChildServer::start(&db, &[("GAVEL_HTTP__HEADER_READ_TIMEOUT_MS", "60000".into())]).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&addr).expect("a local socket");
    slow.write_all(b"POST /v1/products HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
        .expect("the socket accepts it");
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();
    let status = server.exited_within(Duration::from_secs(10)).await;
    let status = status.unwrap_or_else(|| panic!("still running 10 s after SIGTERM"));
    assert!(status.success(), "a requested shutdown exits 0: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_too_slow_to_send_its_headers_is_disconnected() {
    let db = fresh_database().await;
    let server = ChildServer::start(&db, &[("GAVEL_HTTP__HEADER_READ_TIMEOUT_MS", "1000".into())]).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&addr).expect("a local socket");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHo").expect("the socket accepts it");
    slow.set_read_timeout(Some(Duration::from_secs(15))).expect("the socket accepts it");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 512];
    // The server answers 408 or just closes; either way the read ends, long
    // before the 15 s this client would wait.
    let mut read = Vec::new();
    loop {
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => read.extend_from_slice(&buf[..n]),
            Err(e) => panic!("the server kept the slow connection open: {e}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10), "closed after {:?}", started.elapsed());
    let text = String::from_utf8_lossy(&read);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_only_process_answers_health_and_readiness_on_its_own_listener() {
    let db = fresh_database().await;
    let server = ChildServer::start_roles(&db, &["workers"], &[]).await;
    let (status, _, _) = get(&server.base, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, ready, _) = get(&server.base, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    for part in ["worker:sale_lifecycle", "worker:payments", "worker:maintenance"] {
        assert_eq!(ready["parts"][part]["state"], "up", "{part}: {ready}");
    }
    let (status, _, _) = get(&server.base, "/v1/sales", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no API on the operations listener");
    let (status, _, _) = get(&server.base, "/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "metrics need the operator token here too");
}
