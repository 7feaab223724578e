//! Stripe's webhook as an attacker holding the signing secret, and as Stripe
//! itself, would use it: a signed event settles a payment only if it matches
//! the attempt and Stripe confirms it; every signed event, readable or not, is
//! acknowledged and recorded with what became of it; old events are pruned.

use chrono::Utc;
use gavel::Role;
use gavel_standins::stripe::{Faults, signature};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::checkout::{Shop, WEBHOOK_SECRET, deliver, signed_event};
use crate::helpers::{TestApp, fresh_database};

/// A shop without workers (nothing verifies a payment behind the test's
/// back), and a checkout whose answer from Stripe was lost: the order is
/// `pending_verification`, its attempt open. (shop, sale, claim, order)
async fn lost_checkout(payment_method: &str) -> (Shop, String, String, String) {
    let shop = Shop::open_on(&fresh_database().await, &[Role::Api], |_| {}).await;
    // No start job runs without workers: the first claim starts the sale.
    let sale = shop.app.sale(&shop.merchant, json!({})).await.id;
    let token = shop.app.buyers(1).await.remove(0);
    let claim = shop.app.post(&format!("/v1/sales/{sale}/claims"), Some(&token), json!({})).await;
    assert_eq!(claim.status, StatusCode::CREATED, "{}", claim.raw);
    let claim = claim.body["id"].as_str().expect("the answer names an id").to_owned();
    shop.stripe.set_faults(Faults { lose_next: 1, ..Faults::default() });
    let r = shop.checkout(&token, &claim, payment_method).await;
    assert_eq!(r.body["status"], "pending_verification", "{}", r.raw);
    let order = r.body["id"].as_str().expect("the answer names an id").to_owned();
    (shop, sale, claim, order)
}

/// Signs and delivers `object` as an event of `kind`; the answer's `outcome`.
async fn send_event(shop: &Shop, id: &str, kind: &str, object: Value) -> String {
    let (payload, sig) = signed_event(id, kind, object, Utc::now().timestamp(), WEBHOOK_SECRET);
    let r = deliver(shop, &payload, &sig).await;
    assert_eq!(r.status, StatusCode::OK, "{id}: {}", r.raw);
    r.body["outcome"].as_str().unwrap_or_default().to_owned()
}

async fn stored(shop: &Shop, id: &str) -> (String, Option<String>, Option<String>) {
    sqlx::query_as("SELECT type, outcome, reason FROM stripe_events WHERE id = $1")
        .bind(id)
        .fetch_one(&shop.app.pool)
        .await
        .expect("the event is stored")
}

/// The order, its claim and its sale have not moved from the open checkout.
async fn still_open(shop: &Shop, sale: &str, claim: &str, order: &str) {
    let r = shop.app.get(&format!("/v1/orders/{order}"), Some(&shop.merchant.key)).await;
    assert_eq!(r.body["status"], "pending_verification", "{}", r.raw);
    assert_eq!(shop.claim_status(claim).await, "checking_out");
    assert_eq!(shop.sale(sale).await.sold, 0, "no unit sold");
    assert_eq!(shop.events("order.paid").await, 0);
}

fn refused_metric(metrics: &str, reason: &str) -> bool {
    metrics.contains(&format!("gavel_stripe_events_refused_total{{reason=\"{reason}\"}}"))
}

