//! The checkout saga over real HTTP, a real Postgres and the Stripe stand-in
//! (reached by async-stripe over HTTP): happy path, double submit, lost
//! answers, declines, expired holds, the circuit breaker, refunds, webhooks and
//! auction-order payment.

use std::time::Duration;

use chrono::Utc;
use gavel::{Config, Role};
use gavel_domain::jobs::queues::PAYMENTS;
use gavel_standins::stripe::{Faults, StripeStandIn, WebhookTarget, signature};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Merchant, Order, Response, Sale, TestApp, client, eventually, fresh_database, send, uuid_of};

pub const WEBHOOK_SECRET: &str = "whsec_e2e_checkout";

/// A Gavel wired to its own Stripe stand-in.
pub struct Shop {
    pub app: TestApp,
    pub stripe: StripeStandIn,
    pub merchant: Merchant,
}

impl Shop {
    pub async fn open(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::open_on(&fresh_database().await, &[Role::Api, Role::Workers], tweak).await
    }

    pub async fn open_on(db: &str, roles: &[Role], tweak: impl FnOnce(&mut Config)) -> Self {
        let stripe = StripeStandIn::start(([127, 0, 0, 1], 0).into(), None).await.expect("stripe stand-in");
        let base = stripe.api_base();
        let app = TestApp::spawn_on(db, roles, |c| {
            c.payments.stripe_api_base = base;
            c.payments.stripe_webhook_secret = WEBHOOK_SECRET.into();
            tweak(c);
        })
        .await;
        let merchant = app.merchant().await;
        Self { app, stripe, merchant }
    }

    /// Stripe's events go to our webhook from now on.
    pub fn send_webhooks(&self) {
        let url = format!("{}/v1/stripe/webhook", self.app.base);
        self.stripe.set_webhook(Some(WebhookTarget { url, secret: WEBHOOK_SECRET.into() }));
    }

    /// An active sale and `n` buyers each holding one unit: (sale, [(token, claim)]).
    pub async fn holders(&self, n: usize, sale: Value) -> (String, Vec<(String, String)>) {
        let mut terms = json!({ "inventory": 10, "price": 1999 });
        if let (Some(t), Some(o)) = (terms.as_object_mut(), sale.as_object()) {
            t.extend(o.clone());
        }
        let sale = self.app.active_sale(&self.merchant, terms).await;
        let mut held = Vec::new();
        for token in self.app.buyers(n).await {
            let r = self.app.post(&format!("/v1/sales/{sale}/claims"), Some(&token), json!({})).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
            held.push((token, r.body["id"].as_str().expect("the answer names an id").to_owned()));
        }
        (sale, held)
    }

    pub async fn checkout(&self, token: &str, claim: &str, payment_method: &str) -> Response {
        let body = json!({ "payment_method": payment_method });
        self.app.post(&format!("/v1/claims/{claim}/checkout"), Some(token), body).await
    }

    /// The sale as its merchant sees it.
    pub async fn sale(&self, sale: &str) -> Sale {
        self.app.as_(&self.merchant.key).sale(sale).await.expect("the merchant reads its sale")
    }

    /// The order (as the merchant) once it has `status`.
    pub async fn wait_for_order(&self, order: &str, status: &str, within: Duration) -> Order {
        let merchant = self.app.as_(&self.merchant.key);
        let api = &merchant;
        eventually(&format!("order {order} becomes {status}"), within, move || async move {
            api.order(order).await.ok().filter(|o| o.status == status)
        })
        .await
    }

    /// How many events of `kind` the outbox holds.
    pub async fn events(&self, kind: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE type = $1")
            .bind(kind)
            .fetch_one(&self.app.pool)
            .await
            .expect("the test's SQL runs")
    }

    /// Moves the hold's expiry into the past, as if its time had run out.
    pub async fn run_out(&self, claim: &str) {
        sqlx::query("UPDATE claims SET expires_at = now() - interval '1 second' WHERE id = $1")
            .bind(uuid_of(claim))
            .execute(&self.app.pool)
            .await
            .expect("the test's SQL runs");
    }

    pub async fn claim_status(&self, claim: &str) -> String {
        sqlx::query_scalar("SELECT status FROM claims WHERE id = $1")
            .bind(uuid_of(claim))
            .fetch_one(&self.app.pool)
            .await
            .expect("the test's SQL runs")
    }
}

