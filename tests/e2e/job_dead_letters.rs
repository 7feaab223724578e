//! A durable job that exhausts its retries lands in the dead-letter queue
//! (kind `job`) with its payload and every attempt's error, and a replay
//! queues it exactly once: a refund against a Stripe stand-in that keeps
//! failing (the refund keeps its own rounds), and a sale start that the
//! database keeps refusing (any other job: apalis's attempts, spaced by the
//! workers' doubling delay), each with a shortened retry budget.

use std::time::Duration;

use chrono::Utc;
use gavel_domain::ids::PaymentId;
use gavel_domain::jobs::queues::{PAYMENTS, SALE_LIFECYCLE};
use gavel_domain::jobs::{self, PaymentJob};
use gavel_domain::payments::{self, refunds};
use gavel_standins::stripe::Faults;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::checkout::Shop;
use crate::helpers::{OPERATOR_TOKEN, TestApp, eventually, in_secs, uuid_of};

/// The first open dead letter of kind `job`, once there is one.
async fn first_open_job_dead_letter(app: &TestApp, what: &str) -> Value {
    eventually(what, Duration::from_secs(30), || async {
        let r = app.get("/v1/admin/dead_letters?kind=job&status=open", Some(OPERATOR_TOKEN)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
        r.body["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await
}

#[tokio::test]
async fn a_refund_that_keeps_failing_is_dead_lettered_as_a_job_and_a_replay_refunds_once() {
    let shop = Shop::open(|c| c.payments.refund_retry_schedule_seconds = vec![0.2, 0.2]).await;
    let (_, held) = shop.holders(1, json!({ "price": 1999 })).await;
    let (token, claim) = &held[0];
    let r = shop.checkout(token, claim, "pm_card_visa").await;
    assert_eq!(r.body["status"], "paid", "{}", r.raw);
    let payment_id: PaymentId =
        sqlx::query_scalar("SELECT id FROM payments").fetch_one(&shop.app.pool).await.expect("the payment");

    // Stripe fails every call from now on; a refund is owed (as the saga owes
    // one for a unit no longer there) and its job queued, in one transaction.
    shop.stripe.set_faults(Faults { fail_next: 1000, ..Faults::default() });
    let mut tx = shop.app.pool.begin().await.expect("begin");
    let payment = payments::get(&mut tx, payment_id).await.expect("read").expect("the payment");
    refunds::owe(&mut tx, &payment, "unit_no_longer_available").await.expect("owe");
    let job = PaymentJob::Refund { payment_id, round: 0 };
    jobs::enqueue(&mut tx, PAYMENTS, &job, Utc::now(), &format!("refund:{payment_id}:0")).await.expect("enqueue");
    tx.commit().await.expect("commit");

    let app = &shop.app;
    let entry = first_open_job_dead_letter(app, "the refund is dead-lettered").await;
    let id = entry["id"].as_str().expect("an id").to_owned();
    assert_eq!((entry["kind"].as_str(), entry["status"].as_str()), (Some("job"), Some("open")));
    assert_eq!(entry["subject"], format!("refund:{payment_id}"));
    assert_eq!(entry["payload"]["queue"], PAYMENTS);
    assert_eq!(entry["payload"]["job"]["kind"], "refund");
    assert_eq!(entry["payload"]["job"]["payment_id"], payment_id.to_string());
    let attempts = entry["attempts"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 3, "a first try and two retries, each with its error: {entry}");
    assert!(attempts.iter().all(|a| a["at"].is_string() && a["error"].as_str().is_some_and(|e| !e.is_empty())));
    assert!(shop.stripe.refunds().is_empty());
    let pending: String =
        sqlx::query_scalar("SELECT status FROM refunds").fetch_one(&app.pool).await.expect("the refund");
    assert_eq!(pending, "pending");

    // Stripe recovers; the operator replays the job once.
    shop.stripe.set_faults(Faults::default());
    let r = app.post(&format!("/v1/admin/dead_letters/{id}/retry"), Some(OPERATOR_TOKEN), json!({})).await;
    assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::ACCEPTED, Some("retried")), "{}", r.raw);
    let stripe = &shop.stripe;
    eventually("the replayed refund reaches Stripe", Duration::from_secs(20), || async {
        (!stripe.refunds().is_empty()).then_some(())
    })
    .await;
    let again = app.post(&format!("/v1/admin/dead_letters/{id}/retry"), Some(OPERATOR_TOKEN), json!({})).await;
    assert_eq!((again.status, again.body["status"].as_str()), (StatusCode::ACCEPTED, Some("retried")));
    app.run_due_jobs(PAYMENTS).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refunds = shop.stripe.refunds();
    assert_eq!((refunds.len(), refunds[0].amount), (1, 1999), "refunded once, in full");
    let done: String = sqlx::query_scalar("SELECT status FROM refunds").fetch_one(&app.pool).await.expect("the refund");
    assert_eq!(done, "succeeded");
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE idempotency_key LIKE 'dlq:%'")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(queued, 1, "the replay queued the job exactly once");
}

#[tokio::test]
async fn a_sale_start_that_keeps_failing_is_dead_lettered_after_spaced_attempts_and_a_replay_starts_it_once() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.sale(&merchant, json!({ "starts_at": in_secs(2), "duration_seconds": 3600 })).await;
    // The database refuses this sale's start (as an outage or a bad row
    // would), and the start job's budget is three runs.
    let refuse = format!(
        "CREATE FUNCTION refuse_start() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.id = '{}' AND NEW.status IS DISTINCT FROM OLD.status THEN
             RAISE EXCEPTION 'planted: this sale may not start';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_start BEFORE UPDATE ON sales FOR EACH ROW EXECUTE FUNCTION refuse_start();",
        uuid_of(&sale.id)
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(refuse)).execute(&app.pool).await.expect("plant the fault");
    let budgeted = sqlx::query("UPDATE apalis.jobs SET max_attempts = 3 WHERE job_type = $1")
        .bind(SALE_LIFECYCLE)
        .execute(&app.pool)
        .await
        .expect("shorten the budget");
    assert!(budgeted.rows_affected() >= 1, "the sale's start job is queued");

    let entry = first_open_job_dead_letter(&app, "the sale start is dead-lettered").await;
    let id = entry["id"].as_str().expect("an id").to_owned();
    let subject = entry["subject"].as_str().unwrap_or_default();
    assert!(subject.starts_with(&format!("{SALE_LIFECYCLE}:")) && subject.contains(&sale.id), "{entry}");
    assert_eq!(entry["payload"]["queue"], SALE_LIFECYCLE);
    assert_eq!(
        (entry["payload"]["job"]["kind"].as_str(), entry["payload"]["job"]["sale_id"].as_str()),
        (Some("start"), Some(sale.id.as_str()))
    );
    let attempts = entry["attempts"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), 3, "every run, each with its error: {entry}");
    assert!(attempts.iter().all(|a| a["error"].as_str().is_some_and(|e| e.contains("planted"))), "{entry}");
    // Spaced by the test configuration's delays (100 ms, then 200 ms, ±10%),
    // not run again at once.
    let at: Vec<chrono::DateTime<Utc>> =
        attempts.iter().map(|a| a["at"].as_str().and_then(|t| t.parse().ok()).expect("a time")).collect();
    assert!(at[1] - at[0] >= chrono::Duration::milliseconds(90), "{entry}");
    assert!(at[2] - at[1] >= chrono::Duration::milliseconds(180), "{entry}");
    let status = app.as_(&merchant.key).sale(&sale.id).await.expect("the sale").status;
    assert_eq!(status, "scheduled");

    // The cause is fixed; the operator replays the start once, twice over.
    sqlx::query("DROP TRIGGER refuse_start ON sales").execute(&app.pool).await.expect("lift the fault");
    for _ in 0..2 {
        let r = app.post(&format!("/v1/admin/dead_letters/{id}/retry"), Some(OPERATOR_TOKEN), json!({})).await;
        assert_eq!((r.status, r.body["status"].as_str()), (StatusCode::ACCEPTED, Some("retried")), "{}", r.raw);
    }
    app.wait_for_status(&merchant, &sale.id, "active", Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // room for a second start, were there one
    let started: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'sale.started' AND subject_id = $1")
            .bind(&sale.id)
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(started, 1, "started exactly once");
    let replays: i64 = sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE idempotency_key LIKE 'dlq:%'")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(replays, 1, "the replay queued the start exactly once");
}
