//! A paid order is final: `POST /v1/orders/{id}/pay` on it answers the
//! documented `409 order_not_payable` (with `order_status`) and charges
//! nothing, while the request that paid it, replayed with its own
//! Idempotency-Key, still answers as it first did.

use chrono::Utc;
use gavel_domain::ids::{AuctionId, BuyerId, MerchantId};
use gavel_domain::money::{Currency, Money};
use gavel_domain::orders::{self, AwaitingPayment};
use reqwest::StatusCode;
use serde_json::json;

use crate::checkout::Shop;
use crate::helpers::{Response, client, send};

/// Pays `order` as `token`, with an Idempotency-Key when given.
async fn pay(shop: &Shop, token: &str, order: &str, key: Option<&str>) -> Response {
    let mut req = client()
        .post(format!("{}/v1/orders/{order}/pay", shop.app.base))
        .bearer_auth(token)
        .json(&json!({ "payment_method": "pm_card_visa" }));
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    send(req).await
}

/// An auction winner's order awaiting payment for an hour, for the only buyer.
async fn awaiting_order(shop: &Shop) -> String {
    let pool = &shop.app.pool;
    let buyer: BuyerId = sqlx::query_scalar("SELECT id FROM buyers").fetch_one(pool).await.expect("the buyer");
    let merchant: MerchantId =
        sqlx::query_scalar("SELECT id FROM merchants").fetch_one(pool).await.expect("the merchant");
    let usd: Currency = "usd".parse().expect("usd is supported");
    let new = AwaitingPayment {
        merchant,
        buyer,
        auction: AuctionId::new(),
        amount: Money::new(12_500, usd),
        due_at: Utc::now() + chrono::Duration::hours(1),
    };
    let mut conn = pool.acquire().await.expect("a connection");
    orders::insert_awaiting_payment(&mut conn, &new).await.expect("the order is created").id.to_string()
}

fn assert_not_payable(r: &Response, status: &str) {
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "order_not_payable"), "{}", r.raw);
    assert!(r.is_problem(), "a problem+json whose `status` is the HTTP status: {}", r.raw);
    assert_eq!(r.body["order_status"], status, "{}", r.raw);
}

#[tokio::test]
async fn paying_a_paid_order_is_409_order_not_payable_and_the_paying_request_replays_its_first_answer() {
    let shop = Shop::open(|_| {}).await;
    let token = shop.app.buyers(1).await.remove(0);
    let order = awaiting_order(&shop).await;

    let first = pay(&shop, &token, &order, Some("pay-once")).await;
    assert_eq!((first.status, first.body["status"].clone()), (StatusCode::OK, json!("paid")), "{}", first.raw);
    assert_eq!(first.body["payment"]["attempt"], 1, "{}", first.raw);

    let other_key = pay(&shop, &token, &order, Some("pay-twice")).await;
    assert_not_payable(&other_key, "paid");
    let no_key = pay(&shop, &token, &order, None).await;
    assert_not_payable(&no_key, "paid");

    let replay = pay(&shop, &token, &order, Some("pay-once")).await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.raw);
    assert_eq!(replay.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(replay.body, first.body, "the stored first answer, not the 409");

    assert_eq!(shop.stripe.payment_intents().len(), 1, "one charge, however often it is paid");
    let seen = shop.app.get(&format!("/v1/orders/{order}"), Some(&token)).await;
    assert_eq!((seen.body["status"].clone(), seen.body["payment"]["attempt"].clone()), (json!("paid"), json!(1)));
}

#[tokio::test]
async fn a_sales_order_paid_through_its_claim_is_not_payable_again() {
    let shop = Shop::open(|_| {}).await;
    let (_, held) = shop.holders(1, json!({})).await;
    let (token, claim) = &held[0];
    let paid = shop.checkout(token, claim, "pm_card_visa").await;
    assert_eq!(paid.body["status"], "paid", "{}", paid.raw);
    let order = paid.body["id"].as_str().unwrap_or_default().to_owned();

    assert_not_payable(&pay(&shop, token, &order, None).await, "paid");
    assert_eq!(shop.stripe.payment_intents().len(), 1);
}
