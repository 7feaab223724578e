//! The delivery policy: what the delivery loop holds back of the push
//! deliveries it claimed, before anything is sent. Critical kinds (order
//! paid, payment failed, auction won, payment due) never pass through here:
//! they ignore both rules (and the claim already takes them first).
//!
//! - **Coalescing**: non-critical pushes that carry a collapse key (outbids
//!   on one auction, reminders of one auction or claim) and go to one device
//!   form a group. A delivery waits `coalesce` after it was made; when it is
//!   due, every newer pending delivery of its group is merged into it
//!   (`skipped`, "coalesced into dlv_…") and it is sent with the newest one's
//!   message. Five outbids within the window are one push with the latest
//!   price, at most one window after the first, whatever keeps arriving
//!   (no starvation: the oldest is always sent on time). APNs gets the key as
//!   `apns-collapse-id` and FCM as `collapse_key`, so a device that is offline
//!   also keeps only the last.
//! - **Rate limit**: at most `push_limit` non-critical push messages per
//!   buyer per `push_window`, counted in PostgreSQL (`notify_rate_admits`,
//!   admitted a claimed batch at a time under per-buyer advisory locks), so
//!   every notifier process shares one budget. A message sent to two devices
//!   counts once (its event, or its sale for a sale-start notice). A delivery over the limit is `skipped` ("rate limited"):
//!   a late reminder or outbid is worth less than a quiet phone.
//!
//! Email is not limited or coalesced here (its rows carry no collapse key).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use gavel_domain::ids::{BuyerId, DeliveryId};
use sqlx::PgPool;
use uuid::Uuid;

/// The policy's settings (`[notifier]`).
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// How long a collapsible push waits for newer ones of its group (0: not at all).
    pub coalesce: Duration,
    /// Non-critical pushes per buyer per `push_window` (0: no limit).
    pub push_limit: u32,
    pub push_window: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self { coalesce: Duration::from_secs(60), push_limit: 5, push_window: Duration::from_secs(600) }
    }
}

/// What the policy decided for one claimed delivery it looked at.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Recorded already (postponed or skipped, lease released): do not send.
    Held,
    /// Send this message instead of the stored one (the newest of its group).
    SendInstead(serde_json::Value),
}

/// The verdicts of one batch; deliveries not named go out as they are.
#[derive(Debug, Default)]
pub struct Screened {
    verdicts: HashMap<DeliveryId, Verdict>,
}

impl Screened {
    /// Whether `id` is to be sent, replacing `payload` if the policy merged newer messages into it.
    pub fn keep(&self, id: DeliveryId, payload: &mut serde_json::Value) -> bool {
        match self.verdicts.get(&id) {
            None => true,
            Some(Verdict::Held) => false,
            Some(Verdict::SendInstead(newer)) => {
                *payload = newer.clone();
                true
            }
        }
    }
}

struct Row {
    id: DeliveryId,
    buyer_id: BuyerId,
    channel: String,
    device_id: Option<Uuid>,
    collapse_key: Option<String>,
    /// The message, as the rate limit counts it: its event, the sale for a
    /// sale-start notice, else the delivery (one per device otherwise).
    message_key: String,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
}

/// Applies the policy to `ids`, deliveries this worker (`owner`) has just
/// claimed. Only non-critical push deliveries are looked at.
pub async fn screen(
    pool: &PgPool,
    config: &PolicyConfig,
    owner: &str,
    ids: &[DeliveryId],
) -> Result<Screened, sqlx::Error> {
    let mut out = Screened::default();
    if ids.is_empty() || (config.coalesce.is_zero() && config.push_limit == 0) {
        return Ok(out);
    }
    let raw: Vec<Uuid> = ids.iter().map(|id| id.uuid()).collect();
    let rows = sqlx::query_as!(
        Row,
        r#"SELECT id AS "id: DeliveryId", buyer_id AS "buyer_id: BuyerId", channel, device_id, collapse_key,
                  coalesce(event_id::text, 'sale:' || sale_id::text, id::text) AS "message_key!",
                  created_at, now() AS "now!"
           FROM deliveries
           WHERE id = ANY($1) AND NOT critical AND channel <> 'email'
             AND ((status = 'sending' AND lease_owner = $2) OR (status = 'held' AND EXISTS (
                  SELECT 1 FROM sale_notice_chunks k
                  WHERE k.sale_id = deliveries.sale_id AND k.chunk = deliveries.chunk AND k.lease_owner = $2)))"#,
        &raw[..],
        owner,
    )
    .fetch_all(pool)
    .await?;
    // Oldest first: the oldest of a group carries it, merging the newer ones
    // (pending, or claimed in this same batch).
    let mut rows = rows;
    rows.sort_by_key(|r| (r.created_at, r.id));
    let mut admit = Vec::with_capacity(rows.len());
    for row in rows {
        if out.verdicts.contains_key(&row.id) {
            continue; // merged into an older one of its group above
        }
        match coalesce(pool, config, owner, &row).await? {
            Some((verdict @ Verdict::Held, _)) => {
                out.verdicts.insert(row.id, verdict);
            }
            Some((verdict, merged)) => {
                out.verdicts.insert(row.id, verdict);
                out.verdicts.extend(merged.into_iter().map(|id| (id, Verdict::Held)));
                admit.push(row);
            }
            None => admit.push(row),
        }
    }
    if config.push_limit > 0 && !admit.is_empty() {
        for id in rate_limit(pool, config, owner, &admit).await? {
            out.verdicts.insert(id, Verdict::Held);
        }
    }
    Ok(out)
}

