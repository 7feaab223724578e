//! Webhook deliveries: one row per (endpoint, event), made by [`fan_out`]
//! from the outbox in one transaction with the events' `dispatched_at` mark
//! (each event is fanned out once; the notifier's mark is its own), claimed
//! with a lease by [`claim_due`] (per-endpoint caps: one slow endpoint never
//! holds back another's), and settled by [`finish`], which logs the attempt
//! and, in the same transaction, moves the delivery and its endpoint on.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::EVENT_TYPES;
use crate::dead_letters::{self, Kind, NewDeadLetter};
use crate::error::{Error, Result};
use crate::events::{self, DomainEvent, WebhookEndpointDisabled};
use crate::ids::{EventId, MerchantId, WebhookAttemptId, WebhookDeliveryId, WebhookEndpointId};

/// What one [`fan_out`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FannedOut {
    pub events: i64,
    pub deliveries: i64,
}

/// Takes up to `batch` undispatched events, makes one delivery per
/// subscribed, enabled endpoint of the event's merchant (due after `first`),
/// and marks the events dispatched, in one statement.
///
/// The oldest undispatched events are read in `events_dispatch_pending`'s
/// order. A burst is written faster than statistics follow (the planner takes
/// the pending part for a few hundred rows), and the plan it then prefers — a
/// bitmap scan of every pending event and a sort — costs the whole backlog on
/// each batch; so bitmap scans and sorts are off for this transaction (the
/// statement needs neither).
pub async fn fan_out(pool: &PgPool, batch: i64, first: Duration) -> Result<FannedOut> {
    let types: Vec<String> = EVENT_TYPES.iter().map(|s| (*s).to_owned()).collect();
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "SELECT set_config('enable_bitmapscan', 'off', true) AS bitmapscan, set_config('enable_sort', 'off', true) AS sort"
    )
    .fetch_one(&mut *tx)
    .await?;
    let row = sqlx::query!(
        r#"WITH taken AS (
               SELECT id, merchant_id, type, subject_id, created_at FROM events
               WHERE dispatched_at IS NULL ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED
           ), marked AS (
               UPDATE events e SET dispatched_at = now() FROM taken t WHERE e.id = t.id RETURNING e.id
           ), made AS (
               INSERT INTO webhook_deliveries (id, endpoint_id, merchant_id, event_id, event_type, resource_version,
                                               next_attempt_at)
               SELECT gen_random_uuid(), w.id, t.merchant_id, t.id, t.type,
                      (SELECT count(*) FROM events s
                       WHERE s.subject_id = t.subject_id AND (s.created_at, s.id) <= (t.created_at, t.id))::int,
                      now() + make_interval(secs => $3)
               FROM taken t
               JOIN webhook_endpoints w ON w.merchant_id = t.merchant_id AND w.enabled AND w.deleted_at IS NULL
                    AND (cardinality(w.events) = 0 OR t.type = ANY (w.events))
               WHERE t.type = ANY ($2)
               ON CONFLICT (endpoint_id, event_id) DO NOTHING
               RETURNING 1
           )
           SELECT (SELECT count(*) FROM marked) AS "events!", (SELECT count(*) FROM made) AS "deliveries!""#,
        batch,
        &types,
        first.as_secs_f64(),
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(FannedOut { events: row.events, deliveries: row.deliveries })
}

/// A claimed delivery, with everything its send needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: WebhookDeliveryId,
    pub endpoint_id: WebhookEndpointId,
    pub url: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub event_id: EventId,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub event_created_at: DateTime<Utc>,
    pub resource_version: i32,
    /// Failed attempts so far that counted against the schedule.
    pub failures: i32,
    /// A hand-made re-send: one attempt, whatever it answers.
    pub once: bool,
}