#[tokio::test]
async fn signed_but_forged_successes_are_refused_and_only_what_stripe_confirms_settles() {
    let (shop, sale, claim, order) = lost_checkout("pm_card_visa").await;
    let pi = shop.stripe.payment_intents().remove(0);
    assert_eq!((pi.amount, pi.status.as_str()), (1999, "succeeded"), "Stripe charged; we never heard");

    // Amount 1 against 1999, for the real PaymentIntent.
    let mut cheap = pi.to_json();
    cheap["amount"] = json!(1);
    cheap["amount_received"] = json!(1);
    let mut outcomes = vec![send_event(&shop, "evt_forged_amount", "payment_intent.succeeded", cheap.clone()).await];
    // Another currency.
    let mut euros = pi.to_json();
    euros["currency"] = json!("eur");
    outcomes.push(send_event(&shop, "evt_forged_currency", "payment_intent.succeeded", euros).await);
    // A PaymentIntent Stripe has never seen, naming our attempt, right amount.
    let mut invented = pi.to_json();
    invented["id"] = json!("pi_inventedByAnAttacker0001");
    outcomes.push(send_event(&shop, "evt_forged_id", "payment_intent.succeeded", invented).await);
    // An id no Stripe id looks like is refused without going into a URL.
    let mut crooked = pi.to_json();
    crooked["id"] = json!("pi_1/../../refunds");
    outcomes.push(send_event(&shop, "evt_crooked_id", "payment_intent.succeeded", crooked).await);
    // A failure must match too (it would release the unit).
    outcomes.push(send_event(&shop, "evt_forged_failure", "payment_intent.payment_failed", cheap).await);
    still_open(&shop, &sale, &claim, &order).await;
    assert_eq!(outcomes, vec!["refused"; 5]);
    still_open(&shop, &sale, &claim, &order).await;
    for (id, reason) in [
        ("evt_forged_amount", "amount_mismatch"),
        ("evt_forged_currency", "currency_mismatch"),
        ("evt_forged_id", "unknown_payment_intent"),
        ("evt_crooked_id", "unknown_payment_intent"),
        ("evt_forged_failure", "amount_mismatch"),
    ] {
        let (_, outcome, why) = stored(&shop, id).await;
        assert_eq!((outcome.as_deref(), why.as_deref()), (Some("refused"), Some(reason)), "{id}");
    }
    let metrics = shop.app.metrics().await;
    for reason in ["amount_mismatch", "currency_mismatch", "unknown_payment_intent"] {
        assert!(refused_metric(&metrics, reason), "{reason}: {metrics}");
    }

    // The genuine event while Stripe cannot be asked: nothing settles from
    // the event alone; the attempt is left to verification.
    shop.stripe.set_faults(Faults { fail_next: 1, ..Faults::default() });
    assert_eq!(send_event(&shop, "evt_unconfirmed", "payment_intent.succeeded", pi.to_json()).await, "deferred");
    still_open(&shop, &sale, &claim, &order).await;

    // The genuine event, Stripe confirming it: paid, once.
    assert_eq!(send_event(&shop, "evt_genuine", "payment_intent.succeeded", pi.to_json()).await, "applied");
    let r = shop.app.get(&format!("/v1/orders/{order}"), Some(&shop.merchant.key)).await;
    assert_eq!((r.body["status"].as_str(), r.body["payment"]["status"].as_str()), (Some("paid"), Some("succeeded")));
    assert_eq!(shop.sale(&sale).await.sold, 1);
    assert_eq!(shop.claim_status(&claim).await, "checked_out");
    assert!(shop.app.invariant_holds(&sale).await);
    // Now that the attempt knows its PaymentIntent, a late forgery is ignored.
    let mut late = pi.to_json();
    late["amount"] = json!(1);
    assert_eq!(send_event(&shop, "evt_late_forgery", "payment_intent.succeeded", late).await, "ignored");
    assert_eq!(shop.events("order.paid").await, 1);
}

#[tokio::test]
async fn a_forged_success_for_a_declined_card_is_refused_on_stripes_word() {
    let (shop, sale, claim, order) = lost_checkout("pm_card_chargeDeclined").await;
    let pi = shop.stripe.payment_intents().remove(0);
    assert_eq!(pi.status, "requires_payment_method", "declined at Stripe");
    // Everything in the event matches the attempt; only Stripe knows better.
    let mut forged = pi.to_json();
    forged["status"] = json!("succeeded");
    forged["amount_received"] = json!(1999);
    forged["last_payment_error"] = Value::Null;
    let outcome = send_event(&shop, "evt_forged_status", "payment_intent.succeeded", forged).await;
    still_open(&shop, &sale, &claim, &order).await;
    assert_eq!(outcome, "refused");
    let (_, outcome, reason) = stored(&shop, "evt_forged_status").await;
    assert_eq!((outcome.as_deref(), reason.as_deref()), (Some("refused"), Some("status_mismatch")));
    let metrics = shop.app.metrics().await;
    assert!(refused_metric(&metrics, "status_mismatch"), "{metrics}");

    // Stripe's own failure event settles the decline: the unit goes back.
    assert_eq!(send_event(&shop, "evt_real_failure", "payment_intent.payment_failed", pi.to_json()).await, "applied");
    let r = shop.app.get(&format!("/v1/orders/{order}"), Some(&shop.merchant.key)).await;
    assert_eq!(r.body["status"], "payment_failed", "{}", r.raw);
    let after = shop.sale(&sale).await;
    assert_eq!((after.sold, after.held), (0, 0));
}

