//! The notifier's delivery policy end to end (real PostgreSQL, APNs over
//! HTTP/2 to the stand-in): repeated outbids coalesce into one push with the
//! latest price; non-critical pushes are capped per buyer across notifier
//! processes while critical ones always pass; critical deliveries go first.

use gavel::Role;
use gavel_domain::ids::AuctionId;
use serde_json::Value;

use crate::helpers::{TestApp, fresh_database};
use crate::notify_push::{Push, apns_token, app_on, device, outbid, paid, parties, record, refunded, settle};

#[tokio::test]
async fn five_outbids_on_one_auction_within_the_window_are_one_push_with_the_latest_price() {
    let push = Push::start().await;
    let app = app_on(&fresh_database().await, &[Role::Api, Role::Notifier], &push, |c| {
        c.notifier.coalesce_seconds = 1.5;
    })
    .await;
    let (merchant, buyer, token) = parties(&app).await;
    device(&app, &token, "apns", &apns_token(5)).await;
    let auction = AuctionId::new();
    for (sequence, price) in [(1, 10_000), (2, 10_500), (3, 11_000), (4, 11_500), (5, 12_000)] {
        record(&app.pool, merchant, &outbid(buyer, auction, sequence, price)).await;
    }
    // Another auction's outbid is another group: its own push.
    let other = AuctionId::new();
    record(&app.pool, merchant, &outbid(buyer, other, 1, 700)).await;
    settle(&app.pool).await;

    let sent = push.apns.deliveries();
    assert_eq!(sent.len(), 2, "one push per auction: {sent:?}");
    let ours = sent.iter().find(|d| d.collapse_id.as_deref() == Some(&format!("outbid:{auction}"))).expect("ours");
    let body = ours.payload["aps"]["alert"]["body"].as_str().unwrap_or_default();
    assert!(body.contains("120.00 USD"), "the latest price: {body}");
    assert!(sent.iter().any(|d| d.collapse_id.as_deref() == Some(&format!("outbid:{other}"))));
    let rows: Vec<(String, Value)> =
        sqlx::query_as("SELECT status, attempt_log FROM deliveries WHERE collapse_key = $1 ORDER BY created_at, id")
            .bind(format!("outbid:{auction}"))
            .fetch_all(&app.pool)
            .await
            .expect("deliveries");
    assert_eq!(rows.len(), 5);
    assert_eq!(rows.iter().filter(|r| r.0 == "sent").count(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "sent", "the oldest carries the group");
    assert!(rows[1..].iter().all(|r| r.0 == "skipped" && r.1.to_string().contains("coalesced into dlv_")), "{rows:?}");
    let metrics = app.metrics().await;
    assert!(metrics.contains("outcome=\"coalesced\""), "the merged ones are counted");
}

#[tokio::test]
async fn non_critical_pushes_are_capped_per_buyer_across_processes_and_critical_ones_always_pass() {
    let push = Push::start().await;
    let db = fresh_database().await;
    let limit = |c: &mut gavel::Config| {
        c.notifier.push_limit = 3;
        c.notifier.push_limit_window_seconds = 600;
        c.notifier.delivery_batch = 2;
    };
    let app = app_on(&db, &[Role::Api, Role::Notifier], &push, limit).await;
    // A second notifier process over the same database.
    let _second: TestApp = app_on(&db, &[Role::Notifier], &push, limit).await;
    let (merchant, buyer, token) = parties(&app).await;
    device(&app, &token, "apns", &apns_token(8)).await;
    device(&app, &token, "fcm", "fcm-capped").await;
    for _ in 0..8 {
        record(&app.pool, merchant, &refunded(buyer)).await;
    }
    record(&app.pool, merchant, &paid(buyer)).await;
    record(&app.pool, merchant, &paid(buyer)).await;
    settle(&app.pool).await;

    let apns = push.apns.deliveries();
    let fcm = push.fcm.messages();
    let (critical, normal): (Vec<_>, Vec<_>) = apns.iter().partition(|d| d.priority == "10");
    assert_eq!(critical.len(), 2, "critical pushes always pass: {apns:?}");
    assert_eq!(normal.len(), 3, "three refunds of eight, however many processes: {apns:?}");
    assert_eq!(fcm.len(), 5, "a message to two devices counts once: the same three on FCM, and two critical");
    // The same messages on both devices.
    let apns_orders: std::collections::BTreeSet<String> =
        normal.iter().map(|d| d.payload["order_id"].as_str().unwrap_or_default().to_owned()).collect();
    let fcm_orders: std::collections::BTreeSet<String> = fcm
        .iter()
        .filter(|m| m.message["android"]["priority"] == "NORMAL")
        .map(|m| m.message["data"]["order_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(apns_orders, fcm_orders);
    let limited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE status = 'skipped' AND attempt_log::text LIKE '%rate limited%'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(limited, 10, "five refunds over the limit, on two devices each");
}

#[tokio::test]
async fn critical_deliveries_go_before_a_backlog_of_others() {
    let push = Push::start().await;
    let db = fresh_database().await;
    // The API alone first: the backlog is made before any notifier runs.
    let api = app_on(&db, &[Role::Api], &push, |_| {}).await;
    let (merchant, buyer, token) = parties(&api).await;
    device(&api, &token, "apns", &apns_token(9)).await;
    for _ in 0..4 {
        record(&api.pool, merchant, &refunded(buyer)).await;
    }
    record(&api.pool, merchant, &paid(buyer)).await;
    let notifier = app_on(&db, &[Role::Notifier], &push, |c| {
        c.notifier.delivery_batch = 1;
        c.notifier.concurrency = 1;
    })
    .await;
    settle(&notifier.pool).await;
    let sent = push.apns.deliveries();
    assert_eq!(sent.len(), 5, "{sent:?}");
    assert_eq!(sent[0].priority, "10", "the order paid, made last, is sent first: {sent:?}");
    assert!(sent[1..].iter().all(|d| d.priority == "5"));
}
