//! The notifier over a real PostgreSQL and real SMTP (lettre to the SMTP
//! stand-in over TCP): the outbox's events become emails, once; preferences
//! are honoured; temporary failures are retried and the budget's end lands in
//! the dead-letter queue, from which a replay delivers once; a rolled-back
//! change sends nothing; the admin endpoints want the operator token.

use std::time::Duration;

use chrono::Utc;
use gavel::Role;
use gavel_domain::events::{self, DomainEvent, OrderSettled};
use gavel_domain::ids::{BuyerId, MerchantId, OrderId, PaymentId};
use gavel_domain::money::Money;
use gavel_standins::smtp::{SmtpFaults, SmtpStandIn};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::checkout::Shop;
use crate::helpers::{OPERATOR_TOKEN, TestApp, eventually, fresh_database};
use crate::notify_push::record;

async fn smtp() -> SmtpStandIn {
    SmtpStandIn::start(([127, 0, 0, 1], 0).into(), ([127, 0, 0, 1], 0).into()).await.expect("smtp stand-in")
}

/// API and notifier over a fresh database, email through `smtp`.
async fn app(smtp: &SmtpStandIn) -> TestApp {
    let url = smtp.url();
    TestApp::spawn_on(&fresh_database().await, &[Role::Api, Role::Notifier], |c| c.notifier.smtp_url = Some(url)).await
}

/// A merchant and a signed-up buyer: (merchant, buyer, buyer's email).
async fn parties(app: &TestApp) -> (MerchantId, BuyerId, String) {
    app.merchant().await;
    app.buyers(1).await;
    let merchant = sqlx::query_scalar("SELECT id FROM merchants").fetch_one(&app.pool).await.expect("merchant");
    let (buyer, email) = sqlx::query_as("SELECT id, email FROM buyers").fetch_one(&app.pool).await.expect("the buyer");
    (merchant, buyer, email)
}

fn paid(buyer: BuyerId) -> DomainEvent {
    DomainEvent::OrderPaid(OrderSettled {
        order_id: OrderId::new(),
        sale_id: None,
        claim_id: None,
        buyer_id: buyer,
        payment_id: PaymentId::new(),
        amount: Money::new(4250, "usd".parse().expect("usd")),
    })
}

/// The event's deliveries once it is fanned out: (status, attempts, attempt_log).
async fn deliveries(pool: &PgPool, event: Uuid) -> Vec<(String, i32, Value)> {
    sqlx::query_as("SELECT status, attempts, attempt_log FROM deliveries WHERE event_id = $1 ORDER BY created_at")
        .bind(event)
        .fetch_all(pool)
        .await
        .expect("deliveries")
}

/// Waits until the event's only delivery reaches `status`.
async fn settled(pool: &PgPool, event: Uuid, status: &str) -> (String, i32, Value) {
    eventually(&format!("the delivery of {event} is {status}"), Duration::from_secs(20), || async {
        let rows = deliveries(pool, event).await;
        (rows.len() == 1 && rows[0].0 == status).then(|| rows[0].clone())
    })
    .await
}

async fn notified(pool: &PgPool, event: Uuid) {
    eventually("the event is fanned out", Duration::from_secs(20), || async {
        let at: Option<chrono::DateTime<Utc>> = sqlx::query_scalar("SELECT notified_at FROM events WHERE id = $1")
            .bind(event)
            .fetch_one(pool)
            .await
            .expect("the event");
        at.map(|_| ())
    })
    .await;
}

/// Waits a little for anything more to arrive (nothing should).
async fn quiet() {
    tokio::time::sleep(Duration::from_millis(600)).await;
}