fn counts(sale: &Sale) -> (i64, i64, i64) {
    sale.counts()
}

#[tokio::test]
async fn a_held_claim_checks_out_to_a_paid_order_with_one_charge() {
    let shop = Shop::open(|_| {}).await;
    let (sale, held) = shop.holders(2, json!({})).await;
    let (token, claim) = &held[0];
    let r = shop.checkout(token, claim, "pm_card_visa").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(r.body["status"], "paid", "{}", r.raw);
    assert_eq!((r.body["amount"].as_i64(), r.body["currency"].as_str()), (Some(1999), Some("usd")));
    assert_eq!(r.body["claim_id"], claim.as_str());
    assert_eq!(r.body["payment"]["status"], "succeeded");
    assert_eq!(counts(&shop.sale(&sale).await), (8, 1, 1), "one sold, one still held");
    assert!(shop.app.invariant_holds(&sale).await);
    assert_eq!(shop.claim_status(claim).await, "checked_out");

    let intents = shop.stripe.payment_intents();
    assert_eq!(intents.len(), 1);
    assert_eq!((intents[0].amount, intents[0].status.as_str()), (1999, "succeeded"));
    assert_eq!(
        intents[0].metadata.get("gavel_payment_id"),
        r.body["payment"]["id"].as_str().map(str::to_owned).as_ref()
    );
    assert_eq!(shop.events("order.paid").await, 1);
    let metrics = shop.app.metrics().await;
    assert!(metrics.contains("gavel_payments_total{outcome=\"paid\"}"), "{metrics}");

    // The same checkout again returns the same order and charges nothing more.
    let again = shop.checkout(token, claim, "pm_card_visa").await;
    assert_eq!((again.status, &again.body["id"]), (StatusCode::OK, &r.body["id"]));
    assert_eq!(shop.stripe.payment_intents().len(), 1);

    // The merchant and the buyer see it; another buyer does not.
    let order = r.body["id"].as_str().expect("the answer names an id");
    let mine = shop.app.get(&format!("/v1/orders/{order}"), Some(token)).await;
    assert_eq!(mine.body["status"], "paid", "{}", mine.raw);
    let theirs = shop.app.get(&format!("/v1/orders/{order}"), Some(&held[1].0)).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let listed = shop.app.get("/v1/orders", Some(&shop.merchant.key)).await;
    assert_eq!(listed.body["data"].as_array().map(Vec::len), Some(1), "{}", listed.raw);
    let other_merchant = shop.app.merchant().await;
    let hidden = shop.app.get(&format!("/v1/orders/{order}"), Some(&other_merchant.key)).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_checkouts_of_one_claim_make_one_charge_and_one_order() {
    let shop = Shop::open(|_| {}).await;
    shop.stripe.set_faults(Faults { latency_ms: 300, ..Faults::default() });
    let (sale, held) = shop.holders(1, json!({})).await;
    let (token, claim) = held[0].clone();
    let answers = futures::future::join_all((0..20).map(|_| {
        let req = client()
            .post(format!("{}/v1/claims/{claim}/checkout", shop.app.base))
            .bearer_auth(&token)
            .json(&json!({ "payment_method": "pm_card_visa" }));
        send(req)
    }))
    .await;
    let mut orders = std::collections::HashSet::new();
    for a in &answers {
        match a.status {
            StatusCode::OK => {
                orders.insert(a.body["id"].as_str().expect("the answer names an id").to_owned());
            }
            StatusCode::CONFLICT => assert_eq!(a.code(), "checkout_in_progress", "{}", a.raw),
            other => panic!("unexpected {other}: {}", a.raw),
        }
    }
    assert_eq!(orders.len(), 1, "every 200 is the same order");
    assert_eq!(shop.stripe.payment_intents().len(), 1, "one charge");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE claim_id = $1")
        .bind(uuid_of(&claim))
        .fetch_one(&shop.app.pool)
        .await
        .expect("the test's SQL runs");
    assert_eq!(n, 1);
    let order = orders.into_iter().next().expect("one order");
    shop.wait_for_order(&order, "paid", Duration::from_secs(10)).await;
    assert_eq!(counts(&shop.sale(&sale).await), (9, 0, 1));
}

#[tokio::test]
async fn a_charge_whose_answer_was_lost_is_verified_and_settles_once() {
    let shop = Shop::open(|_| {}).await;
    let (sale, held) = shop.holders(1, json!({ "hold_seconds": 2 })).await;
    let (token, claim) = &held[0];
    shop.stripe.set_faults(Faults { lose_next: 1, ..Faults::default() });
    let r = shop.checkout(token, claim, "pm_card_visa").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(r.body["status"], "pending_verification", "a timeout is not a failure: {}", r.raw);
    assert_eq!(r.body["payment"]["status"], "unknown");
    assert_eq!(shop.claim_status(claim).await, "checking_out");

    // The hold runs out while the payment is being verified: it must not expire.
    shop.run_out(claim).await;
    shop.app.run_due_jobs(PAYMENTS).await;
    let order = r.body["id"].as_str().expect("the answer names an id");
    let paid = shop.wait_for_order(order, "paid", Duration::from_secs(15)).await;
    assert_eq!(paid.payment_status(), "succeeded");
    assert_eq!(shop.stripe.payment_intents().len(), 1, "exactly one charge");
    assert_eq!(counts(&shop.sale(&sale).await), (9, 0, 1));
    assert!(shop.app.invariant_holds(&sale).await);
    assert_eq!(shop.events("order.paid").await, 1);
}

#[tokio::test]
async fn a_declined_card_fails_the_order_and_returns_the_unit_to_stock() {
    let shop = Shop::open(|_| {}).await;
    let (sale, held) = shop.holders(1, json!({ "inventory": 1 })).await;
    let (token, claim) = &held[0];
    assert_eq!(counts(&shop.sale(&sale).await), (0, 1, 0));
    let r = shop.checkout(token, claim, "pm_card_chargeDeclined").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(r.body["status"], "payment_failed", "{}", r.raw);
    assert_eq!(r.body["payment"]["failure_code"], "generic_decline");
    assert_eq!(counts(&shop.sale(&sale).await), (1, 0, 0), "the unit is back");
    assert_eq!(shop.claim_status(claim).await, "released");
    assert_eq!(shop.events("order.payment_failed").await, 1);
    // Asking again shows the same failed order; the buyer may claim anew.
    let again = shop.checkout(token, claim, "pm_card_visa").await;
    assert_eq!(
        (again.body["id"].clone(), again.body["status"].clone()),
        (r.body["id"].clone(), json!("payment_failed"))
    );
    let reclaim = shop.app.post(&format!("/v1/sales/{sale}/claims"), Some(token), json!({})).await;
    assert_eq!(reclaim.status, StatusCode::CREATED, "{}", reclaim.raw);
    assert_eq!(shop.stripe.payment_intents().len(), 1);
}

#[tokio::test]
async fn an_expired_hold_is_410_claim_expired_and_charges_nothing() {
    let shop = Shop::open(|_| {}).await;
    let (sale, held) = shop.holders(1, json!({ "hold_seconds": 1 })).await;
    shop.run_out(&held[0].1).await;
    let r = shop.checkout(&held[0].0, &held[0].1, "pm_card_visa").await;
    assert_eq!((r.status, r.code()), (StatusCode::GONE, "claim_expired"), "{}", r.raw);
    assert!(r.is_problem());
    assert!(shop.stripe.payment_intents().is_empty());
    assert_eq!(counts(&shop.sale(&sale).await), (10, 0, 0));
}

#[tokio::test]
async fn checkout_refuses_bad_input_and_other_buyers_claims() {
    let shop = Shop::open(|_| {}).await;
    let (_, held) = shop.holders(2, json!({})).await;
    let (token, claim) = &held[0];
    let path = format!("/v1/claims/{claim}/checkout");
    for (body, code) in [
        (json!({}), "invalid_request"),
        (json!({ "payment_method": "" }), "invalid_request"),
        (json!({ "payment_method": "pm card" }), "invalid_request"),
        (json!({ "payment_method": 12 }), "invalid_request"),
        (json!({ "payment_method": "pm_card_visa", "extra": 1 }), "invalid_request"),
    ] {
        let r = shop.app.post(&path, Some(token), body.clone()).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, code), "{body}: {}", r.raw);
        assert!(r.is_problem());
    }
    let theirs = shop.checkout(&held[1].0, claim, "pm_card_visa").await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{}", theirs.raw);
    let bogus = shop.checkout(token, "clm_nope", "pm_card_visa").await;
    assert_eq!(bogus.status, StatusCode::NOT_FOUND);
    let anonymous = shop.app.post(&path, None, json!({ "payment_method": "pm_card_visa" })).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(shop.stripe.payment_intents().is_empty(), "nothing was charged");
    assert_eq!(shop.claim_status(claim).await, "held");
}

