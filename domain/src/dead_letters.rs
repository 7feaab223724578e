//! The dead-letter queue: what exhausted its retries (a notification's
//! delivery, later a webhook or a durable job), with its full context, for an
//! operator to inspect, replay once, or discard (`gavel dlq`, the admin API).
//!
//! The notifier writes entries ([`open`]) in the same transaction that marks
//! the delivery `failed`; a replay ([`retry`]) flips the entry to `retried` and
//! puts the delivery back to `pending` in one transaction, guarded on the
//! entry being `open`, so a second replay re-queues nothing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use crate::error::{Error, Invalid, Result};
use crate::ids::DeadLetterId;

/// What failed: `notification` (a delivery), `webhook`, `job`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Notification,
    Webhook,
    Job,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Notification => "notification",
            Self::Webhook => "webhook",
            Self::Job => "job",
        }
    }

    pub fn parse(s: &str) -> std::result::Result<Self, Invalid> {
        match s {
            "notification" => Ok(Self::Notification),
            "webhook" => Ok(Self::Webhook),
            "job" => Ok(Self::Job),
            _ => Err(Invalid::new("kind", "must be notification, webhook or job")),
        }
    }
}

/// `open` → `retried` | `discarded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Retried,
    Discarded,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Retried => "retried",
            Self::Discarded => "discarded",
        }
    }

    pub fn parse(s: &str) -> std::result::Result<Self, Invalid> {
        match s {
            "open" => Ok(Self::Open),
            "retried" => Ok(Self::Retried),
            "discarded" => Ok(Self::Discarded),
            _ => Err(Invalid::new("status", "must be open, retried or discarded")),
        }
    }
}

/// One failed attempt, as the entry lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    pub error: String,
}

/// One entry, as stored (and as `gavel dlq` prints it).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: DeadLetterId,
    pub kind: String,
    pub status: String,
    /// The delivery's or job's id.
    pub subject: String,
    pub recipient: Option<String>,
    pub channel: Option<String>,
    pub payload: serde_json::Value,
    /// `[{at, error}]`.
    pub attempts: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// What goes into a new entry.
#[derive(Debug, Clone)]
pub struct NewDeadLetter<'a> {
    pub kind: Kind,
    pub subject: &'a str,
    pub recipient: Option<&'a str>,
    pub channel: Option<&'a str>,
    pub payload: &'a serde_json::Value,
    pub attempts: &'a serde_json::Value,
}

const COLUMNS: &str = "id, kind, status, subject, recipient, channel, payload, attempts, created_at, resolved_at";

/// Opens an entry (in the caller's transaction). The same subject failing
/// again after a replay re-opens its entry with the new attempts.
pub async fn open(conn: &mut PgConnection, new: &NewDeadLetter<'_>) -> Result<DeadLetterId> {
    let id: DeadLetterId = sqlx::query_scalar(
        "INSERT INTO dead_letters (id, kind, subject, recipient, channel, payload, attempts)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (kind, subject) DO UPDATE
            SET status = 'open', attempts = EXCLUDED.attempts, payload = EXCLUDED.payload,
                resolved_at = NULL, created_at = now()
         RETURNING id",
    )
    .bind(DeadLetterId::new())
    .bind(new.kind.as_str())
    .bind(new.subject)
    .bind(new.recipient)
    .bind(new.channel)
    .bind(new.payload)
    .bind(new.attempts)
    .fetch_one(conn)
    .await?;
    Ok(id)
}

/// Entries newest first, optionally of one kind and status; `limit + 1` rows
/// are fetched by the caller's paging (`before`: the last id of the previous page).
pub async fn list(
    pool: &PgPool,
    kind: Option<Kind>,
    status: Option<Status>,
    after: Option<DeadLetterId>,
    fetch: i64,
) -> Result<Vec<DeadLetter>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM dead_letters
         WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR status = $2)
           AND ($3::uuid IS NULL OR (created_at, id) < (SELECT created_at, id FROM dead_letters WHERE id = $3))
         ORDER BY created_at DESC, id DESC LIMIT $4"
    );
    Ok(sqlx::query_as::<_, DeadLetter>(sqlx::AssertSqlSafe(sql))
        .bind(kind.map(Kind::as_str))
        .bind(status.map(Status::as_str))
        .bind(after)
        .bind(fetch)
        .fetch_all(pool)
        .await?)
}