impl Claimed {
    /// The body as sent: `{id, type, created_at, data}`, `created_at` with
    /// milliseconds, `data` the event's resource with its `version`.
    pub fn body(&self) -> Vec<u8> {
        let mut data = self.payload.clone();
        if let Some(object) = data.as_object_mut() {
            object.insert("version".into(), json!(self.resource_version));
        }
        let body = json!({
            "id": self.event_id.to_string(),
            "type": self.event_type,
            "created_at": self.event_created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        });
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The secrets that sign it now (the previous one during a rotation's overlap).
    pub fn secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_secret_until)
            && until > now
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// Claims up to `batch` due deliveries for `owner` for `lease`, at most
/// `per_endpoint` in flight per endpoint (counting those already sending, in
/// any process): an endpoint at its cap is skipped, so its backlog never
/// blocks another's. `answered`: this process's deliveries whose attempt has
/// its answer but is not settled yet (still `sending`, still leased — a crash
/// before settling sends them again); they no longer hold their endpoint's
/// slot. The in-flight counts are one aggregate over the `sending` rows
/// (bounded by the senders' concurrency and the settling queue). The
/// endpoints with pending deliveries are found by a skip scan over
/// `webhook_deliveries_pending` (one probe per such endpoint), visited in a
/// random order, and each gives its oldest due deliveries up to its free
/// slots: the cost follows the deliveries claimed and the endpoints waiting,
/// not the backlog's size. Bitmap scans are off for its transaction: the
/// `sending` rows are read through `webhook_deliveries_sending` by an index
/// scan, which marks the entries of rows settled since as dead as it goes (a
/// bitmap scan never does, so it read every delivery ever sent, on each
/// claim). Rows whose lease ran out are made due again by [`reclaim_expired`].
pub async fn claim_due(
    pool: &PgPool,
    owner: &str,
    lease: Duration,
    batch: i64,
    per_endpoint: i64,
    answered: &[WebhookDeliveryId],
) -> Result<Vec<Claimed>> {
    let answered: Vec<Uuid> = answered.iter().map(|id| id.uuid()).collect();
    let mut tx = pool.begin().await?;
    sqlx::query!("SELECT set_config('enable_bitmapscan', 'off', true) AS bitmapscan").fetch_one(&mut *tx).await?;
    let claimed = sqlx::query_as!(
        Claimed,
        r#"WITH RECURSIVE waiting AS (
               (SELECT endpoint_id FROM webhook_deliveries WHERE status = 'pending' ORDER BY endpoint_id LIMIT 1)
               UNION ALL
               SELECT (SELECT d.endpoint_id FROM webhook_deliveries d
                       WHERE d.status = 'pending' AND d.endpoint_id > waiting.endpoint_id
                       ORDER BY d.endpoint_id LIMIT 1)
               FROM waiting WHERE waiting.endpoint_id IS NOT NULL
           ), busy AS (
               SELECT endpoint_id, count(*) AS n FROM webhook_deliveries
               WHERE status = 'sending' AND lease_until >= now()
                 AND id NOT IN (SELECT unnest($5::uuid[]))
               GROUP BY endpoint_id
           ), open AS (
               SELECT w.id, w.enabled, $4 - COALESCE(b.n, 0) AS free
               FROM waiting JOIN webhook_endpoints w ON w.id = waiting.endpoint_id
               LEFT JOIN busy b ON b.endpoint_id = w.id
               WHERE w.deleted_at IS NULL AND (w.paused_until IS NULL OR w.paused_until <= now())
                 AND COALESCE(b.n, 0) < $4
               ORDER BY random()
           ), chosen AS (
               SELECT c.id FROM open o CROSS JOIN LATERAL (
                   SELECT d.id FROM webhook_deliveries d
                   WHERE d.endpoint_id = o.id AND d.status = 'pending' AND d.next_attempt_at <= now()
                     AND (o.enabled OR d.once)
                   ORDER BY d.next_attempt_at LIMIT o.free
                   FOR UPDATE SKIP LOCKED
               ) c
               LIMIT $3
           )
           UPDATE webhook_deliveries d
           SET status = 'sending', lease_owner = $1, lease_until = now() + make_interval(secs => $2)
           FROM chosen, webhook_endpoints w, events e
           WHERE d.id = chosen.id AND w.id = d.endpoint_id AND e.id = d.event_id
           RETURNING d.id AS "id: WebhookDeliveryId", d.endpoint_id AS "endpoint_id: WebhookEndpointId",
                     w.url, w.secret, w.previous_secret, w.previous_secret_until,
                     d.event_id AS "event_id: EventId", d.event_type, e.payload,
                     e.created_at AS event_created_at, d.resource_version, d.failures, d.once"#,
        owner,
        lease.as_secs_f64(),
        batch,
        per_endpoint,
        &answered,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(claimed)
}

/// Makes due again every `sending` delivery whose lease ran out (its sender
/// crashed or lost the database before settling it): at least once. Their
/// `next_attempt_at` is already past, so they go first.
pub async fn reclaim_expired(pool: &PgPool) -> Result<u64> {
    Ok(sqlx::query!(
        "UPDATE webhook_deliveries SET status = 'pending', lease_owner = NULL, lease_until = NULL
         WHERE status = 'sending' AND lease_until < now()"
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// How one attempt went, and what follows from it.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The receiver's status code (none: no answer).
    pub status_code: Option<u16>,
    pub duration: Duration,
    pub error: Option<String>,
    pub next: Next,
}

/// What becomes of the delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// 2xx.
    Delivered,
    /// Try again after this long; `counts`: the attempt spends the retry
    /// budget (a receiver asking to slow down does not), and `pause`: the
    /// endpoint sends nothing for this long.
    Retry { after: Duration, counts: bool, pause: Option<Duration> },
    /// The budget is spent (or it was a one-off re-send): failed, dead-lettered.
    GiveUp,
    /// `410 Gone`: the endpoint is disabled at once, this delivery fails.
    Gone,
}

/// What [`finish`] did to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointAfter {
    Healthy,
    Failing,
    /// Disabled now (410, or every attempt failed for the whole window).
    Disabled,
}

/// Logs `attempt` and settles the delivery (guarded on `owner`'s lease), in
/// one transaction: delivered, back to pending, or failed (with a dead
/// letter); the endpoint's failure run is cleared or extended, and an
/// endpoint whose run is older than `disable_after` (or that answered 410) is
/// disabled, its pending deliveries failed. `None` if the lease was lost.
pub async fn finish(
    pool: &PgPool,
    claimed: &Claimed,
    owner: &str,
    attempt: &Attempt,
    disable_after: Duration,
) -> Result<Option<EndpointAfter>> {
    let mut tx = pool.begin().await?;
    let duration_ms = i32::try_from(attempt.duration.as_millis()).unwrap_or(i32::MAX);
    let status_code = attempt.status_code.map(|s| i16::try_from(s).unwrap_or(i16::MAX));
    let (status, after, counts) = match &attempt.next {
        Next::Delivered => ("delivered", Duration::ZERO, false),
        Next::Retry { after, counts, .. } => ("pending", *after, *counts),
        Next::GiveUp | Next::Gone => ("failed", Duration::ZERO, true),
    };
    let updated = sqlx::query!(
        "UPDATE webhook_deliveries
         SET status = $3, failures = failures + $4::int, next_attempt_at = now() + make_interval(secs => $5),
             delivered_at = CASE WHEN $3 = 'delivered' THEN now() ELSE delivered_at END,
             once = CASE WHEN $3 = 'pending' THEN once ELSE false END,
             lease_owner = NULL, lease_until = NULL
         WHERE id = $1 AND lease_owner = $2 AND status = 'sending'",
        claimed.id as WebhookDeliveryId,
        owner,
        status,
        i32::from(counts && status != "delivered"),
        after.as_secs_f64(),
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(None);
    }
    sqlx::query!(
        "INSERT INTO webhook_attempts (id, delivery_id, status_code, duration_ms, error) VALUES ($1, $2, $3, $4, $5)",
        WebhookAttemptId::new() as WebhookAttemptId,
        claimed.id as WebhookDeliveryId,
        status_code,
        duration_ms,
        attempt.error.as_deref(),
    )
    .execute(&mut *tx)
    .await?;
    let endpoint = match &attempt.next {
        Next::Delivered => {
            sqlx::query!(
                "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL",
                claimed.endpoint_id as WebhookEndpointId,
            )
            .execute(&mut *tx)
            .await?;
            EndpointAfter::Healthy
        }
        Next::Gone => {
            disable(&mut tx, claimed.endpoint_id, "the receiver answered 410 Gone").await?;
            EndpointAfter::Disabled
        }
        Next::Retry { .. } | Next::GiveUp => {
            let pause = match &attempt.next {
                Next::Retry { pause: Some(p), .. } => Some(p.as_secs_f64()),
                _ => None,
            };
            let run_started = sqlx::query_scalar!(
                "UPDATE webhook_endpoints
                 SET failing_since = COALESCE(failing_since, now()),
                     paused_until = CASE WHEN $2::float8 IS NULL THEN paused_until
                                         ELSE GREATEST(paused_until, now() + make_interval(secs => $2)) END
                 WHERE id = $1 RETURNING failing_since",
                claimed.endpoint_id as WebhookEndpointId,
                pause,
            )
            .fetch_one(&mut *tx)
            .await?;
            let window = chrono::Duration::from_std(disable_after).unwrap_or(chrono::Duration::days(5));
            if run_started.is_some_and(|since| since <= Utc::now() - window) {
                disable(&mut tx, claimed.endpoint_id, "every attempt failed for the whole disabling window").await?;
                EndpointAfter::Disabled
            } else {
                EndpointAfter::Failing
            }
        }
    };
    if status == "failed" {
        let attempts = attempts_log(&mut tx, claimed.id).await?;
        let payload = serde_json::from_slice::<serde_json::Value>(&claimed.body()).unwrap_or_default();
        let subject = claimed.id.to_string();
        dead_letters::open(
            &mut tx,
            &NewDeadLetter {
                kind: Kind::Webhook,
                subject: &subject,
                recipient: Some(&claimed.url),
                channel: Some("webhook"),
                payload: &payload,
                attempts: &attempts,
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Some(endpoint))
}

/// Disables an endpoint (Gavel's decision, with its reason), fails its
/// pending deliveries (a one-off re-send still goes) and, in the same
/// transaction, records `webhook_endpoint.disabled` for the merchant's other
/// endpoints: the merchant hears of it beyond the endpoint's own state.
async fn disable(conn: &mut sqlx::PgConnection, endpoint: WebhookEndpointId, reason: &str) -> Result<()> {
    let disabled = sqlx::query!(
        "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, disabled_at = now(),
                version = version + 1, updated_at = now()
         WHERE id = $1 AND enabled
         RETURNING merchant_id AS \"merchant_id: MerchantId\", url, version, disabled_at AS \"disabled_at!\"",
        endpoint as WebhookEndpointId,
        reason,
    )
    .fetch_optional(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE webhook_deliveries SET status = 'failed' WHERE endpoint_id = $1 AND status = 'pending' AND NOT once",
        endpoint as WebhookEndpointId,
    )
    .execute(&mut *conn)
    .await?;
    if let Some(d) = disabled {
        let event = DomainEvent::WebhookEndpointDisabled(WebhookEndpointDisabled {
            endpoint_id: endpoint,
            url: d.url,
            reason: reason.to_owned(),
            disabled_at: d.disabled_at,
            endpoint_version: d.version,
        });
        events::record(conn, d.merchant_id, &event).await?;
    }
    Ok(())
}

/// The delivery's attempts as the dead-letter queue lists them (`[{at, error}]`).
async fn attempts_log(conn: &mut sqlx::PgConnection, delivery: WebhookDeliveryId) -> Result<serde_json::Value> {
    let rows = sqlx::query!(
        "SELECT status_code, error, created_at FROM webhook_attempts WHERE delivery_id = $1 ORDER BY created_at",
        delivery as WebhookDeliveryId,
    )
    .fetch_all(conn)
    .await?;
    Ok(serde_json::Value::Array(
        rows.into_iter()
            .map(|r| {
                let error = match (r.status_code, r.error) {
                    (Some(code), Some(e)) => format!("HTTP {code}: {e}"),
                    (Some(code), None) => format!("HTTP {code}"),
                    (None, e) => e.unwrap_or_else(|| "no answer".into()),
                };
                json!({ "at": r.created_at, "error": error })
            })
            .collect(),
    ))
}

/// A delivery as listed, with its attempts.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: WebhookDeliveryId,
    pub endpoint_id: WebhookEndpointId,
    pub event_id: EventId,
    pub event_type: String,
    /// `pending` (`sending` is shown as pending), `delivered`, `failed`.
    pub status: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub attempts: Vec<AttemptRow>,
}

#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub status_code: Option<i16>,
    pub duration_ms: i32,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Filters of [`list`].
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub endpoint: Option<WebhookEndpointId>,
    pub event_type: Option<String>,
    pub status: Option<String>,
}

/// The merchant's deliveries, newest first.
pub async fn list(
    pool: &PgPool,
    merchant: MerchantId,
    filter: &Filter,
    after: Option<WebhookDeliveryId>,
    fetch: i64,
) -> Result<Vec<Delivery>> {
    let rows = sqlx::query!(
        r#"SELECT id AS "id: WebhookDeliveryId", endpoint_id AS "endpoint_id: WebhookEndpointId",
                  event_id AS "event_id: EventId", event_type, status, next_attempt_at, created_at
           FROM webhook_deliveries
           WHERE merchant_id = $1
             AND ($2::uuid IS NULL OR endpoint_id = $2)
             AND ($3::text IS NULL OR event_type = $3)
             AND ($4::text IS NULL OR status = $4 OR ($4 = 'pending' AND status = 'sending'))
             AND ($5::uuid IS NULL OR (created_at, id) < (SELECT created_at, id FROM webhook_deliveries WHERE id = $5))
           ORDER BY created_at DESC, id DESC LIMIT $6"#,
        merchant as MerchantId,
        filter.endpoint.map(WebhookEndpointId::uuid),
        filter.event_type.as_deref(),
        filter.status.as_deref(),
        after.map(WebhookDeliveryId::uuid),
        fetch,
    )
    .fetch_all(pool)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id.uuid()).collect();
    let attempts = attempts_of(pool, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut d = shape(r.id, r.endpoint_id, r.event_id, r.event_type, r.status, r.next_attempt_at, r.created_at);
            d.attempts = attempts.iter().filter(|(of, _)| *of == r.id.uuid()).map(|(_, a)| a.clone()).collect();
            d
        })
        .collect())
}