#[tokio::test]
async fn an_open_breaker_answers_503_at_once_and_keeps_the_hold() {
    let shop = Shop::open(|c| {
        c.payments.breaker_failures = 2;
        c.payments.breaker_cooldown_ms = 1500;
    })
    .await;
    let (sale, held) = shop.holders(3, json!({})).await;
    shop.stripe.set_faults(Faults { fail_next: 1000, ..Faults::default() });
    // Two calls fail with 500: outcome unknown, not failed.
    for (token, claim) in &held[..2] {
        let r = shop.checkout(token, claim, "pm_card_visa").await;
        assert_eq!(r.body["status"], "pending_verification", "{}", r.raw);
    }
    let started = std::time::Instant::now();
    let r = shop.checkout(&held[2].0, &held[2].1, "pm_card_visa").await;
    assert_eq!((r.status, r.code()), (StatusCode::SERVICE_UNAVAILABLE, "payments_unavailable"), "{}", r.raw);
    assert!(r.headers.get("retry-after").is_some());
    assert!(started.elapsed() < Duration::from_millis(500), "the breaker answers without calling Stripe");
    assert_eq!(shop.claim_status(&held[2].1).await, "held", "the hold is kept");

    // Stripe recovers: after the cooldown the held claim checks out, and the
    // two unknown payments are verified (Stripe never saw them: sent again).
    shop.stripe.set_faults(Faults::default());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let r = shop.checkout(&held[2].0, &held[2].1, "pm_card_visa").await;
    assert_eq!(r.body["status"], "paid", "{}", r.raw);
    let orders: Vec<String> = sqlx::query_scalar("SELECT 'ord_' || replace(id::text, '-', '') FROM orders")
        .fetch_all(&shop.app.pool)
        .await
        .expect("the test's SQL runs");
    for order in &orders {
        shop.wait_for_order(order, "paid", Duration::from_secs(20)).await;
    }
    assert_eq!(shop.stripe.payment_intents().len(), 3, "one charge per claim");
    assert_eq!(counts(&shop.sale(&sale).await), (7, 0, 3));
}

