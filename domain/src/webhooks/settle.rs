//! Settling delivered webhooks in batches: the dispatcher's senders hand
//! their 2xx attempts to one settler, which records many in one statement —
//! each attempt's `webhook_attempts` row and its delivery's move to
//! `delivered` commit together, so no delivery counts as delivered without its
//! attempt logged. Failed attempts (retries, give-ups, 410) are rarer and carry
//! endpoint bookkeeping: they go through [`super::deliveries::finish`] one by one.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Result;
use crate::ids::{WebhookAttemptId, WebhookDeliveryId};

/// One 2xx attempt of a claimed delivery.
#[derive(Debug, Clone, Copy)]
pub struct DeliveredAttempt {
    pub delivery: WebhookDeliveryId,
    pub status_code: u16,
    pub duration: Duration,
}

/// Logs each attempt and marks its delivery delivered (guarded on `owner`'s
/// lease), and clears the failure run of their endpoints, in one statement
/// (one transaction). Returns the deliveries settled; one missing from it
/// had lost its lease (another sender has it), and its attempt is not logged.
pub async fn delivered(pool: &PgPool, owner: &str, attempts: &[DeliveredAttempt]) -> Result<Vec<WebhookDeliveryId>> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(attempts.len());
    let mut attempt_ids = Vec::with_capacity(attempts.len());
    let mut codes = Vec::with_capacity(attempts.len());
    let mut durations = Vec::with_capacity(attempts.len());
    for a in attempts {
        ids.push(a.delivery.uuid());
        attempt_ids.push(WebhookAttemptId::new().uuid());
        codes.push(i16::try_from(a.status_code).unwrap_or(i16::MAX));
        durations.push(i32::try_from(a.duration.as_millis()).unwrap_or(i32::MAX));
    }
    let settled = sqlx::query_scalar!(
        r#"WITH done AS (
               SELECT * FROM UNNEST($2::uuid[], $3::uuid[], $4::int2[], $5::int4[])
                   AS u(delivery_id, attempt_id, status_code, duration_ms)
           ), settled AS (
               UPDATE webhook_deliveries d
               SET status = 'delivered', delivered_at = now(), next_attempt_at = now(), once = false,
                   lease_owner = NULL, lease_until = NULL
               FROM done WHERE d.id = done.delivery_id AND d.lease_owner = $1 AND d.status = 'sending'
               RETURNING d.id, d.endpoint_id
           ), logged AS (
               INSERT INTO webhook_attempts (id, delivery_id, status_code, duration_ms)
               SELECT done.attempt_id, s.id, done.status_code, done.duration_ms
               FROM settled s JOIN done ON done.delivery_id = s.id
           ), healed AS (
               UPDATE webhook_endpoints SET failing_since = NULL
               WHERE id IN (SELECT w.id FROM webhook_endpoints w
                            WHERE w.id IN (SELECT endpoint_id FROM settled) AND w.failing_since IS NOT NULL
                            ORDER BY w.id FOR UPDATE)
           )
           SELECT id AS "id!" FROM settled"#,
        owner,
        &ids,
        &attempt_ids,
        &codes,
        &durations,
    )
    .fetch_all(pool)
    .await?;
    Ok(settled.into_iter().map(WebhookDeliveryId::from_uuid).collect::<Vec<_>>())
}

/// The deliveries of `attempts` that [`delivered`] did not settle.
pub fn unsettled(attempts: &[DeliveredAttempt], settled: &[WebhookDeliveryId]) -> Vec<WebhookDeliveryId> {
    let settled: std::collections::HashSet<Uuid> = settled.iter().map(|id| id.uuid()).collect();
    attempts.iter().map(|a| a.delivery).filter(|id| !settled.contains(&id.uuid())).collect()
}
