//! Finance reconciliation over real HTTP, a real Postgres and the Stripe
//! stand-in: one discrepancy of each class planted at the stand-in (through
//! its control endpoints) or in the ledger, each found and classified, the
//! safe one settled through the checkout's verification; the API's run,
//! report and bad input.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use gavel::Role;
use gavel_domain::payments::{self, refunds};
use gavel_standins::stripe::Faults;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::checkout::{Shop, WEBHOOK_SECRET};
use crate::helpers::{client, eventually, fresh_database, send, test_config, uuid_of};

/// POSTs JSON to the stand-in's control endpoint `path`.
pub async fn control(stripe_base: &str, path: &str, body: Value) -> Value {
    let r = send(client().post(format!("{}{}", stripe_base.trim_end_matches('/'), path)).json(&body)).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.raw);
    r.body
}

/// The PaymentIntent Gavel recorded for a payment (`pay_…`).
async fn intent_of(shop: &Shop, payment: &str) -> String {
    sqlx::query_scalar("SELECT provider_id FROM payments WHERE id = $1")
        .bind(uuid_of(payment))
        .fetch_one(&shop.app.pool)
        .await
        .expect("the payment is recorded with its PaymentIntent")
}

/// Checks out `claim` and returns (order id, payment id).
async fn paid(shop: &Shop, token: &str, claim: &str) -> (String, String) {
    let r = shop.checkout(token, claim, "pm_card_visa").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let order = r.body["id"].as_str().expect("an order id").to_owned();
    (order, r.body["payment"]["id"].as_str().expect("a payment id").to_owned())
}

/// The shop's merchant's run over the hour around now, requested over the
/// API and read once it completes.
async fn merchant_run_of_the_last_hour(shop: &Shop) -> Value {
    let key = &shop.merchant.key;
    let from = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let to = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let r = shop.app.post("/v1/reconciliation_runs", Some(key), json!({ "from": from, "to": to })).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    let id = r.body["id"].as_str().expect("a run id").to_owned();
    eventually("the run completes", Duration::from_secs(30), || async {
        let r = shop.app.get(&format!("/v1/reconciliation_runs/{id}"), Some(key)).await;
        (r.body["status"] == "completed").then_some(r.body)
    })
    .await
}

fn rows_of(csv: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines
        .map(|line| {
            // The test's rows have no quoted commas except in `detail`, the last column.
            let cells: Vec<&str> = line.splitn(header.len(), ',').collect();
            header.iter().zip(cells).map(|(h, c)| ((*h).to_owned(), c.to_owned())).collect()
        })
        .collect()
}