#[tokio::test]
async fn a_payment_that_succeeds_after_its_sale_was_cancelled_is_refunded() {
    let shop = Shop::open(|_| {}).await;
    let (sale, held) = shop.holders(1, json!({})).await;
    let (token, claim) = &held[0];
    shop.stripe.set_faults(Faults { lose_next: 1, ..Faults::default() });
    let r = shop.checkout(token, claim, "pm_card_visa").await;
    assert_eq!(r.body["status"], "pending_verification", "{}", r.raw);
    // Keep verification from getting through until the sale is cancelled.
    shop.stripe.set_faults(Faults { fail_next: 1000, ..Faults::default() });
    let c = shop.app.post(&format!("/v1/sales/{sale}/cancel"), Some(&shop.merchant.key), json!({})).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.raw);
    shop.stripe.set_faults(Faults::default());

    let order = r.body["id"].as_str().expect("the answer names an id");
    let refunded = shop.wait_for_order(order, "refunded", Duration::from_secs(20)).await;
    assert!(matches!(refunded.payment_status(), "succeeded" | "refunded"), "{refunded:?}");
    let stripe = &shop.stripe;
    eventually("a refund reaches Stripe", Duration::from_secs(10), move || async move {
        (!stripe.refunds().is_empty()).then_some(())
    })
    .await;
    // Every payment job has run: no second refund is on its way.
    shop.app.run_due_jobs(PAYMENTS).await;
    let refunds = shop.stripe.refunds();
    assert_eq!((refunds.len(), refunds[0].amount), (1, 1999), "refunded once, in full");
    let recorded: (String, Option<String>) = sqlx::query_as("SELECT status, provider_id FROM refunds")
        .fetch_one(&shop.app.pool)
        .await
        .expect("the test's SQL runs");
    assert_eq!(recorded, ("succeeded".to_owned(), Some(refunds[0].id.clone())));
    let order = shop.app.get(&format!("/v1/orders/{order}"), Some(&shop.merchant.key)).await;
    assert_eq!(
        (order.body["status"].as_str(), order.body["payment"]["status"].as_str()),
        (Some("refunded"), Some("refunded"))
    );
    assert_eq!(shop.events("order.refunded").await, 1);
    assert_eq!(counts(&shop.sale(&sale).await), (10, 0, 0), "nothing sold on a cancelled sale");
    assert!(shop.app.invariant_holds(&sale).await);
}

