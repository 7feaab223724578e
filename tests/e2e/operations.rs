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
    for path in ["/v1/sales", "/v1/sales/{id}", "/v1/sales/{id}/claims", "/v1/buyers", "/v1/sessions"] {
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
    let metrics = app.get("/metrics", None).await.raw;
    assert!(metrics.contains("gavel_http_requests_total{"), "{metrics}");
    assert!(metrics.contains("gavel_http_request_duration_seconds_bucket{"), "{metrics}");
    assert!(metrics.contains("gavel_claims_total{outcome=\"held\"}"), "{metrics}");
    assert!(metrics.contains(&format!("gavel_sale_stock{{sale=\"{sale}\",state=\"available\"}} 2")), "{metrics}");
}