#[tokio::test]
async fn a_paid_order_sends_its_buyer_exactly_one_email_with_the_product_price_and_link() {
    let smtp = smtp().await;
    let url = smtp.url();
    let shop = Shop::open_on(&fresh_database().await, &[Role::Api, Role::Workers, Role::Notifier], |c| {
        c.notifier.smtp_url = Some(url);
        c.notifier.app_url = "https://shop.example".into();
    })
    .await;
    let (_, held) = shop.holders(1, json!({ "price": 1999 })).await;
    let (token, claim) = &held[0];
    let r = shop
        .app
        .post(&format!("/v1/claims/{claim}/checkout"), Some(token), json!({"payment_method": "pm_card_visa"}))
        .await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::OK, Some("paid")), "{}", r.raw);
    let order = r.body["id"].as_str().expect("an order id").to_owned();
    let email: String = sqlx::query_scalar("SELECT email FROM buyers").fetch_one(&shop.app.pool).await.expect("email");

    eventually("the email arrives", Duration::from_secs(20), || async { (!smtp.messages().is_empty()).then_some(()) })
        .await;
    quiet().await;
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "one email: {messages:?}");
    let m = &messages[0];
    assert_eq!(m.to, vec![email.clone()]);
    assert_eq!(m.from, "no-reply@gavel.invalid");
    assert_eq!(m.subject.as_deref(), Some("Your order for Sneakers is confirmed"));
    assert!(m.data.contains("multipart/alternative"), "text and HTML: {}", m.data);
    assert!(m.data.contains("19.99 USD"), "{}", m.data);
    assert!(m.data.contains(&format!("https://shop.example/orders/{order}")), "{}", m.data);
    let sent: (String, Option<String>) =
        sqlx::query_as("SELECT status, provider_id FROM deliveries WHERE kind = 'order.paid'")
            .fetch_one(&shop.app.pool)
            .await
            .expect("the delivery");
    assert_eq!(sent.0, "sent");
    assert!(sent.1.is_some_and(|id| id.contains(&m.id)), "the stand-in's queue id is kept");
}

#[tokio::test]
async fn a_buyer_who_switched_email_off_gets_no_email() {
    let smtp = smtp().await;
    let app = app(&smtp).await;
    let (merchant, buyer, _) = parties(&app).await;
    sqlx::query("INSERT INTO notification_preferences (buyer_id, email) VALUES ($1, false)")
        .bind(buyer)
        .execute(&app.pool)
        .await
        .expect("preferences");
    let event = record(&app.pool, merchant, &paid(buyer)).await;
    notified(&app.pool, event).await;
    quiet().await;
    assert!(deliveries(&app.pool, event).await.is_empty(), "no delivery is made");
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn smtp_failing_for_a_while_is_retried_and_the_email_arrives_once() {
    let smtp = smtp().await;
    smtp.set_faults(SmtpFaults { temp_fail_next: 2, ..SmtpFaults::default() });
    let app = app(&smtp).await;
    let (merchant, buyer, email) = parties(&app).await;
    let event = record(&app.pool, merchant, &paid(buyer)).await;

    let (_, attempts, log) = settled(&app.pool, event, "sent").await;
    assert_eq!(attempts, 3, "two 451s, then accepted");
    let log = log.as_array().cloned().unwrap_or_default();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log.iter().all(|a| a["error"].as_str().is_some_and(|e| e.contains("451")) && a["at"].is_string()));
    quiet().await;
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].to, vec![email]);
}