/// A Stripe event as the stand-in would send it, signed at `at`.
pub fn signed_event(id: &str, kind: &str, object: Value, at: i64, secret: &str) -> (String, String) {
    let event = json!({
        "id": id, "object": "event", "account": null, "api_version": gavel_standins::stripe::API_VERSION,
        "context": null, "created": at, "data": { "object": object, "previous_attributes": null },
        "livemode": false, "pending_webhooks": 1, "request": { "id": null, "idempotency_key": null }, "type": kind,
    })
    .to_string();
    let sig = signature(secret, at, &event);
    (event, sig)
}

pub async fn deliver(shop: &Shop, payload: &str, sig: &str) -> Response {
    let req = client()
        .post(format!("{}/v1/stripe/webhook", shop.app.base))
        .header("content-type", "application/json")
        .header("stripe-signature", sig)
        .body(payload.to_owned());
    send(req).await
}

#[tokio::test]
async fn webhooks_are_verified_stored_once_and_settle_the_order_they_name() {
    let shop = Shop::open(|_| {}).await;
    let (sale, held) = shop.holders(1, json!({})).await;
    let (token, claim) = &held[0];
    // The answer to the charge is lost; Stripe's webhook tells us first.
    shop.send_webhooks();
    shop.stripe.set_faults(Faults { lose_next: 1, ..Faults::default() });
    let r = shop.checkout(token, claim, "pm_card_visa").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let order = r.body["id"].as_str().expect("the answer names an id");
    shop.wait_for_order(order, "paid", Duration::from_secs(10)).await;
    assert_eq!(r.body["status"], "paid", "the webhook settled it before the request's answer: {}", r.raw);
    // Every payment job has run (a verification, were one queued).
    shop.app.run_due_jobs(PAYMENTS).await;
    assert_eq!(shop.events("order.paid").await, 1, "settled once");
    assert_eq!(counts(&shop.sale(&sale).await), (9, 0, 1));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM stripe_events WHERE type = 'payment_intent.succeeded'")
        .fetch_one(&shop.app.pool)
        .await
        .expect("the test's SQL runs");
    assert_eq!(stored, 1);

    // A redelivery and an out-of-order failure of the same intent change nothing.
    let pi = shop.stripe.payment_intents().remove(0);
    let now = Utc::now().timestamp();
    let object = pi.to_json();
    let (first, sig) = signed_event("evt_dup_1", "payment_intent.succeeded", object.clone(), now, WEBHOOK_SECRET);
    assert_eq!(deliver(&shop, &first, &sig).await.body["duplicate"], false);
    let again = deliver(&shop, &first, &sig).await;
    assert_eq!((again.status, again.body["duplicate"].clone()), (StatusCode::OK, json!(true)));
    let mut failed = pi.to_json();
    failed["status"] = json!("requires_payment_method");
    let (late, sig) = signed_event("evt_late_fail", "payment_intent.payment_failed", failed, now, WEBHOOK_SECRET);
    assert_eq!(deliver(&shop, &late, &sig).await.status, StatusCode::OK);
    assert_eq!(shop.wait_for_order(order, "paid", Duration::from_secs(1)).await.payment_status(), "succeeded");
    assert_eq!(shop.events("order.paid").await, 1);

    // Wrong secret, stale timestamp, no signature: 400 and nothing stored.
    let (forged, bad_sig) = signed_event("evt_forged", "payment_intent.succeeded", object.clone(), now, "whsec_wrong");
    let r = deliver(&shop, &forged, &bad_sig).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_signature"), "{}", r.raw);
    let (stale, old_sig) = signed_event("evt_stale", "payment_intent.succeeded", object, now - 600, WEBHOOK_SECRET);
    assert_eq!(deliver(&shop, &stale, &old_sig).await.status, StatusCode::BAD_REQUEST);
    let unsigned = send(client().post(format!("{}/v1/stripe/webhook", shop.app.base)).body(first.clone())).await;
    assert_eq!((unsigned.status, unsigned.code()), (StatusCode::BAD_REQUEST, "invalid_signature"));
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM stripe_events WHERE id LIKE 'evt_%' ORDER BY id")
        .fetch_all(&shop.app.pool)
        .await
        .expect("the test's SQL runs");
    assert!(!ids.iter().any(|id| id == "evt_forged" || id == "evt_stale"), "{ids:?}");
}