pub async fn get(pool: &PgPool, id: DeadLetterId) -> Result<DeadLetter> {
    let sql = format!("SELECT {COLUMNS} FROM dead_letters WHERE id = $1");
    sqlx::query_as::<_, DeadLetter>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::NotFound("dead letter"))
}

/// Open entries per kind (the DLQ depth gauge).
pub async fn open_counts(pool: &PgPool) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as::<_, (String, i64)>(
        "SELECT kind, count(*) FROM dead_letters WHERE status = 'open' GROUP BY kind",
    )
    .fetch_all(pool)
    .await?)
}

/// Replays an open entry once: a notification's delivery goes back to
/// `pending`, due now, with a fresh retry budget (its earlier attempts stay
/// in its log). An entry that is not open is answered as it stands and
/// nothing is re-queued. A webhook entry re-sends its delivery once; job entries cannot be replayed yet.
pub async fn retry(pool: &PgPool, id: DeadLetterId) -> Result<DeadLetter> {
    let entry = get(pool, id).await?;
    if entry.kind == Kind::Job.as_str() {
        return retry_job(pool, entry).await;
    }
    if entry.kind == Kind::Webhook.as_str() {
        return retry_webhook(pool, id).await;
    }
    if entry.kind != Kind::Notification.as_str() {
        return Err(Invalid::new("id", format!("{} entries cannot be replayed yet", entry.kind)).into());
    }
    let mut tx = pool.begin().await?;
    let flipped: Option<String> = sqlx::query_scalar(
        "UPDATE dead_letters SET status = 'retried', resolved_at = now()
         WHERE id = $1 AND status = 'open' RETURNING subject",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(subject) = flipped {
        let delivery = subject
            .parse::<crate::ids::DeliveryId>()
            .map_err(|_| Error::Internal(format!("dead letter {id} names no delivery: {subject}")))?;
        sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(),
                    lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND status = 'failed'",
        )
        .bind(delivery)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    get(pool, id).await
}

/// A `job` entry: flips it to `retried` and queues its job again, in one
/// transaction guarded on the entry being open (a second replay queues
/// nothing).
async fn retry_job(pool: &PgPool, entry: DeadLetter) -> Result<DeadLetter> {
    let mut tx = pool.begin().await?;
    let flipped = sqlx::query_scalar!(
        "UPDATE dead_letters SET status = 'retried', resolved_at = now()
         WHERE id = $1 AND kind = 'job' AND status = 'open' RETURNING created_at",
        entry.id as DeadLetterId,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(opened_at) = flipped {
        crate::job_dead_letters::replay(&mut tx, entry.id, opened_at, &entry.payload).await?;
    }
    tx.commit().await?;
    get(pool, entry.id).await
}

/// Replays an open webhook entry once: its delivery goes back to `pending`
/// for one more attempt with the same `webhook-id` (even to a disabled
/// endpoint), guarded on the entry being `open`.
async fn retry_webhook(pool: &PgPool, id: DeadLetterId) -> Result<DeadLetter> {
    let mut tx = pool.begin().await?;
    let flipped = sqlx::query_scalar!(
        "UPDATE dead_letters SET status = 'retried', resolved_at = now()
         WHERE id = $1 AND status = 'open' AND kind = 'webhook' RETURNING subject",
        id as DeadLetterId,
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(subject) = flipped {
        let delivery = subject
            .parse::<crate::ids::WebhookDeliveryId>()
            .map_err(|_| Error::Internal(format!("dead letter {id} names no webhook delivery: {subject}")))?;
        sqlx::query!(
            "UPDATE webhook_deliveries
             SET status = 'pending', once = true, next_attempt_at = now(), lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND status = 'failed'",
            delivery as crate::ids::WebhookDeliveryId,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    get(pool, id).await
}

/// Discards an open entry (nothing is sent); another state is answered as it stands.
pub async fn discard(pool: &PgPool, id: DeadLetterId) -> Result<DeadLetter> {
    get(pool, id).await?;
    sqlx::query("UPDATE dead_letters SET status = 'discarded', resolved_at = now() WHERE id = $1 AND status = 'open'")
        .bind(id)
        .execute(pool)
        .await?;
    get(pool, id).await
}
