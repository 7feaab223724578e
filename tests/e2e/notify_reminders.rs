//! Reminders end to end: a hold that ends in a minute reminds its buyer
//! only while it is still held (a refused claim and a bought hold remind no
//! one); an auction ending soon reminds its bidders and watchers, for its
//! current end only (a reminder for the end soft close moved does nothing).

use std::time::Duration;

use chrono::{DateTime, Utc};
use gavel::Role;
use reqwest::StatusCode;
use serde_json::json;

use crate::checkout::Shop;
use crate::helpers::{eventually, fresh_database, in_secs};
use crate::notify_push::{Push, apns_token, device, settle};

#[tokio::test]
async fn a_hold_ending_in_a_minute_reminds_its_buyer_only_while_still_held() {
    let push = Push::start().await;
    let shop =
        Shop::open_on(&fresh_database().await, &[Role::Api, Role::Workers, Role::Notifier], |c| push.configure(c))
            .await;
    // Two holds of 62 s: the reminder is due 2 s after the claim.
    let (sale, held) = shop.holders(2, json!({ "inventory": 2, "hold_seconds": 62 })).await;
    let (kept, bought) = (&held[0], &held[1]);
    device(&shop.app, &kept.0, "apns", &apns_token(0x21)).await;
    device(&shop.app, &bought.0, "apns", &apns_token(0x22)).await;
    let r = shop.checkout(&bought.0, &bought.1, "pm_card_visa").await;
    assert_eq!(r.body["status"], "paid", "{}", r.raw);
    // A refused attempt (sold out) decides nothing.
    let refused = shop.app.buyers(1).await.remove(0);
    device(&shop.app, &refused, "apns", &apns_token(0x23)).await;
    let r = shop.app.post(&format!("/v1/sales/{sale}/claims"), Some(&refused), json!({})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "sold_out"), "{}", r.raw);

    let apns = &push.apns;
    eventually("the reminder arrives", Duration::from_secs(20), || async {
        apns.deliveries().iter().any(|d| d.token == apns_token(0x21)).then_some(())
    })
    .await;
    settle(&shop.app.pool).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = push.apns.deliveries();
    let to = |n: u8| sent.iter().filter(|d| d.token == apns_token(n)).collect::<Vec<_>>();
    let reminder = to(0x21);
    assert_eq!(reminder.len(), 1, "{sent:?}");
    assert_eq!(reminder[0].payload["aps"]["alert"]["title"], "Your hold ends in a minute");
    assert_eq!(reminder[0].payload["kind"], "claim.expiring");
    assert_eq!(reminder[0].priority, "5", "a reminder is not critical");
    let bought_pushes = to(0x22);
    assert!(bought_pushes.iter().all(|d| d.payload["kind"] == "order.paid"), "no reminder of a bought hold: {sent:?}");
    assert!(to(0x23).is_empty(), "a refused claim reminds no one");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'claim.expiring'")
        .fetch_one(&shop.app.pool)
        .await
        .expect("count");
    assert_eq!(events, 1);
}

#[tokio::test]
async fn an_auction_ending_soon_reminds_bidders_and_watchers_for_its_current_end_only() {
    let push = Push::start().await;
    let shop =
        Shop::open_on(&fresh_database().await, &[Role::Api, Role::Workers, Role::Notifier], |c| push.configure(c))
            .await;
    let app = &shop.app;
    let product = app.product(&shop.merchant).await;
    // Ends in 62 s; any bid moves the end 5 s later (once).
    let r = app
        .post(
            "/v1/auctions",
            Some(&shop.merchant.key),
            json!({
                "product_id": product, "currency": "usd", "starting_price": 1000,
                "starts_at": in_secs(0), "ends_at": in_secs(62),
                "soft_close_seconds": 3600, "extension_seconds": 5, "max_extensions": 1,
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    let auction = r.body["id"].as_str().expect("an auction id").to_owned();
    let people = app.buyers(3).await;
    let (bidder, watcher, bystander) = (&people[0], &people[1], &people[2]);
    device(app, bidder, "apns", &apns_token(0x31)).await;
    device(app, watcher, "fcm", "fcm-watcher").await;
    device(app, bystander, "apns", &apns_token(0x33)).await;
    let w = app.post("/v1/watches", Some(watcher), json!({ "product_id": product })).await;
    assert_eq!(w.status, StatusCode::CREATED, "{}", w.raw);
    let b = app.post(&format!("/v1/auctions/{auction}/bids"), Some(bidder), json!({ "amount": 1000 })).await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.raw);
    let new_end: DateTime<Utc> = serde_json::from_value(b.body["ends_at"].clone()).expect("a time");

    let (apns, fcm) = (&push.apns, &push.fcm);
    eventually("both are reminded", Duration::from_secs(25), || async {
        let a = apns.deliveries().iter().any(|d| d.payload["kind"] == "auction.ending_soon");
        let f = fcm.messages().iter().any(|m| m.message["data"]["kind"] == "auction.ending_soon");
        (a && f).then_some(())
    })
    .await;
    settle(&app.pool).await;
    let reminders: Vec<(String,)> =
        sqlx::query_as("SELECT payload->>'ends_at' FROM events WHERE type = 'auction.ending_soon'")
            .fetch_all(&app.pool)
            .await
            .expect("events");
    assert_eq!(reminders.len(), 2, "one per bidder and watcher, for one end: {reminders:?}");
    for (ends_at,) in &reminders {
        let at: DateTime<Utc> = ends_at.parse().expect("a time");
        assert_eq!(at, new_end, "the reminder follows the extension");
    }
    let ending = |token: &str| {
        apns.deliveries().iter().filter(|d| d.token == token && d.payload["kind"] == "auction.ending_soon").count()
    };
    assert_eq!(ending(&apns_token(0x31)), 1);
    assert_eq!(ending(&apns_token(0x33)), 0, "neither bidder nor watcher");
    let messages = fcm.messages();
    let watched = messages.iter().find(|m| m.message["data"]["kind"] == "auction.ending_soon").expect("the watcher's");
    let body = watched.message["notification"]["body"].as_str().unwrap_or_default().to_owned();
    assert!(body.contains("10.00 USD"), "{body}");
}