#[tokio::test]
async fn an_order_awaiting_payment_is_paid_through_the_same_saga_within_its_window() {
    let shop = Shop::open(|_| {}).await;
    let tokens = shop.app.buyers(1).await;
    let me = shop.app.get("/v1/orders", Some(&tokens[0])).await;
    assert_eq!(me.body["data"], json!([]), "{}", me.raw);
    let buyer: gavel_domain::ids::BuyerId =
        sqlx::query_scalar("SELECT id FROM buyers").fetch_one(&shop.app.pool).await.expect("the test's SQL runs");
    let merchant: gavel_domain::ids::MerchantId =
        sqlx::query_scalar("SELECT id FROM merchants").fetch_one(&shop.app.pool).await.expect("the test's SQL runs");
    let usd: gavel_domain::money::Currency = "usd".parse().expect("usd is a currency");
    let new_order = |due: chrono::DateTime<Utc>| gavel_domain::orders::AwaitingPayment {
        merchant,
        buyer,
        auction: gavel_domain::ids::AuctionId::new(),
        amount: gavel_domain::money::Money::new(12_500, usd),
        due_at: due,
    };
    let mut conn = shop.app.pool.acquire().await.expect("the test's SQL runs");
    let open =
        gavel_domain::orders::insert_awaiting_payment(&mut conn, &new_order(Utc::now() + chrono::Duration::hours(1)))
            .await
            .expect("the task completes");
    let lapsed =
        gavel_domain::orders::insert_awaiting_payment(&mut conn, &new_order(Utc::now() - chrono::Duration::seconds(1)))
            .await
            .expect("the task completes");
    drop(conn);
    let pay = |order: String, pm: &'static str| {
        let token = tokens[0].clone();
        let app = &shop.app;
        async move { app.post(&format!("/v1/orders/{order}/pay"), Some(&token), json!({ "payment_method": pm })).await }
    };
    let declined = pay(open.id.to_string(), "pm_card_chargeDeclined").await;
    assert_eq!(
        (declined.status, declined.body["status"].clone()),
        (StatusCode::OK, json!("payment_failed")),
        "{}",
        declined.raw
    );
    let paid = pay(open.id.to_string(), "pm_card_visa").await;
    assert_eq!(paid.body["status"], "paid", "{}", paid.raw);
    assert_eq!(paid.body["payment"]["attempt"], 2);
    // Paid is final: paying again is the documented 409, and charges nothing.
    let again = pay(open.id.to_string(), "pm_card_visa").await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "order_not_payable"), "{}", again.raw);
    assert_eq!(shop.stripe.payment_intents().len(), 2, "one intent per attempt");
    let late = pay(lapsed.id.to_string(), "pm_card_visa").await;
    assert_eq!((late.status, late.code()), (StatusCode::GONE, "payment_window_closed"), "{}", late.raw);
    assert_eq!(shop.stripe.payment_intents().len(), 2);
}