/// One of the merchant's deliveries.
pub async fn get(pool: &PgPool, merchant: MerchantId, id: WebhookDeliveryId) -> Result<Delivery> {
    let row = sqlx::query!(
        r#"SELECT id AS "id: WebhookDeliveryId", endpoint_id AS "endpoint_id: WebhookEndpointId",
                  event_id AS "event_id: EventId", event_type, status, next_attempt_at, created_at
           FROM webhook_deliveries WHERE id = $1 AND merchant_id = $2"#,
        id as WebhookDeliveryId,
        merchant as MerchantId,
    )
    .fetch_optional(pool)
    .await?
    .ok_or(Error::NotFound("webhook delivery"))?;
    let mut delivery =
        shape(row.id, row.endpoint_id, row.event_id, row.event_type, row.status, row.next_attempt_at, row.created_at);
    delivery.attempts = attempts_of(pool, &[id.uuid()]).await?.into_iter().map(|(_, a)| a).collect();
    Ok(delivery)
}

fn shape(
    id: WebhookDeliveryId,
    endpoint_id: WebhookEndpointId,
    event_id: EventId,
    event_type: String,
    status: String,
    next_attempt_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
) -> Delivery {
    let pending = status == "pending" || status == "sending";
    Delivery {
        id,
        endpoint_id,
        event_id,
        event_type,
        status: if pending { "pending".into() } else { status },
        next_attempt_at: pending.then_some(next_attempt_at),
        created_at,
        attempts: Vec::new(),
    }
}