#[tokio::test]
async fn smtp_failing_beyond_the_budget_dead_letters_the_delivery_and_a_replay_delivers_it_once() {
    let smtp = smtp().await;
    smtp.set_faults(SmtpFaults { temp_fail_next: 1000, ..SmtpFaults::default() });
    let app = app(&smtp).await;
    let (merchant, buyer, email) = parties(&app).await;
    let event = record(&app.pool, merchant, &paid(buyer)).await;

    // config/test.toml: four attempts.
    let (_, attempts, log) = settled(&app.pool, event, "failed").await;
    assert_eq!((attempts, log.as_array().map(Vec::len)), (4, Some(4)));
    let r = app.get("/v1/admin/dead_letters?kind=notification&status=open", Some(OPERATOR_TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let entries = r.body["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{}", r.raw);
    let entry = &entries[0];
    let id = entry["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("dlq_"));
    assert_eq!((entry["kind"].as_str(), entry["status"].as_str()), (Some("notification"), Some("open")));
    assert_eq!((entry["channel"].as_str(), entry["recipient"].as_str()), (Some("email"), Some(email.as_str())));
    assert_eq!(entry["payload"]["type"], "email");
    assert_eq!(entry["attempts"].as_array().map(Vec::len), Some(4), "every attempt: {entry}");
    let one = app.get(&format!("/v1/admin/dead_letters/{id}"), Some(OPERATOR_TOKEN)).await;
    assert_eq!((one.status, one.body["subject"].clone()), (StatusCode::OK, entry["subject"].clone()));
    assert!(smtp.messages().is_empty());

    // The provider recovers; the operator replays it with the CLI.
    smtp.set_faults(SmtpFaults::default());
    let db = app.pool.connect_options().get_database().map(str::to_owned).expect("a database name");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["dlq", "retry", &id])
        .env("DATABASE_URL", format!("{}/{db}", crate::helpers::server_url()))
        .env("GAVEL_ENV", "test")
        .env("GAVEL_LOG", "warn")
        .output()
        .expect("gavel dlq retry runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("the entry as JSON");
    assert_eq!(printed["status"], "retried");
    settled(&app.pool, event, "sent").await;

    // A second replay (over the API) queues nothing more.
    let again = app.post(&format!("/v1/admin/dead_letters/{id}/retry"), Some(OPERATOR_TOKEN), json!({})).await;
    assert_eq!((again.status, again.body["status"].as_str()), (StatusCode::ACCEPTED, Some("retried")), "{}", again.raw);
    quiet().await;
    assert_eq!(smtp.messages().len(), 1, "delivered once");
    assert_eq!(deliveries(&app.pool, event).await[0].0, "sent");
}

#[tokio::test]
async fn a_recipient_the_server_refuses_is_skipped_with_the_reason() {
    let smtp = smtp().await;
    let app = app(&smtp).await;
    let (merchant, buyer, email) = parties(&app).await;
    smtp.set_faults(SmtpFaults { reject_recipients: vec![email], ..SmtpFaults::default() });
    let event = record(&app.pool, merchant, &paid(buyer)).await;
    let (_, attempts, log) = settled(&app.pool, event, "skipped").await;
    assert_eq!(attempts, 1, "a dead mailbox is not retried");
    assert!(log[0]["error"].as_str().is_some_and(|e| e.contains("550")), "{log}");
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn a_rolled_back_change_sends_nothing() {
    let smtp = smtp().await;
    let app = app(&smtp).await;
    let (merchant, buyer, _) = parties(&app).await;
    let rolled_back = paid(buyer);
    let mut tx = app.pool.begin().await.expect("begin");
    assert!(events::record(&mut tx, merchant, &rolled_back).await.expect("record"));
    tx.rollback().await.expect("rollback");
    // A committed event after it, to know the notifier has looked.
    let committed = record(&app.pool, merchant, &paid(buyer)).await;
    settled(&app.pool, committed, "sent").await;
    quiet().await;
    assert_eq!(smtp.messages().len(), 1, "only the committed event's email");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(&app.pool).await.expect("count");
    assert_eq!(total, 1);
}

#[tokio::test]
async fn the_admin_endpoints_want_the_operator_token() {
    let smtp = smtp().await;
    let app = app(&smtp).await;
    let missing = "dlq_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b";
    for (method, path) in [
        (reqwest::Method::GET, "/v1/admin/dead_letters".to_owned()),
        (reqwest::Method::GET, format!("/v1/admin/dead_letters/{missing}")),
        (reqwest::Method::POST, format!("/v1/admin/dead_letters/{missing}/retry")),
        (reqwest::Method::POST, format!("/v1/admin/dead_letters/{missing}/discard")),
    ] {
        for auth in [None, Some("not-the-operator-token")] {
            let r = app.request(method.clone(), &path, auth, None).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path} with {auth:?}: {}", r.raw);
            assert!(r.is_problem(), "{}", r.raw);
        }
        let r = app.request(method.clone(), &path, Some(OPERATOR_TOKEN), None).await;
        assert_ne!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}: {}", r.raw);
    }
    let bad = app.get("/v1/admin/dead_letters?kind=carrier_pigeon", Some(OPERATOR_TOKEN)).await;
    assert_eq!((bad.status, bad.code()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"), "{}", bad.raw);
    let unknown = app.get(&format!("/v1/admin/dead_letters/{missing}"), Some(OPERATOR_TOKEN)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.raw);
}
