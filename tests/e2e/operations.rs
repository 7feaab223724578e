//! Health, readiness, metrics and the generated API description.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn health_readiness_and_docs_are_served() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz", None).await.status, StatusCode::OK);
    let ready = app.get("/readyz", None).await;
    assert_eq!((ready.status, &ready.body["status"]), (StatusCode::OK, &json!("ready")));
    let doc = app.get("/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")));
    for path in [
        "/v1/sales",
        "/v1/sales/{id}",
        "/v1/sales/{id}/claims",
        "/v1/buyers",
        "/v1/sessions",
        "/v1/claims/{id}/checkout",
        "/v1/orders",
        "/v1/orders/{id}",
        "/v1/orders/{id}/pay",
        "/v1/stripe/webhook",
    ] {
        assert!(doc.body["paths"][path].is_object(), "{path} is documented");
    }
    let docs = app.get("/docs", None).await;
    assert!(docs.raw.contains("/openapi.json") && !docs.raw.contains("cdn"), "self-contained docs page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_requests_claims_and_stock() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.active_sale(&merchant, json!({ "inventory": 3 })).await;
    let token = app.buyers(1).await.remove(0);
    app.post(&format!("/v1/sales/{sale}/claims"), Some(&token), json!({})).await;
    let metrics = app.metrics().await;
    assert!(metrics.contains("gavel_http_requests_total{"), "{metrics}");
    assert!(metrics.contains("gavel_http_request_duration_seconds_bucket{"), "{metrics}");
    assert!(metrics.contains("gavel_claims_total{outcome=\"held\"}"), "{metrics}");
    assert!(metrics.contains(&format!("gavel_sale_stock{{sale=\"{sale}\",state=\"available\"}} 2")), "{metrics}");
}

#[tokio::test]
async fn maintenance_prunes_old_finished_jobs_idempotency_keys_and_job_errors_only() {
    let app = TestApp::spawn().await;
    for (status, age) in [("Done", "8 days"), ("Done", "1 hour"), ("Killed", "30 days")] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO apalis.jobs (id, job_type, job, status, run_at, done_at, metadata)
             VALUES (apalis.generate_ulid(), 'test.queue', '\\x00', '{status}', now(), now() - interval '{age}', ''::hstore)"
        )))
        .execute(&app.pool)
        .await
        .expect("the test's SQL runs");
    }
    for (key, age) in [("old", "2 days"), ("fresh", "1 minute")] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO idempotency_keys (scope, key, request_hash, created_at)
             VALUES ('s', '{key}', '\\x00', now() - interval '{age}')"
        )))
        .execute(&app.pool)
        .await
        .expect("the test's SQL runs");
    }
    // Failed jobs' errors: old ones go unless their dead letter is still
    // open (or replayed); fresh ones stay. (The dead letters first: the
    // workers' own maintenance may run meanwhile.)
    for (subject, status) in [("q:open", "open"), ("q:discarded", "discarded")] {
        sqlx::query(
            "INSERT INTO dead_letters (id, kind, status, subject, payload, attempts)
             VALUES (gen_random_uuid(), 'job', $2, $1, '{}', '[]')",
        )
        .bind(subject)
        .bind(status)
        .execute(&app.pool)
        .await
        .expect("the test's SQL runs");
    }
    for (subject, age) in
        [("q:succeeded", "31 days"), ("q:open", "31 days"), ("q:discarded", "31 days"), ("q:fresh", "1 day")]
    {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO job_attempts (subject, at, error) VALUES ('{subject}', now() - interval '{age}', 'boom')"
        )))
        .execute(&app.pool)
        .await
        .expect("the test's SQL runs");
    }
    let job = gavel_domain::jobs::MaintenanceJob::Prune { tick: 1 };
    gavel_workflows::maintenance::run(&app.pool, job).await.expect("the maintenance job runs");
    let kept: Vec<String> = sqlx::query_scalar("SELECT subject FROM job_attempts ORDER BY subject")
        .fetch_all(&app.pool)
        .await
        .expect("the test's SQL runs");
    assert_eq!(kept, vec!["q:fresh".to_owned(), "q:open".to_owned()]);
    let jobs: Vec<(String, bool)> = sqlx::query_as(
        "SELECT status, done_at > now() - interval '1 day' FROM apalis.jobs WHERE job_type = 'test.queue' ORDER BY status",
    )
    .fetch_all(&app.pool)
    .await
    .expect("the test's SQL runs");
    assert_eq!(jobs, vec![("Done".to_owned(), true), ("Killed".to_owned(), false)]);
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT key FROM idempotency_keys").fetch_all(&app.pool).await.expect("the test's SQL runs");
    assert_eq!(keys, vec!["fresh".to_owned()]);
}

#[tokio::test]
async fn metrics_need_the_operator_token_and_invented_methods_add_no_series() {
    let app = TestApp::spawn().await;
    for auth in [None, Some("wrong-operator-token"), Some("sk_not_an_operator")] {
        let r = app.get("/metrics", auth).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}: {}", r.raw);
        assert!(r.is_problem());
    }
    for i in 0..40 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).expect("a valid method token");
        app.request(method, &format!("/v1/nothing/{i}"), None, None).await;
    }
    let text = app.metrics().await;
    let methods: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("gavel_http_requests_total{"))
        .filter_map(|l| l.split("method=\"").nth(1).and_then(|rest| rest.split('"').next()))
        .collect();
    assert!(methods.contains("OTHER"), "{methods:?}");
    assert!(methods.iter().all(|m| !m.starts_with("INVENTED")), "{methods:?}");
    let routes: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.split("route=\"").nth(1).and_then(|rest| rest.split('"').next())).collect();
    assert!(routes.iter().all(|r| !r.contains("/v1/nothing/")), "raw paths never become labels: {routes:?}");
}
