//! `gavel serve` killed with SIGKILL at each point of the checkout saga
//! (after the attempt is recorded, after Stripe answered, before the order
//! commit), then restarted: every saga finishes with exactly one charge and
//! one paid order per claim, and no unit is lost or sold twice.

use std::time::Duration;

use crate::checkout::WEBHOOK_SECRET;
use crate::child::ChildServer;
use crate::helpers::{TestApp, client, fresh_database, send, uuid_of};
use gavel::Role;
use gavel_standins::stripe::StripeStandIn;
use reqwest::StatusCode;
use serde_json::json;

const CLAIMS: usize = 4;

fn env(stripe: &StripeStandIn, pause_at: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("STRIPE_API_BASE", stripe.api_base()),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        // A crashed process's sagas are picked up soon after.
        ("GAVEL_PAYMENTS__RESUME_AFTER_MS", "1000".to_owned()),
    ];
    if let Some(point) = pause_at {
        env.push(("GAVEL_FAULTS__PAUSE_AT", point.to_owned()));
    }
    env
}

async fn killed_at(point: &str) {
    let stripe = StripeStandIn::start(([127, 0, 0, 1], 0).into(), None).await.expect("the Stripe stand-in starts");
    let db = fresh_database().await;
    // Set-up through an in-process API (no workers: only the child runs jobs).
    let setup = TestApp::spawn_on(&db, &[Role::Api], |c| c.payments.stripe_api_base = stripe.api_base()).await;
    let merchant = setup.merchant().await;
    let sale = setup.sale(&merchant, json!({ "inventory": 10 })).await.id;
    let tokens = setup.buyers(CLAIMS).await;

    let mut server = ChildServer::start(&db, &env(&stripe, Some(point))).await;
    let mut claims = Vec::new();
    for token in &tokens {
        let r = setup.post(&format!("/v1/sales/{sale}/claims"), Some(token), json!({})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
        claims.push(r.body["id"].as_str().expect("the answer names an id").to_owned());
    }
    // Every checkout goes to the doomed server, each with its Idempotency-Key;
    // their answers do not matter.
    for (token, claim) in tokens.iter().zip(&claims) {
        let req = client()
            .post(format!("{}/v1/claims/{claim}/checkout", server.base))
            .bearer_auth(token)
            .header("Idempotency-Key", format!("checkout-{claim}"))
            .json(&json!({ "payment_method": "pm_card_visa" }));
        tokio::spawn(async move {
            let _ = req.send().await;
        });
    }
    let first = tokio::time::timeout(Duration::from_secs(15), server.paused.recv()).await;
    assert!(matches!(first, Ok(Some(_))), "the server never reached {point}");
    // Let the others reach it too where they can (the commit point holds the sale lock).
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();

    let restarted = ChildServer::start(&db, &env(&stripe, None)).await;
    // Clients retry with the same keys: each gets its order (or "in progress"
    // while it resumes), never a key held by the dead process; a checkout
    // that never began begins now.
    let retry = |token: &str, claim: &str| {
        send(
            client()
                .post(format!("{}/v1/claims/{claim}/checkout", restarted.base))
                .bearer_auth(token)
                .header("Idempotency-Key", format!("checkout-{claim}"))
                .json(&json!({ "payment_method": "pm_card_visa" })),
        )
    };
    for (token, claim) in tokens.iter().zip(&claims) {
        let r = retry(token, claim).await;
        assert!(matches!(r.status, StatusCode::OK | StatusCode::CONFLICT), "{point}: retry answered {}", r.raw);
        assert_ne!(r.code(), "idempotency_key_in_use", "{point}: the dead process still holds the key");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let paid: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'paid'")
            .fetch_one(&setup.pool)
            .await
            .expect("the test's SQL runs");
        if paid == CLAIMS as i64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{point}: only {paid} of {CLAIMS} orders paid after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Once settled, the key answers with the claim's one order.
    for (token, claim) in tokens.iter().zip(&claims) {
        let r = retry(token, claim).await;
        assert_eq!(r.status, StatusCode::OK, "{point}: {}", r.raw);
        assert_eq!(r.body["claim_id"].as_str(), Some(claim.as_str()), "{point}");
    }

    let intents = stripe.payment_intents();
    assert_eq!(intents.len(), CLAIMS, "{point}: exactly one charge per claim");
    assert!(intents.iter().all(|pi| pi.status == "succeeded"));
    let orders: i64 =
        sqlx::query_scalar("SELECT count(*) FROM orders").fetch_one(&setup.pool).await.expect("the test's SQL runs");
    assert_eq!(orders, CLAIMS as i64, "{point}: one order per claim");
    for claim in &claims {
        let status: String = sqlx::query_scalar("SELECT status FROM claims WHERE id = $1")
            .bind(uuid_of(claim))
            .fetch_one(&setup.pool)
            .await
            .expect("the test's SQL runs");
        assert_eq!(status, "checked_out", "{point}");
    }
    let (available, held, sold): (i32, i32, i32) =
        sqlx::query_as("SELECT available, held, sold FROM sales WHERE id = $1")
            .bind(uuid_of(&sale))
            .fetch_one(&setup.pool)
            .await
            .expect("the test's SQL runs");
    assert_eq!((available, held, sold), (10 - CLAIMS as i32, 0, CLAIMS as i32), "{point}");
    assert!(setup.invariant_holds(&sale).await);
    let paid_events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'order.paid'")
        .fetch_one(&setup.pool)
        .await
        .expect("the test's SQL runs");
    assert_eq!(paid_events, CLAIMS as i64, "{point}: one order.paid per order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_after_recording_the_attempt_charges_once_after_restart() {
    killed_at("after_attempt_recorded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_after_stripe_answered_charges_once_after_restart() {
    killed_at("after_provider_answered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_before_the_order_commit_charges_once_after_restart() {
    killed_at("before_order_commit").await;
}