/// The attempts of these deliveries, oldest first, each with its delivery's id.
async fn attempts_of(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<(Uuid, AttemptRow)>> {
    let rows = sqlx::query!(
        r#"SELECT delivery_id, status_code, duration_ms, error, created_at FROM webhook_attempts
           WHERE delivery_id = ANY ($1) ORDER BY created_at, id"#,
        ids,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|a| {
            let row = AttemptRow {
                status_code: a.status_code,
                duration_ms: a.duration_ms,
                error: a.error,
                created_at: a.created_at,
            };
            (a.delivery_id, row)
        })
        .collect())
}

/// Sends a delivered or failed delivery once more, with the same
/// `webhook-id`; a pending one is left as it is (it is about to be sent).
pub async fn retry(pool: &PgPool, merchant: MerchantId, id: WebhookDeliveryId) -> Result<Delivery> {
    let found = sqlx::query_scalar!(
        "SELECT status FROM webhook_deliveries WHERE id = $1 AND merchant_id = $2",
        id as WebhookDeliveryId,
        merchant as MerchantId,
    )
    .fetch_optional(pool)
    .await?;
    if found.is_none() {
        return Err(Error::NotFound("webhook delivery"));
    }
    resend_once(pool, id).await?;
    get(pool, merchant, id).await
}

/// Puts a finished delivery back to pending for one more attempt (the
/// merchant's retry, the dead-letter queue's replay); `false` if it was
/// still pending or sending.
pub async fn resend_once(pool: &PgPool, id: WebhookDeliveryId) -> Result<bool> {
    let n = sqlx::query!(
        "UPDATE webhook_deliveries
         SET status = 'pending', once = true, next_attempt_at = now(), lease_owner = NULL, lease_until = NULL
         WHERE id = $1 AND status IN ('delivered', 'failed')",
        id as WebhookDeliveryId,
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}