/// `None`: not collapsible (or nothing to merge), send as it is; else the
/// verdict and the deliveries merged into this one.
async fn coalesce(
    pool: &PgPool,
    config: &PolicyConfig,
    owner: &str,
    row: &Row,
) -> Result<Option<(Verdict, Vec<DeliveryId>)>, sqlx::Error> {
    let Some(key) = &row.collapse_key else { return Ok(None) };
    if config.coalesce.is_zero() {
        return Ok(None);
    }
    let window = chrono::Duration::milliseconds(i64::try_from(config.coalesce.as_millis()).unwrap_or(i64::MAX / 2));
    let due = row.created_at.checked_add_signed(window).unwrap_or(row.now);
    if due > row.now {
        // Wait for the rest of its group; the attempt is not counted.
        sqlx::query!(
            "UPDATE deliveries SET status = 'pending', attempts = attempts - 1, next_attempt_at = $3,
                    lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND status = 'sending' AND lease_owner = $2",
            row.id as DeliveryId,
            owner,
            due,
        )
        .execute(pool)
        .await?;
        metrics::counter!("gavel_notifier_deliveries_total", "channel" => label(&row.channel), "outcome" => "held")
            .increment(1);
        return Ok(Some((Verdict::Held, Vec::new())));
    }
    let mut tx = pool.begin().await?;
    let into = format!("coalesced into {}", row.id);
    // Newer than this one: later creation, or the same fan-out transaction
    // and a later (time-ordered) id.
    let merged = sqlx::query!(
        r#"WITH merged AS (
               UPDATE deliveries SET status = 'skipped', lease_owner = NULL, lease_until = NULL,
                      attempt_log = attempt_log || jsonb_build_array(jsonb_build_object('at', now(), 'error', $6::text))
               WHERE buyer_id = $1 AND channel = $2 AND device_id IS NOT DISTINCT FROM $3 AND collapse_key = $4
                 AND (status = 'pending' OR (status = 'sending' AND lease_owner = $7))
                 AND (created_at, id) > ($5, $8)
               RETURNING id, payload, created_at)
           SELECT id AS "id!: DeliveryId", payload AS "payload!" FROM merged ORDER BY created_at DESC, id DESC"#,
        row.buyer_id as BuyerId,
        row.channel,
        row.device_id,
        key,
        row.created_at,
        into,
        owner,
        row.id as DeliveryId,
    )
    .fetch_all(&mut *tx)
    .await?;
    let Some(newest) = merged.first() else {
        tx.rollback().await?;
        return Ok(None);
    };
    let payload = newest.payload.clone();
    // The row records what is actually sent.
    sqlx::query!(
        "UPDATE deliveries SET payload = $3 WHERE id = $1 AND status = 'sending' AND lease_owner = $2",
        row.id as DeliveryId,
        owner,
        payload,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("gavel_notifier_deliveries_total", "channel" => label(&row.channel), "outcome" => "coalesced")
        .increment(merged.len() as u64);
    Ok(Some((Verdict::SendInstead(payload), merged.into_iter().map(|m| m.id).collect())))
}