#[tokio::test]
async fn the_gateway_never_takes_a_key_conflict_or_a_server_error_for_a_decline() {
    use gavel_domain::money::Money;
    use gavel_domain::payments::{Payment, PaymentMethod, PaymentStatus};
    use gavel_workflows::stripe::{ChargeFor, Gateway, GatewayConfig, Outcome};
    let stripe = StripeStandIn::start(([127, 0, 0, 1], 0).into(), None).await.expect("the Stripe stand-in starts");
    let gateway = Gateway::new(&GatewayConfig {
        api_base: stripe.api_base(),
        secret_key: "sk_test_gateway".into(),
        timeout: Duration::from_secs(2),
        breaker_failures: 100,
        breaker_cooldown: Duration::from_secs(1),
    })
    .expect("a gateway to the stand-in");
    let payment = |amount: i64, method: &str| Payment {
        id: gavel_domain::ids::PaymentId::new(),
        order_id: gavel_domain::ids::OrderId::new(),
        attempt: 1,
        idempotency_key: "gavel:checkout:clm_same".into(),
        payment_method: PaymentMethod::parse(method).expect("a valid test payment method"),
        amount: Money::new(amount, "usd".parse().expect("usd is supported")),
        status: PaymentStatus::Processing,
        provider_id: None,
        failure_code: None,
        failure_message: None,
        verify_attempts: 0,
        created_at: Utc::now(),
        settled_at: None,
    };
    let first = payment(1999, "pm_card_visa");
    let merchant = gavel_domain::ids::MerchantId::new();
    let paid = gateway.charge(ChargeFor { payment: &first, order: first.order_id, merchant }).await;
    assert!(matches!(paid, Outcome::Succeeded { .. }), "{paid:?}");
    // The same key with other parameters: Stripe refuses, but the key's first
    // request charged — that is not a failure of this one.
    let other = payment(2999, "pm_card_visa");
    let conflict = gateway.charge(ChargeFor { payment: &other, order: other.order_id, merchant }).await;
    assert!(matches!(conflict, Outcome::Unknown { .. }), "{conflict:?}");
    stripe.set_faults(Faults { fail_next: 1, ..Faults::default() });
    let mut fresh = payment(1999, "pm_card_visa");
    fresh.idempotency_key = "gavel:checkout:clm_other".into();
    let error = gateway.charge(ChargeFor { payment: &fresh, order: fresh.order_id, merchant }).await;
    assert!(matches!(error, Outcome::Unknown { .. }), "{error:?}");
    let mut declined = payment(1999, "pm_card_chargeDeclined");
    declined.idempotency_key = "gavel:checkout:clm_declined".into();
    let failed = gateway.charge(ChargeFor { payment: &declined, order: declined.order_id, merchant }).await;
    assert!(matches!(&failed, Outcome::Failed { code, .. } if code == "generic_decline"), "{failed:?}");
}

#[tokio::test]
async fn a_checkout_whose_jobs_were_lost_is_resumed_by_the_resume_tick() {
    // An API without workers: no job of the saga runs until we say so.
    let db = fresh_database().await;
    let shop = Shop::open_on(&db, &[Role::Api], |_| {}).await;
    // No start job runs either: the first claim starts the sale.
    let sale = shop.app.sale(&shop.merchant, json!({})).await.id;
    let token = shop.app.buyers(1).await.remove(0);
    let claim = shop.app.post(&format!("/v1/sales/{sale}/claims"), Some(&token), json!({})).await;
    assert_eq!(claim.status, StatusCode::CREATED, "{}", claim.raw);
    shop.stripe.set_faults(Faults { fail_next: 1000, ..Faults::default() });
    let r = shop.checkout(&token, claim.body["id"].as_str().expect("the answer names an id"), "pm_card_visa").await;
    assert_eq!(r.body["status"], "pending_verification", "{}", r.raw);
    shop.stripe.set_faults(Faults::default());
    // Its jobs are lost (as if they had run out of retries) and it has not
    // moved for an hour.
    sqlx::query("DELETE FROM apalis.jobs WHERE job_type = 'gavel.payments.v1'")
        .execute(&shop.app.pool)
        .await
        .expect("the test's SQL runs");
    sqlx::query("UPDATE payments SET updated_at = now() - interval '1 hour'")
        .execute(&shop.app.pool)
        .await
        .expect("the test's SQL runs");
    // A workers process runs its resume tick at start (then every few
    // seconds): it finds the stalled attempt and queues it again.
    let stripe_base = shop.stripe.api_base();
    let _workers = TestApp::spawn_on(&db, &[Role::Workers], |c| c.payments.stripe_api_base = stripe_base).await;
    let order = r.body["id"].as_str().expect("the answer names an id");
    shop.wait_for_order(order, "paid", Duration::from_secs(15)).await;
    assert_eq!(shop.stripe.payment_intents().len(), 1, "Stripe never saw the first call: sent once now");
    assert_eq!(counts(&shop.sale(&sale).await), (9, 0, 1));
    let resumed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM apalis.jobs WHERE job_type = 'gavel.payments.v1' AND idempotency_key LIKE 'resume:%'",
    )
    .fetch_one(&shop.app.pool)
    .await
    .expect("the test's SQL runs");
    assert!(resumed >= 1, "resumed by the resume tick");
}
