//! Delivery: exactly the committed changes produce deliveries (one per
//! subscribed endpoint); a receiver that is down gets the schedule and, once
//! back, the delivery once; down for good → failed, dead-lettered, disabled;
//! a manual retry delivers with the same `webhook-id`; 410 disables at once
//! (and the merchant's other endpoints hear `webhook_endpoint.disabled`);
//! 429 slows down without spending the budget; a hanging endpoint does not
//! delay another's deliveries.

use std::time::{Duration, Instant};

use gavel_domain::events::{self, DomainEvent, OrderSettled};
use gavel_domain::ids::{BuyerId, MerchantId, OrderId, PaymentId};
use gavel_domain::money::Money;
use gavel_standins::webhook_receiver::ReceiverFaults;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{app, body_of, deliveries, delivery_with_status, endpoint, received_ok, receiver};
use crate::checkout::Shop;
use crate::helpers::{OPERATOR_TOKEN, eventually};

fn paid() -> DomainEvent {
    DomainEvent::OrderPaid(OrderSettled {
        order_id: OrderId::new(),
        sale_id: None,
        claim_id: None,
        buyer_id: BuyerId::new(),
        payment_id: PaymentId::new(),
        amount: Money::new(4250, "usd".parse().expect("usd")),
    })
}

#[tokio::test]
async fn a_sale_start_and_a_paid_checkout_make_one_delivery_per_subscribed_endpoint_and_nothing_else() {
    let receiver = receiver().await;
    let shop = Shop::open(|_| {}).await;
    let (app, merchant) = (&shop.app, &shop.merchant);
    let (all, _) = endpoint(app, merchant, &receiver.url("/all"), Value::Null).await;
    let (paid_only, _) = endpoint(app, merchant, &receiver.url("/paid"), json!(["order.paid"])).await;
    // Another merchant's endpoint hears nothing of this merchant's events.
    let other = app.merchant().await;
    endpoint(app, &other, &receiver.url("/other"), Value::Null).await;

    let (_, held) = shop.holders(1, json!({})).await; // sale.started
    let (token, claim) = &held[0];
    let r = shop.checkout(token, claim, "pm_card_visa").await; // order.paid
    assert_eq!(r.body["status"], "paid", "{}", r.raw);

    let got = received_ok(&receiver, 3, Duration::from_secs(15)).await;
    let seen: Vec<(String, String)> =
        got.iter().map(|r| (r.path.clone(), body_of(r)["type"].as_str().unwrap_or("").to_owned())).collect();
    assert!(seen.contains(&("/all".into(), "sale.started".into())), "{seen:?}");
    assert!(seen.contains(&("/all".into(), "order.paid".into())), "{seen:?}");
    assert!(seen.contains(&("/paid".into(), "order.paid".into())), "{seen:?}");

    // A change that rolls back reports nothing.
    let merchant_id: MerchantId = sqlx::query_scalar("SELECT merchant_id FROM webhook_endpoints WHERE id = $1")
        .bind(crate::helpers::uuid_of(&all))
        .fetch_one(&app.pool)
        .await
        .expect("the endpoint's merchant");
    let mut tx = app.pool.begin().await.expect("begin");
    assert!(events::record(&mut tx, merchant_id, &paid()).await.expect("record"));
    tx.rollback().await.expect("rollback");
    // A committed one after it is delivered, so the rolled-back one had its chance.
    let mut tx = app.pool.begin().await.expect("begin");
    assert!(events::record(&mut tx, merchant_id, &paid()).await.expect("record"));
    tx.commit().await.expect("commit");
    let got = received_ok(&receiver, 5, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 5, "three, plus the committed event to both endpoints: {got:?}");
    assert!(receiver.received().iter().all(|r| r.path != "/other"), "another merchant's endpoint heard nothing");

    let listed = deliveries(app, merchant, &format!("endpoint={paid_only}")).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|d| d["status"] == "delivered" && d["attempts"][0]["status_code"] == 200), "{listed:?}");
    let typed = deliveries(app, merchant, "event_type=sale.started").await;
    assert_eq!((typed.len(), typed[0]["endpoint"].as_str()), (1, Some(all.as_str())), "{typed:?}");
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_the_schedule_then_the_delivery_once_when_it_recovers() {
    let receiver = receiver().await;
    receiver.set_faults(ReceiverFaults { status: 500, ..ReceiverFaults::default() });
    // A longer schedule than the tests' default, so it cannot run out meanwhile.
    let app = app(|c| c.webhooks.retry_schedule_seconds = vec![0.0, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]).await;
    let merchant = app.merchant().await;
    endpoint(&app, &merchant, &receiver.url("/down"), Value::Null).await;
    app.active_sale(&merchant, json!({})).await;

    eventually("three failed attempts", Duration::from_secs(10), || async {
        (receiver.received().len() >= 3).then_some(())
    })
    .await;
    receiver.set_faults(ReceiverFaults::default());
    let got = received_ok(&receiver, 1, Duration::from_secs(10)).await;
    let delivered = delivery_with_status(&app, &merchant, "delivered", Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;

    let all = receiver.received();
    assert_eq!(all.iter().filter(|r| r.answered == 200).count(), 1, "delivered once: {all:?}");
    assert!(all.iter().all(|r| r.webhook_id == got[0].webhook_id), "every attempt has the same webhook-id");
    let attempts = delivered["attempts"].as_array().cloned().unwrap_or_default();
    assert_eq!(attempts.len(), all.len(), "every attempt is logged: {delivered}");
    assert!(attempts[..attempts.len() - 1].iter().all(|a| a["status_code"] == 500), "{delivered}");
    assert_eq!(attempts[attempts.len() - 1]["status_code"], 200);
    // The schedule spaces them (0.3 s ± 10%).
    for pair in all.windows(2) {
        let gap = (pair[1].received_at - pair[0].received_at).num_milliseconds();
        assert!(gap >= 250, "attempts {gap} ms apart: the schedule was not followed");
    }
}

#[tokio::test]
async fn down_for_good_fails_and_dead_letters_and_a_manual_retry_delivers_with_the_same_webhook_id() {
    let receiver = receiver().await;
    receiver.set_faults(ReceiverFaults { status: 503, ..ReceiverFaults::default() });
    let app = app(|_| {}).await; // schedule [0, 0.2, 0.2, 0.2]: four attempts
    let merchant = app.merchant().await;
    let (endpoint_id, _) = endpoint(&app, &merchant, &receiver.url("/gone-away"), Value::Null).await;
    app.active_sale(&merchant, json!({})).await;

    let failed = delivery_with_status(&app, &merchant, "failed", Duration::from_secs(10)).await;
    assert_eq!(failed["attempts"].as_array().map(Vec::len), Some(4), "the whole schedule: {failed}");
    assert!(failed.get("next_attempt_at").is_none(), "{failed}");
    let id = failed["id"].as_str().expect("an id").to_owned();
    let r = app.get("/v1/admin/dead_letters?kind=webhook", Some(OPERATOR_TOKEN)).await;
    let entries = r.body["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{}", r.raw);
    assert_eq!((entries[0]["subject"].as_str(), entries[0]["status"].as_str()), (Some(id.as_str()), Some("open")));
    assert_eq!(entries[0]["attempts"].as_array().map(Vec::len), Some(4), "{}", r.raw);

    receiver.set_faults(ReceiverFaults::default());
    let r = app.post(&format!("/v1/webhook_deliveries/{id}/retry"), Some(&merchant.key), Value::Null).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    let got = received_ok(&receiver, 1, Duration::from_secs(10)).await;
    assert!(got.iter().all(|r| r.webhook_id == got[0].webhook_id), "the retry keeps the webhook-id");
    let delivered = delivery_with_status(&app, &merchant, "delivered", Duration::from_secs(5)).await;
    assert_eq!(delivered["attempts"].as_array().map(Vec::len), Some(5), "the retry added one attempt: {delivered}");

    // The dead letter's replay re-sends once more; a second replay sends nothing.
    let entry = entries[0]["id"].as_str().expect("an entry id").to_owned();
    let r = app.post(&format!("/v1/admin/dead_letters/{entry}/retry"), Some(OPERATOR_TOKEN), json!({})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    // The delivery was delivered meanwhile: the replay flips the entry and re-queues nothing.
    let again = app.post(&format!("/v1/admin/dead_letters/{entry}/retry"), Some(OPERATOR_TOKEN), json!({})).await;
    assert_eq!(again.body["status"], "retried", "{}", again.raw);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.received().iter().filter(|r| r.answered == 200).count(), 1);

    // Recover re-sends what failed since a time (nothing failed now).
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let r = app
        .post(&format!("/v1/webhook_endpoints/{endpoint_id}/recover"), Some(&merchant.key), json!({ "since": since }))
        .await;
    assert_eq!((r.status, r.body["requeued"].as_u64()), (StatusCode::ACCEPTED, Some(0)), "{}", r.raw);
}

#[tokio::test]
async fn an_endpoint_failing_for_the_whole_window_is_disabled_and_recover_resends_its_failed_deliveries() {
    let receiver = receiver().await;
    receiver.set_faults(ReceiverFaults { status: 500, ..ReceiverFaults::default() });
    let app = app(|c| {
        c.webhooks.retry_schedule_seconds = vec![0.0; 1].into_iter().chain([0.3; 20]).collect();
        c.webhooks.disable_after_seconds = 1.0;
    })
    .await;
    let merchant = app.merchant().await;
    let (id, _) = endpoint(&app, &merchant, &receiver.url("/dead"), Value::Null).await;
    app.active_sale(&merchant, json!({})).await;

    let disabled = eventually("the endpoint is disabled", Duration::from_secs(10), || async {
        let r = app.get(&format!("/v1/webhook_endpoints/{id}"), Some(&merchant.key)).await;
        (r.body["enabled"] == false).then_some(r.body)
    })
    .await;
    assert!(disabled["disabled_reason"].as_str().is_some_and(|s| s.contains("failed")), "{disabled}");
    let failed = delivery_with_status(&app, &merchant, "failed", Duration::from_secs(5)).await;
    assert!(failed["attempts"].as_array().is_some_and(|a| a.len() >= 3), "{failed}");

    // Back up: recover re-sends it (once) even though the endpoint is disabled.
    receiver.set_faults(ReceiverFaults::default());
    let since = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let r =
        app.post(&format!("/v1/webhook_endpoints/{id}/recover"), Some(&merchant.key), json!({ "since": since })).await;
    assert_eq!((r.status, r.body["requeued"].as_u64()), (StatusCode::ACCEPTED, Some(1)), "{}", r.raw);
    received_ok(&receiver, 1, Duration::from_secs(10)).await;
    delivery_with_status(&app, &merchant, "delivered", Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_410_disables_the_endpoint_at_once_and_a_429_slows_down_without_spending_retries() {
    let gone = receiver().await;
    gone.set_faults(ReceiverFaults { status: 410, ..ReceiverFaults::default() });
    let busy = receiver().await;
    busy.set_faults(ReceiverFaults { status: 429, retry_after: Some(1), ..ReceiverFaults::default() });
    let app = app(|_| {}).await; // four attempts in the schedule
    let merchant = app.merchant().await;
    let (gone_id, _) = endpoint(&app, &merchant, &gone.url("/"), Value::Null).await;
    let (busy_id, _) = endpoint(&app, &merchant, &busy.url("/"), Value::Null).await;
    app.active_sale(&merchant, json!({})).await;

    let r = eventually("the 410 endpoint is disabled", Duration::from_secs(10), || async {
        let r = app.get(&format!("/v1/webhook_endpoints/{gone_id}"), Some(&merchant.key)).await;
        (r.body["enabled"] == false).then_some(r)
    })
    .await;
    assert!(r.body["disabled_reason"].as_str().is_some_and(|s| s.contains("410")), "{}", r.raw);
    assert_eq!(gone.received().len(), 1, "no retry after 410");

    // 429 + Retry-After: 1 s: about one attempt a second (of the sale's
    // start; the endpoint also has the disabling to send), never dead-lettered.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let attempts = busy.received().iter().filter(|r| body_of(r)["type"] == "sale.started").count();
    assert!((2..=4).contains(&attempts), "Retry-After paced the attempts: {attempts}");
    let listed = deliveries(&app, &merchant, &format!("endpoint={busy_id}")).await;
    assert!(listed.iter().all(|d| d["status"] == "pending"), "throttling spends no retries: {listed:?}");
    busy.set_faults(ReceiverFaults::default());
    // The sale's start, and the merchant told of the disabling through its other endpoint.
    let got = received_ok(&busy, 2, Duration::from_secs(5)).await;
    let told: Vec<Value> = got
        .iter()
        .filter(|r| (200..300).contains(&r.answered))
        .map(body_of)
        .filter(|b| b["type"] == "webhook_endpoint.disabled")
        .collect();
    assert_eq!(told.len(), 1, "{got:?}");
    assert_eq!(told[0]["data"]["endpoint_id"], gone_id.as_str(), "{}", told[0]);
    assert!(told[0]["data"]["reason"].as_str().is_some_and(|s| s.contains("410")), "{}", told[0]);
    assert_eq!(gone.received().len(), 1, "the disabled endpoint is sent nothing more, not even its own disabling");
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_delay_another_endpoints_deliveries() {
    let hanging = receiver().await;
    hanging.set_faults(ReceiverFaults { hang: true, ..ReceiverFaults::default() });
    let fine = receiver().await;
    let app = app(|c| c.webhooks.timeout_ms = 5_000).await;
    let (slow_merchant, merchant) = (app.merchant().await, app.merchant().await);
    endpoint(&app, &slow_merchant, &hanging.url("/"), Value::Null).await;
    endpoint(&app, &merchant, &fine.url("/"), Value::Null).await;
    // Many events for the hanging endpoint first, then one for the other merchant.
    for _ in 0..5 {
        app.active_sale(&slow_merchant, json!({})).await;
    }
    eventually("the hanging endpoint holds requests", Duration::from_secs(5), || async {
        (!hanging.received().is_empty()).then_some(())
    })
    .await;
    let started = Instant::now();
    app.active_sale(&merchant, json!({})).await;
    received_ok(&fine, 1, Duration::from_secs(3)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "delivered in {:?} beside a hanging endpoint",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_delivery_whose_sender_died_mid_send_is_sent_again_once_its_lease_runs_out() {
    let receiver = receiver().await;
    let app = app(|_| {}).await;
    let merchant = app.merchant().await;
    let (endpoint_id, _) = endpoint(&app, &merchant, &receiver.url("/crash"), Value::Null).await;
    // An event already fanned out, whose delivery a crashed sender had claimed
    // (its lease ran out a second ago; its attempt was never recorded).
    let (event, delivery) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    sqlx::query(
        "INSERT INTO events (id, merchant_id, type, subject_id, dedupe_key, payload, dispatched_at)
         SELECT $1, merchant_id, 'order.paid', 'ord_crash', 'crash:' || $1, '{\"order_id\": \"ord_crash\"}', now()
         FROM webhook_endpoints WHERE id = $2",
    )
    .bind(event)
    .bind(crate::helpers::uuid_of(&endpoint_id))
    .execute(&app.pool)
    .await
    .expect("the event");
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_id, event_type, resource_version,
                                         status, lease_owner, lease_until, next_attempt_at)
         SELECT $1, id, merchant_id, $2, 'order.paid', 1, 'sending', 'a-crashed-sender',
                now() - interval '1 second', now() - interval '6 seconds'
         FROM webhook_endpoints WHERE id = $3",
    )
    .bind(delivery)
    .bind(event)
    .bind(crate::helpers::uuid_of(&endpoint_id))
    .execute(&app.pool)
    .await
    .expect("the delivery");

    let got = received_ok(&receiver, 1, Duration::from_secs(10)).await;
    assert_eq!(body_of(&got[0])["id"], format!("evt_{}", event.simple()).as_str(), "{got:?}");
    let (status, attempts): (String, i64) = eventually("the delivery is settled", Duration::from_secs(5), || async {
        let row: (String, i64) = sqlx::query_as(
            "SELECT status, (SELECT count(*) FROM webhook_attempts WHERE delivery_id = d.id)
             FROM webhook_deliveries d WHERE id = $1",
        )
        .bind(delivery)
        .fetch_one(&app.pool)
        .await
        .expect("the delivery");
        (row.0 == "delivered").then_some(row)
    })
    .await;
    assert_eq!((status.as_str(), attempts), ("delivered", 1), "one attempt logged");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1, "sent once");
}
