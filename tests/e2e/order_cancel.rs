//! A merchant cancels an auction's unpaid order (`POST /v1/orders/{id}/cancel`):
//! `cancelled` once, `order.cancelled` to the merchant's webhook, its lapse
//! then does nothing, and the runner-up may be offered the lot. Orders that
//! are not an auction's, are settled, or are not the merchant's are refused.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::auction_close::{
    active_auction, bid, buyer, deadline_passes, end_in, ended, events_of, pay, run_twice, second_chance,
};
use crate::checkout::Shop;
use crate::helpers::{Response, TestApp, client, send};
use crate::webhooks::{body_of, endpoint, problem, received_ok, receiver};

async fn cancel(app: &TestApp, key: &str, order: &str, idempotency_key: Option<&str>) -> Response {
    let mut req = client().post(format!("{}/v1/orders/{order}/cancel", app.base)).bearer_auth(key);
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    send(req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_cancels_an_unpaid_auction_order_once_and_offers_the_lot_to_the_runner_up() {
    let shop = Shop::open(|_| {}).await;
    let app = &shop.app;
    let hooks = receiver().await;
    endpoint(app, &shop.merchant, &hooks.url("/hooks"), json!(["order.cancelled"])).await;
    let (a, a_token) = buyer(app).await;
    let (b, b_token) = buyer(app).await;
    let auction = active_auction(&shop, json!({})).await;
    assert!(bid(&app.pool, &auction, a, 1000, Some(5000)).await.is_accepted());
    assert!(bid(&app.pool, &auction, b, 2000, Some(3000)).await.is_accepted());
    end_in(&app.pool, &auction, 0.5).await;
    let body = ended(app, &auction).await;
    let order = body["result"]["order_id"].as_str().expect("the winner's order").to_owned();

    // Not before the winner's order is settled one way or the other.
    let early = second_chance(app, &shop.merchant.key, None, &auction).await;
    problem(&early, StatusCode::CONFLICT, "second_chance_unavailable");
    // Only its merchant may cancel it; the buyer cannot, another merchant does not see it.
    let theirs = cancel(app, &app.merchant().await.key, &order, None).await;
    problem(&theirs, StatusCode::NOT_FOUND, "not_found");
    let by_buyer = cancel(app, &a_token, &order, None).await;
    assert!(by_buyer.status.is_client_error() && by_buyer.is_problem(), "{}", by_buyer.raw);

    let first = cancel(app, &shop.merchant.key, &order, Some("cancel-1")).await;
    assert_eq!((first.status, first.body["status"].clone()), (StatusCode::OK, json!("cancelled")), "{}", first.raw);
    let replay = cancel(app, &shop.merchant.key, &order, Some("cancel-1")).await;
    assert_eq!((replay.status, replay.body.clone()), (StatusCode::OK, first.body.clone()), "the key's answer");
    let again = cancel(app, &shop.merchant.key, &order, None).await;
    assert_eq!((again.status, again.body["status"].clone()), (StatusCode::OK, json!("cancelled")), "{}", again.raw);
    assert_eq!(events_of(&app.pool, "order.cancelled", &order).await, 1, "cancelled once");

    // The merchant's webhook hears of it.
    let got = received_ok(&hooks, 1, Duration::from_secs(20)).await;
    let sent = body_of(&got[0]);
    assert_eq!((sent["type"].clone(), sent["data"]["order_id"].clone()), (json!("order.cancelled"), json!(order)));

    // The buyer can no longer pay; the deadline's lapse changes nothing.
    let late = pay(app, &a_token, &order).await;
    problem(&late, StatusCode::CONFLICT, "order_not_payable");
    assert_eq!(late.body["order_status"], "cancelled");
    deadline_passes(&app.pool, &order).await;
    run_twice(&app.pool, &order, "lapse").await;
    assert_eq!(app.get(&format!("/v1/orders/{order}"), Some(&a_token)).await.body["status"], "cancelled");
    assert_eq!(events_of(&app.pool, "order.lapsed", &order).await, 0, "a cancelled order does not lapse");

    // The lot goes to the runner-up, who pays; a paid order cannot be cancelled.
    let offer = second_chance(app, &shop.merchant.key, None, &auction).await;
    assert_eq!((offer.status, offer.body["amount"].clone()), (StatusCode::CREATED, json!(3000)), "{}", offer.raw);
    let second = offer.body["id"].as_str().expect("an order").to_owned();
    let paid = pay(app, &b_token, &second).await;
    assert_eq!((paid.status, paid.body["status"].clone()), (StatusCode::OK, json!("paid")), "{}", paid.raw);
    let refused = cancel(app, &shop.merchant.key, &second, None).await;
    problem(&refused, StatusCode::CONFLICT, "order_not_cancellable");
    assert_eq!(refused.body["order_status"], "paid");
    assert_eq!(events_of(&app.pool, "order.cancelled", &second).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sales_order_and_bad_ids_are_refused_and_change_nothing() {
    let shop = Shop::open(|_| {}).await;
    let app = &shop.app;
    let (_, holders) = shop.holders(1, json!({})).await;
    let (token, claim) = &holders[0];
    let paid = send(
        client()
            .post(format!("{}/v1/claims/{claim}/checkout", app.base))
            .bearer_auth(token)
            .json(&json!({ "payment_method": "pm_card_visa" })),
    )
    .await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.raw);
    let order = paid.body["id"].as_str().expect("an order").to_owned();
    let refused = cancel(app, &shop.merchant.key, &order, None).await;
    problem(&refused, StatusCode::CONFLICT, "order_not_cancellable");
    let status = app.get(&format!("/v1/orders/{order}"), Some(&shop.merchant.key)).await.body["status"].clone();
    assert_eq!(status, paid.body["status"], "unchanged");
    let unknown = cancel(app, &shop.merchant.key, "ord_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", None).await;
    problem(&unknown, StatusCode::NOT_FOUND, "not_found");
    let garbage = cancel(app, &shop.merchant.key, "not-an-order", None).await;
    assert!(garbage.status.is_client_error() && garbage.is_problem(), "{}", garbage.raw);
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'order.cancelled'")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(events, 0);
}