#[tokio::test]
async fn each_planted_discrepancy_is_found_classified_and_settled_only_when_safe() {
    let db = fresh_database().await;
    let shop = Shop::open_on(&db, &[Role::Api, Role::Workers], |_| {}).await;
    let base = shop.stripe.api_base();
    let (_, held) = shop.holders(9, json!({})).await;
    let mut orders = Vec::new();
    for (token, claim) in &held[..7] {
        orders.push(paid(&shop, token, claim).await);
    }
    // Two payments the provider keeps `processing`: Gavel's stay pending_verification.
    shop.stripe.set_faults(Faults { processing_next: 2, ..Faults::default() });
    for (token, claim) in &held[7..] {
        let r = shop.checkout(token, claim, "pm_card_visa").await;
        assert_eq!(r.body["status"], "pending_verification", "{}", r.raw);
        orders.push((
            r.body["id"].as_str().expect("an order").to_owned(),
            r.body["payment"]["id"].as_str().expect("a payment").to_owned(),
        ));
    }
    shop.stripe.set_faults(Faults::default());
    let pi: Vec<String> = {
        let mut v = Vec::new();
        for (_, payment) in &orders {
            v.push(intent_of(&shop, payment).await);
        }
        v
    };
    // [0] agrees. [1] amount, [2] currency, [3] status changed at the provider.
    control(&base, &format!("/_control/payment_intents/{}", pi[1]), json!({ "amount": 1500 })).await;
    control(&base, &format!("/_control/payment_intents/{}", pi[2]), json!({ "currency": "eur" })).await;
    control(&base, &format!("/_control/payment_intents/{}", pi[3]), json!({ "status": "canceled" })).await;
    // [4] charged twice: a second succeeded PaymentIntent names its payment.
    let dup = control(
        &base,
        "/_control/payment_intents",
        json!({
            "amount": 1999, "currency": "usd", "status": "succeeded",
            "metadata": { "gavel_payment_id": orders[4].1, "gavel_order_id": orders[4].0 },
        }),
    )
    .await;
    // A charge Gavel never made.
    let stranger =
        control(&base, "/_control/payment_intents", json!({ "amount": 777, "currency": "usd", "status": "succeeded" }))
            .await;
    // [5] refunded in Stripe's dashboard (no metadata, no webhook).
    let refund = control(&base, "/_control/refunds", json!({ "payment_intent": pi[5], "amount": 999 })).await;
    // [6] is Gavel's only: its PaymentIntent id names nothing at the provider.
    sqlx::query("UPDATE payments SET provider_id = 'pi_vanished0001' WHERE id = $1")
        .bind(uuid_of(&orders[6].1))
        .execute(&shop.app.pool)
        .await
        .expect("plant a ledger-only payment");
    control(&base, &format!("/_control/payment_intents/{}", pi[6]), json!({ "metadata": {} })).await;
    control(&base, &format!("/_control/payment_intents/{}", pi[6]), json!({ "status": "canceled" })).await;
    // Gavel stops: no verification job may settle the planted pending payment before the run.
    let Shop { app, stripe: _stripe, merchant: _ } = shop;
    drop(app);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pool = sqlx::PgPool::connect(&db).await.expect("connect");
    // [7] stays processing (stuck); [8] succeeded at the provider since (safe to settle).
    control(&base, &format!("/_control/payment_intents/{}", pi[8]), json!({ "status": "succeeded" })).await;

    let mut config = test_config(&db);
    config.payments.stripe_api_base = base.clone();
    config.payments.stripe_webhook_secret = WEBHOOK_SECRET.into();
    config.reconciliation.stuck_pending_after_seconds = 0;
    config.reconciliation.page_size = 3;
    let csv_path = std::env::temp_dir().join(format!("gavel-recon-{}.csv", uuid::Uuid::new_v4().simple()));
    let period = (Utc::now() - chrono::Duration::hours(1), Utc::now() + chrono::Duration::hours(1));
    let report = gavel::reconcile::reconcile(&config, pool.clone(), period, None, Some(&csv_path))
        .await
        .expect("the run completes");
    assert_eq!(report["status"], "completed", "{report:#}");
    let count = |class: &str| report["classes"][class]["count"].as_i64().unwrap_or(-1);
    let expected = [
        ("amount_mismatch", 1),
        ("currency_mismatch", 1),
        ("status_mismatch", 2),
        ("duplicate_charge", 1),
        ("missing_in_gavel", 2),
        ("missing_at_provider", 1),
        ("stuck_pending", 1),
    ];
    for (class, n) in expected {
        assert_eq!(count(class), n, "{class}: {report:#}");
    }
    // 10 PaymentIntents read, of which one is not Gavel's and one a duplicate; and the ledger-only one.
    assert_eq!(report["checked"]["payments"], 12, "{report:#}");
    assert_eq!(report["checked"]["refunds"], 1, "{report:#}");
    assert_eq!(report["classes"]["amount_mismatch"]["amounts"]["usd"], 499, "the difference is at stake");
    assert_eq!(report["classes"]["currency_mismatch"]["amounts"]["usd"], 1999);
    assert_eq!(report["classes"]["missing_in_gavel"]["amounts"]["usd"], 777 + 999);

    let csv = std::fs::read_to_string(&csv_path).expect("the CSV is written");
    let _ = std::fs::remove_file(&csv_path);
    assert!(csv.starts_with(
        "run_id,class,object,gavel_id,provider_id,order_id,currency,gavel_amount,provider_amount,gavel_status,provider_status,resolution,detail\n"
    ));
    let rows = rows_of(&csv);
    assert_eq!(rows.len(), 9, "{csv}");
    let find = |class: &str, provider: &str| {
        rows.iter()
            .find(|r| r["class"] == class && r["provider_id"] == provider)
            .unwrap_or_else(|| panic!("no {class} row for {provider}:\n{csv}"))
    };
    assert_eq!(find("amount_mismatch", &pi[1])["gavel_amount"], "1999");
    assert_eq!(find("amount_mismatch", &pi[1])["provider_amount"], "1500");
    assert_eq!(find("currency_mismatch", &pi[2])["gavel_id"], orders[2].1);
    let reviewed = find("status_mismatch", &pi[3]);
    assert_eq!((reviewed["gavel_status"].as_str(), reviewed["resolution"].as_str()), ("succeeded", "needs_review"));
    assert_eq!(find("duplicate_charge", dup["id"].as_str().expect("an id"))["gavel_id"], orders[4].1);
    let unknown = find("missing_in_gavel", stranger["id"].as_str().expect("an id"));
    assert_eq!((unknown["object"].as_str(), unknown["gavel_id"].as_str()), ("payment", ""));
    let dashboard = find("missing_in_gavel", refund["id"].as_str().expect("an id"));
    assert_eq!(
        (dashboard["object"].as_str(), dashboard["order_id"].as_str(), dashboard["gavel_status"].as_str()),
        ("refund", orders[5].0.as_str(), "paid"),
        "the order's state is reported"
    );
    assert_eq!(find("missing_at_provider", "pi_vanished0001")["gavel_id"], orders[6].1);
    assert_eq!(find("stuck_pending", &pi[7])["resolution"], "needs_review");
    let settled = find("status_mismatch", &pi[8]);
    assert_eq!(settled["resolution"], "auto_settled", "{csv}");

    // Settled through the checkout's own transitions, with its event; the rest untouched.
    let status = |order: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM orders WHERE id = $1")
                .bind(uuid_of(&order))
                .fetch_one(&pool)
                .await
                .expect("the order")
        }
    };
    assert_eq!(status(orders[8].0.clone()).await, "paid");
    assert_eq!(status(orders[7].0.clone()).await, "pending_verification");
    assert_eq!(status(orders[5].0.clone()).await, "paid", "a dashboard refund is reported, not applied");
    let paid_events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'order.paid'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(paid_events, 8);

    // The same period again is the same run, unchanged.
    let again = gavel::reconcile::reconcile(&config, pool.clone(), period, None, None).await.expect("the run");
    assert_eq!(again["id"], report["id"]);
    assert_eq!(again["classes"], report["classes"]);
}

