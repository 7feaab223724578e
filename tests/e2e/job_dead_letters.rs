//! A durable job that exhausts its retries lands in the dead-letter queue
//! (kind `job`) with its payload and every attempt's error, and a replay
//! queues it exactly once: a refund against a Stripe stand-in that keeps
//! failing, with a shortened retry budget.

use std::time::Duration;

use chrono::Utc;
use gavel_domain::ids::PaymentId;
use gavel_domain::jobs::queues::PAYMENTS;
use gavel_domain::jobs::{self, PaymentJob};
use gavel_domain::payments::{self, refunds};
use gavel_standins::stripe::Faults;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::checkout::Shop;
use crate::helpers::{OPERATOR_TOKEN, eventually};

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
    let entry: Value = eventually("the refund is dead-lettered", Duration::from_secs(30), || async {
        let r = app.get("/v1/admin/dead_letters?kind=job&status=open", Some(OPERATOR_TOKEN)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
        r.body["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
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