/// Takes a slot of each buyer's budget for each message, for the whole
/// batch at once; returns the deliveries over the limit, recorded `skipped`.
///
/// One transaction of three statements whatever the batch's size: the
/// buyers' advisory locks (the same locks as `notify_rate_admit()`, taken in
/// buyer order, so no two callers wait on each other in a cycle), the
/// buyers' admits older than the window pruned, then every message not yet
/// admitted takes a slot while its buyer has one (messages of one buyer in
/// key order). A message already admitted (its other devices) passes again.
async fn rate_limit(
    pool: &PgPool,
    config: &PolicyConfig,
    owner: &str,
    rows: &[Row],
) -> Result<Vec<DeliveryId>, sqlx::Error> {
    let limit = i64::from(config.push_limit);
    let window_ms = config.push_window.as_millis() as f64;
    let mut buyers: Vec<Uuid> = rows.iter().map(|r| r.buyer_id.uuid()).collect();
    buyers.sort_unstable();
    buyers.dedup();
    let row_buyers: Vec<Uuid> = rows.iter().map(|r| r.buyer_id.uuid()).collect();
    let row_keys: Vec<String> = rows.iter().map(|r| r.message_key.clone()).collect();
    let mut tx = pool.begin().await?;
    sqlx::query_scalar!(
        r#"SELECT count(pg_advisory_xact_lock(hashtextextended('notify_rate:' || b::text, 0))) AS "locked!"
           FROM (SELECT b FROM UNNEST($1::uuid[]) AS b ORDER BY b OFFSET 0) s"#,
        &buyers[..],
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!(
        "DELETE FROM notify_rate_admits
         WHERE buyer_id = ANY($1) AND admitted_at <= now() - $2 * interval '1 millisecond'",
        &buyers[..],
        window_ms,
    )
    .execute(&mut *tx)
    .await?;
    let admitted = sqlx::query!(
        r#"WITH m AS (SELECT DISTINCT u.buyer, u.msg FROM UNNEST($1::uuid[], $2::text[]) AS u(buyer, msg)),
                known AS (SELECT m.buyer, m.msg FROM m
                          JOIN notify_rate_admits a ON a.buyer_id = m.buyer AND a.message_key = m.msg),
                used AS (SELECT buyer_id, count(*) AS n FROM notify_rate_admits
                         WHERE buyer_id = ANY($1) GROUP BY buyer_id),
                fresh AS (SELECT m.buyer, m.msg,
                                 coalesce(used.n, 0) + row_number() OVER (PARTITION BY m.buyer ORDER BY m.msg) AS nth
                          FROM m LEFT JOIN used ON used.buyer_id = m.buyer
                          WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.buyer = m.buyer AND k.msg = m.msg)),
                taken AS (INSERT INTO notify_rate_admits (buyer_id, message_key)
                          SELECT buyer, msg FROM fresh WHERE nth <= $3
                          RETURNING buyer_id, message_key)
           SELECT buyer_id AS "buyer!", message_key AS "msg!" FROM taken
           UNION ALL SELECT buyer, msg FROM known"#,
        &row_buyers[..],
        &row_keys[..],
        limit,
    )
    .fetch_all(&mut *tx)
    .await?;
    let admitted: HashSet<(Uuid, &str)> = admitted.iter().map(|a| (a.buyer, a.msg.as_str())).collect();
    let refused: Vec<DeliveryId> = rows
        .iter()
        .filter(|r| !admitted.contains(&(r.buyer_id.uuid(), r.message_key.as_str())))
        .map(|r| r.id)
        .collect();
    if refused.is_empty() {
        tx.commit().await?;
        return Ok(refused);
    }
    let why = format!("rate limited: over {} pushes per {} s", config.push_limit, config.push_window.as_secs());
    let raw: Vec<Uuid> = refused.iter().map(|id| id.uuid()).collect();
    let skipped = sqlx::query_scalar!(
        "UPDATE deliveries SET status = 'skipped', lease_owner = NULL, lease_until = NULL,
                attempt_log = attempt_log || jsonb_build_array(jsonb_build_object('at', now(), 'error', $3::text))
         WHERE id = ANY($1)
           AND ((status = 'sending' AND lease_owner = $2) OR (status = 'held' AND EXISTS (
                SELECT 1 FROM sale_notice_chunks k
                WHERE k.sale_id = deliveries.sale_id AND k.chunk = deliveries.chunk AND k.lease_owner = $2)))
         RETURNING channel",
        &raw[..],
        owner,
        why,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    for channel in &skipped {
        metrics::counter!("gavel_notifier_deliveries_total", "channel" => label(channel), "outcome" => "rate_limited")
            .increment(1);
    }
    tracing::info!(count = refused.len(), "non-critical pushes over a buyer's rate limit skipped");
    Ok(refused)
}

/// Bounded metric labels.
fn label(channel: &str) -> &'static str {
    crate::channel::ChannelKind::parse(channel).map_or("unknown", crate::channel::ChannelKind::as_str)
}