#[tokio::test]
async fn merchants_request_and_read_their_own_runs_and_bad_input_is_refused() {
    let shop = Shop::open(|_| {}).await;
    let (_, held) = shop.holders(2, json!({})).await;
    for (token, claim) in &held {
        paid(&shop, token, claim).await;
    }
    let key = shop.merchant.key.clone();
    let from = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let to = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let r = shop.app.post("/v1/reconciliation_runs", Some(&key), json!({ "from": from, "to": to })).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    let id = r.body["id"].as_str().expect("a run id").to_owned();
    assert!(id.starts_with("rcr_"));
    let again = shop.app.post("/v1/reconciliation_runs", Some(&key), json!({ "from": from, "to": to })).await;
    assert_eq!((again.status, again.body["id"].as_str()), (StatusCode::ACCEPTED, Some(id.as_str())), "{}", again.raw);

    let run = eventually("the run completes", Duration::from_secs(30), || async {
        let r = shop.app.get(&format!("/v1/reconciliation_runs/{id}"), Some(&key)).await;
        (r.body["status"] == "completed").then_some(r.body)
    })
    .await;
    assert_eq!(run["checked"], json!({ "payments": 2, "refunds": 0 }), "{run:#}");
    assert_eq!(run["classes"].as_object().map(|c| c.len()), Some(7), "every class is listed");
    assert!(run["classes"].as_object().into_iter().flatten().all(|(_, t)| t["count"] == 0), "{run:#}");
    assert_eq!(run["discrepancies"], json!([]));
    let csv =
        send(client().get(format!("{}/v1/reconciliation_runs/{id}/report.csv", shop.app.base)).bearer_auth(&key)).await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("text/csv; charset=utf-8"));
    assert_eq!(csv.raw.lines().count(), 1, "only the header: {}", csv.raw);

    // Another merchant sees nothing of it.
    let other = shop.app.merchant().await;
    for path in [format!("/v1/reconciliation_runs/{id}"), format!("/v1/reconciliation_runs/{id}/report.csv")] {
        let r = shop.app.get(&path, Some(&other.key)).await;
        assert_eq!((r.status, r.code()), (StatusCode::NOT_FOUND, "not_found"), "{path}: {}", r.raw);
        assert!(r.is_problem());
    }
    let unknown = shop.app.get("/v1/reconciliation_runs/rcr_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", Some(&key)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.raw);
    let garbage = shop.app.get("/v1/reconciliation_runs/ord_nothing", Some(&key)).await;
    assert_eq!(garbage.status, StatusCode::NOT_FOUND, "{}", garbage.raw);

    let runs_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reconciliation_runs").fetch_one(&shop.app.pool).await.expect("count");
    let backwards = shop.app.post("/v1/reconciliation_runs", Some(&key), json!({ "from": to, "to": from })).await;
    let long = shop
        .app
        .post(
            "/v1/reconciliation_runs",
            Some(&key),
            json!({ "from": "2025-01-01T00:00:00Z", "to": "2026-01-03T00:00:00Z" }),
        )
        .await;
    let not_a_time =
        shop.app.post("/v1/reconciliation_runs", Some(&key), json!({ "from": "yesterday", "to": to })).await;
    for r in [&backwards, &long, &not_a_time] {
        assert!(r.status.is_client_error() && r.is_problem(), "{} {}", r.status, r.raw);
    }
    assert_eq!(backwards.code(), "invalid_request", "{}", backwards.raw);
    assert_eq!(long.code(), "invalid_request", "{}", long.raw);
    let unauthenticated = shop.app.post("/v1/reconciliation_runs", None, json!({ "from": from, "to": to })).await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    let runs_after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reconciliation_runs").fetch_one(&shop.app.pool).await.expect("count");
    assert_eq!(runs_before, runs_after, "bad input writes nothing");
}

