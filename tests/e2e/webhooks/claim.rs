//! The delivery loop's claim, called directly (no dispatcher running): an
//! endpoint at its per-endpoint cap is skipped while another endpoint's due
//! deliveries are still taken, and a send whose answer came (handed to the
//! settler, not yet settled) no longer holds its endpoint's slot while its
//! row stays leased.

use std::time::Duration;

use gavel::Role;
use gavel_domain::ids::{WebhookDeliveryId, WebhookEndpointId};
use gavel_domain::webhooks::deliveries::{self, Claimed};
use serde_json::Value;

use super::endpoint;
use crate::helpers::{TestApp, fresh_database, uuid_of};

/// Three due deliveries (three events) for the endpoint.
async fn three_due(app: &TestApp, endpoint_id: &str) {
    sqlx::query(
        "WITH made AS (
             INSERT INTO events (id, merchant_id, type, subject_id, dedupe_key, payload, dispatched_at)
             SELECT gen_random_uuid(), w.merchant_id, 'order.paid', 'ord_' || g, w.id || ':' || g, '{}', now()
             FROM webhook_endpoints w, generate_series(1, 3) g WHERE w.id = $1
             RETURNING id, merchant_id
         )
         INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_id, event_type, resource_version,
                                         next_attempt_at)
         SELECT gen_random_uuid(), $1, merchant_id, id, 'order.paid', 1, now() - interval '1 second' FROM made",
    )
    .bind(uuid_of(endpoint_id))
    .execute(&app.pool)
    .await
    .expect("three due deliveries");
}

async fn claim(app: &TestApp, answered: &[WebhookDeliveryId]) -> Vec<Claimed> {
    deliveries::claim_due(&app.pool, "claim-test", Duration::from_secs(60), 10, 2, answered).await.expect("the claim")
}

fn of(claimed: &[Claimed], endpoint: WebhookEndpointId) -> Vec<WebhookDeliveryId> {
    claimed.iter().filter(|c| c.endpoint_id == endpoint).map(|c| c.id).collect()
}

#[tokio::test]
async fn an_endpoint_at_its_cap_is_skipped_and_an_answered_send_frees_its_slot() {
    // The API alone: nothing else claims.
    let app =
        TestApp::spawn_on(&fresh_database().await, &[Role::Api], |c| c.webhooks.allow_private_targets = true).await;
    let (first, second) = (app.merchant().await, app.merchant().await);
    let (a_id, _) = endpoint(&app, &first, "http://127.0.0.1:9/a", Value::Null).await;
    let (b_id, _) = endpoint(&app, &second, "http://127.0.0.1:9/b", Value::Null).await;
    three_due(&app, &a_id).await;
    let (a, b) = (WebhookEndpointId::from_uuid(uuid_of(&a_id)), WebhookEndpointId::from_uuid(uuid_of(&b_id)));

    // Cap 2: two of each endpoint's three.
    let taken = claim(&app, &[]).await;
    assert_eq!(of(&taken, a).len(), 2, "{taken:?}");
    three_due(&app, &b_id).await;
    let taken_b = claim(&app, &[]).await;
    assert!(of(&taken_b, a).is_empty(), "endpoint a is at its cap: {taken_b:?}");
    assert_eq!(of(&taken_b, b).len(), 2, "endpoint b is not held back by a: {taken_b:?}");
    assert!(claim(&app, &[]).await.is_empty(), "both at their caps");

    // One of a's sends got its answer: its slot is free, its row still leased.
    let answered = of(&taken, a)[0];
    let more = claim(&app, &[answered]).await;
    assert_eq!(of(&more, a).len(), 1, "{more:?}");
    assert!(of(&more, b).is_empty(), "{more:?}");
    let status: String = sqlx::query_scalar("SELECT status FROM webhook_deliveries WHERE id = $1")
        .bind(answered.uuid())
        .fetch_one(&app.pool)
        .await
        .expect("the answered delivery");
    assert_eq!(status, "sending", "an answered delivery stays leased until it is settled");
    assert!(claim(&app, &[answered]).await.is_empty(), "a's third went: nothing left for a, b at its cap");
}
