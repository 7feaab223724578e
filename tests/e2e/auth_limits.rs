//! Sign-up and sign-in under abuse: per-address and per-account limits, and a
//! storm of sign-ins at the production argon2 cost that must not take the
//! server's memory with it.

use gavel::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::child::ChildServer;
use crate::helpers::{Response, TestApp, client, fresh_database, send};

async fn app_with(tweak: impl FnOnce(&mut gavel::Config)) -> TestApp {
    TestApp::spawn_on(&fresh_database().await, &[Role::Api], tweak).await
}

fn sign_up_body(email: &str) -> serde_json::Value {
    json!({ "email": email, "password": "correct horse" })
}

fn sign_in_body(email: &str, password: &str) -> serde_json::Value {
    json!({ "email": email, "password": password })
}

fn assert_rate_limited(r: &Response, what: &str) {
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{what}: {}", r.raw);
    assert!(r.is_problem(), "{what}: {}", r.raw);
    let retry_after = r.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    assert!(retry_after.is_some_and(|s| s >= 1), "{what}: Retry-After {retry_after:?}");
}

#[tokio::test]
async fn sign_ups_past_the_per_address_limit_are_429_with_retry_after() {
    let app = app_with(|c| c.auth.signups_per_ip_per_minute = 3).await;
    for i in 0..3 {
        let r = app.post("/v1/buyers", None, sign_up_body(&format!("buyer{i}@example.com"))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    }
    let r = app.post("/v1/buyers", None, sign_up_body("buyer3@example.com")).await;
    assert_rate_limited(&r, "fourth sign-up");
    let (buyers,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM buyers").fetch_one(&app.pool).await.expect("the test's SQL runs");
    assert_eq!(buyers, 3);
}

#[tokio::test]
async fn sign_ins_past_the_per_address_limit_are_429_with_retry_after() {
    let app = app_with(|c| c.auth.signins_per_ip_per_minute = 3).await;
    let r = app.post("/v1/buyers", None, sign_up_body("ann@example.com")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    for _ in 0..3 {
        let r = app.post("/v1/sessions", None, sign_in_body("ann@example.com", "correct horse")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    }
    let r = app.post("/v1/sessions", None, sign_in_body("ann@example.com", "correct horse")).await;
    assert_rate_limited(&r, "fourth sign-in");
}

#[tokio::test]
async fn repeated_wrong_passwords_close_that_account_only_even_to_the_right_password() {
    // The test config lifts the per-address limits; the per-account one stays.
    let app = app_with(|_| {}).await;
    for email in ["ann@example.com", "bob@example.com"] {
        let r = app.post("/v1/buyers", None, sign_up_body(email)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    }
    for attempt in 0..5 {
        let r = app.post("/v1/sessions", None, sign_in_body("ann@example.com", "wrong guess")).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNAUTHORIZED, "invalid_credentials"), "{attempt}: {}", r.raw);
    }
    let r = app.post("/v1/sessions", None, sign_in_body("ANN@example.com", "correct horse")).await;
    assert_rate_limited(&r, "right password after five wrong ones");
    let r = app.post("/v1/sessions", None, sign_in_body("bob@example.com", "correct horse")).await;
    assert_eq!(r.status, StatusCode::OK, "another account is unaffected: {}", r.raw);
    // An unknown email is limited the same way, so the answer tells nothing.
    for _ in 0..5 {
        let r = app.post("/v1/sessions", None, sign_in_body("nobody@example.com", "wrong guess")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.raw);
    }
    let r = app.post("/v1/sessions", None, sign_in_body("nobody@example.com", "wrong guess")).await;
    assert_rate_limited(&r, "unknown email");
}

/// `VmHWM` (peak resident memory) and `VmRSS` of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test]
async fn a_sign_in_storm_at_production_cost_keeps_memory_bounded_and_answers_200_or_503() {
    let db = fresh_database().await;
    let server = ChildServer::start(
        &db,
        &[
            ("GAVEL_AUTH__PASSWORD_MEMORY_KIB", "19456".into()),
            ("GAVEL_AUTH__PASSWORD_ITERATIONS", "2".into()),
            ("GAVEL_AUTH__SIGNINS_PER_IP_PER_MINUTE", "100000".into()),
            ("GAVEL_AUTH__SIGNUPS_PER_IP_PER_MINUTE", "100000".into()),
            // Short, so that the storm certainly outruns the bound.
            ("GAVEL_AUTH__HASH_QUEUE_WAIT_MS", "100".into()),
        ],
    )
    .await;
    let url = |path: &str| format!("{}{path}", server.base);
    let r = send(client().post(url("/v1/buyers")).json(&sign_up_body("ann@example.com"))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);

    // 96 at once: two thirds the right password, a third unknown emails.
    let answers = futures::future::join_all((0..96).map(|i| {
        let body = if i % 3 == 0 {
            sign_in_body(&format!("nobody{i}@example.com"), "correct horse")
        } else {
            sign_in_body("ann@example.com", "correct horse")
        };
        send(client().post(url("/v1/sessions")).json(&body))
    }))
    .await;
    let (peak, now) = memory_kib(server.pid());

    let mut overloaded = 0;
    for r in &answers {
        match (r.status, r.code()) {
            (StatusCode::OK, _) | (StatusCode::UNAUTHORIZED, "invalid_credentials") => {}
            (StatusCode::SERVICE_UNAVAILABLE, "overloaded") => {
                assert!(r.headers.contains_key("retry-after") && r.is_problem(), "{:?} {}", r.headers, r.raw);
                overloaded += 1;
            }
            _ => panic!("unexpected answer in the storm: {} {}", r.status, r.raw),
        }
    }
    assert!(overloaded > 0, "96 hashes of 19 MiB cannot all start within 100 ms on one hash per core");
    assert!(answers.iter().any(|r| r.status == StatusCode::OK), "some sign-ins get through");
    // Unbounded, 96 concurrent hashes of 19 MiB each took ~1.9 GB.
    assert!(peak < 300 * 1024, "peak RSS {peak} KiB during the storm");
    assert!(now < 300 * 1024, "RSS {now} KiB after the storm");
    eprintln!("sign-in storm: peak RSS {peak} KiB, after {now} KiB, {overloaded} of 96 answered 503");
}