#[tokio::test]
async fn an_owed_refund_the_provider_shows_made_is_settled_and_one_for_other_money_is_left_for_review() {
    let shop = Shop::open(|_| {}).await;
    let base = shop.stripe.api_base();
    let (_, held) = shop.holders(2, json!({})).await;
    let mut owed = Vec::new();
    for (token, claim) in &held {
        let (_, payment) = paid(&shop, token, claim).await;
        let pi = intent_of(&shop, &payment).await;
        // Gavel owes a refund (no job runs it here) ...
        let mut tx = shop.app.pool.begin().await.expect("begin");
        let p = payments::get(&mut tx, payment.parse().expect("a payment id")).await.expect("read").expect("it");
        refunds::owe(&mut tx, &p, "unit_no_longer_available").await.expect("owe");
        tx.commit().await.expect("commit");
        owed.push((payment, pi));
    }
    // ... and the provider has made it, as if the refund job's answer had
    // been lost: [0] for the whole payment, [1] for other money.
    let mut made = Vec::new();
    for ((payment, pi), amount) in owed.iter().zip([1999, 500]) {
        let body = json!({ "payment_intent": pi, "amount": amount, "metadata": { "gavel_payment_id": payment } });
        made.push(control(&base, "/_control/refunds", body).await["id"].as_str().expect("an id").to_owned());
    }

    let run = merchant_run_of_the_last_hour(&shop).await;
    let count = |class: &str| run["classes"][class]["count"].as_i64().unwrap_or(-1);
    assert_eq!((count("status_mismatch"), count("amount_mismatch")), (2, 1), "{run:#}");
    let rows = run["discrepancies"].as_array().cloned().unwrap_or_default();
    let row = |class: &str, provider: &str| {
        rows.iter()
            .find(|d| d["class"] == class && d["provider_id"] == provider)
            .cloned()
            .unwrap_or_else(|| panic!("no {class} row for {provider}: {run:#}"))
    };
    let settled = row("status_mismatch", &made[0]);
    assert_eq!((settled["object"].as_str(), settled["resolution"].as_str()), (Some("refund"), Some("auto_settled")));
    assert_eq!(row("status_mismatch", &made[1])["resolution"], "needs_review");
    assert_eq!(row("amount_mismatch", &made[1])["resolution"], "needs_review");

    // [0] is done as the refund job would have recorded it; [1] still owed.
    let state = |payment: String| {
        let pool = shop.app.pool.clone();
        async move {
            sqlx::query_as::<_, (String, Option<String>, String)>(
                "SELECT r.status, r.provider_id, p.status FROM refunds r JOIN payments p ON p.id = r.payment_id
                 WHERE r.payment_id = $1",
            )
            .bind(uuid_of(&payment))
            .fetch_one(&pool)
            .await
            .expect("the refund")
        }
    };
    assert_eq!(state(owed[0].0.clone()).await, ("succeeded".into(), Some(made[0].clone()), "refunded".into()));
    assert_eq!(state(owed[1].0.clone()).await, ("pending".into(), None, "succeeded".into()));
    assert_eq!(shop.stripe.refunds().len(), 2, "no refund made by the run");
}