#[tokio::test]
async fn signed_events_of_unknown_types_or_unreadable_bodies_are_acknowledged_and_stored() {
    let shop = Shop::open(|_| {}).await;
    let now = Utc::now().timestamp();

    // Known types whose objects async-stripe cannot read.
    let charge = json!({ "id": "ch_1", "object": "charge" });
    assert_eq!(send_event(&shop, "evt_bad_charge", "charge.refunded", charge).await, "ignored");
    let broken = json!({ "id": "pi_1", "object": "payment_intent", "amount": "lots" });
    assert_eq!(send_event(&shop, "evt_bad_intent", "payment_intent.succeeded", broken).await, "ignored");
    for (id, kind) in [("evt_bad_charge", "charge.refunded"), ("evt_bad_intent", "payment_intent.succeeded")] {
        let row = stored(&shop, id).await;
        assert_eq!(row, (kind.to_owned(), Some("ignored".to_owned()), Some("unparseable".to_owned())), "{id}");
    }

    // A type Gavel does not handle (nor async-stripe know).
    let object = json!({ "id": "thing_1", "object": "future_thing" });
    assert_eq!(send_event(&shop, "evt_new_type", "future_thing.created", object).await, "ignored");
    let row = stored(&shop, "evt_new_type").await;
    assert_eq!(row, ("future_thing.created".to_owned(), Some("ignored".to_owned()), Some("unhandled_type".to_owned())));
    // Redelivered: acknowledged as a duplicate.
    let (payload, sig) = signed_event(
        "evt_bad_charge",
        "charge.refunded",
        json!({ "id": "ch_1", "object": "charge" }),
        now,
        WEBHOOK_SECRET,
    );
    let again = deliver(&shop, &payload, &sig).await;
    assert_eq!((again.status, again.body["duplicate"].clone()), (StatusCode::OK, json!(true)), "{}", again.raw);

    // Not even JSON, but signed: stored under a digest of the body.
    let junk = "this is not an event";
    let r = deliver(&shop, junk, &signature(WEBHOOK_SECRET, now, junk)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let kinds: Vec<(String, Value)> =
        sqlx::query_as("SELECT type, payload FROM stripe_events WHERE id LIKE 'sha256:%' AND outcome = 'ignored'")
            .fetch_all(&shop.app.pool)
            .await
            .expect("the test's SQL runs");
    assert_eq!(kinds, vec![("unparseable".to_owned(), json!(junk))]);

    // Unsigned or wrongly signed, readable or not: still refused, not stored.
    let r = deliver(&shop, junk, &signature("whsec_wrong", now, junk)).await;
    assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, "invalid_signature"), "{}", r.raw);
    let (payload, sig) = signed_event("evt_wrong_secret", "future_thing.created", json!({}), now, "whsec_wrong");
    assert_eq!(deliver(&shop, &payload, &sig).await.code(), "invalid_signature");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM stripe_events")
        .fetch_one(&shop.app.pool)
        .await
        .expect("the test's SQL runs");
    assert_eq!(count, 4);
}

#[tokio::test]
async fn maintenance_prunes_stripe_events_older_than_thirty_days_only() {
    let app = TestApp::spawn().await;
    for (id, age) in [("evt_old", "31 days"), ("evt_retry_window", "3 days"), ("evt_fresh", "1 minute")] {
        sqlx::query(
            "INSERT INTO stripe_events (id, type, payload, received_at)
             VALUES ($1, 'payment_intent.succeeded', '{}', now() - $2::interval)",
        )
        .bind(id)
        .bind(age)
        .execute(&app.pool)
        .await
        .expect("the test's SQL runs");
    }
    let job = gavel_domain::jobs::MaintenanceJob::Prune { tick: 1 };
    gavel_workflows::maintenance::run(&app.pool, job).await.expect("the maintenance job runs");
    let left: Vec<String> = sqlx::query_scalar("SELECT id FROM stripe_events ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .expect("the test's SQL runs");
    assert_eq!(left, vec!["evt_fresh".to_owned(), "evt_retry_window".to_owned()]);
}
