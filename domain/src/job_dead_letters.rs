//! Durable jobs that exhaust their retries land in the dead-letter queue
//! (kind `job`), like a notification's delivery does.
//!
//! A job's retries are rounds: each failed round records its error here
//! ([`record_failure`], table `job_attempts`, keyed by the job's subject such
//! as `refund:pay_…`) and queues the next round; the round that spends the
//! budget calls [`dead_letter`], which writes the entry — the queue and the
//! job as its payload, every round's error as its attempts — in the caller's
//! transaction. A replay ([`replay`], from `dead_letters::retry`) queues the
//! job once more in the transaction that flips the entry to `retried`; if it
//! fails again it dead-letters again and the same entry re-opens with the new
//! attempt added.

use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;

use crate::dead_letters::{self, Kind, NewDeadLetter};
use crate::error::{Error, Result};
use crate::ids::DeadLetterId;
use crate::jobs;

/// Records one failed round of the job known as `subject`.
pub async fn record_failure(conn: &mut PgConnection, subject: &str, error: &str) -> Result<()> {
    sqlx::query!("INSERT INTO job_attempts (subject, error) VALUES ($1, $2)", subject, error).execute(conn).await?;
    Ok(())
}

/// The last round failed too (`error`): records it and opens (or re-opens)
/// the job's dead letter with every round's error.
pub async fn dead_letter<T: Serialize>(
    conn: &mut PgConnection,
    subject: &str,
    queue: &str,
    job: &T,
    error: &str,
) -> Result<DeadLetterId> {
    record_failure(&mut *conn, subject, error).await?;
    let attempts: serde_json::Value = sqlx::query_scalar!(
        r#"SELECT coalesce(jsonb_agg(jsonb_build_object('at', at, 'error', error) ORDER BY at), '[]') AS "a!"
           FROM job_attempts WHERE subject = $1"#,
        subject,
    )
    .fetch_one(&mut *conn)
    .await?;
    let job = serde_json::to_value(job).map_err(|e| Error::Internal(format!("job encoding: {e}")))?;
    let payload = json!({ "queue": queue, "job": job });
    let entry = NewDeadLetter {
        kind: Kind::Job,
        subject,
        recipient: None,
        channel: None,
        payload: &payload,
        attempts: &attempts,
    };
    let id = dead_letters::open(conn, &entry).await?;
    metrics::counter!("gavel_jobs_dead_lettered_total", "queue" => queue_label(queue)).increment(1);
    tracing::error!(subject, queue, error, dead_letter = %id, "a job exhausted its retries; dead-lettered");
    Ok(id)
}

/// Queues a dead-lettered job's payload (`{queue, job}`) again, now. The
/// caller has just flipped entry `id` from `open` to `retried` in `conn`'s
/// transaction, which is what makes this happen once per opening.
pub(crate) async fn replay(
    conn: &mut PgConnection,
    id: DeadLetterId,
    opened_at: chrono::DateTime<chrono::Utc>,
    payload: &serde_json::Value,
) -> Result<()> {
    let (Some(queue), Some(job)) = (payload.get("queue").and_then(|q| q.as_str()), payload.get("job")) else {
        return Err(Error::Internal(format!("dead letter {id} holds no job")));
    };
    let key = format!("dlq:{id}:{}", opened_at.timestamp_micros());
    jobs::enqueue(conn, queue, job, chrono::Utc::now(), &key).await?;
    tracing::info!(dead_letter = %id, queue, "dead-lettered job queued again");
    Ok(())
}

/// Deletes at most `limit` recorded failures older than `days` (the hourly
/// maintenance job): those of jobs that since succeeded or whose dead letter
/// was discarded. A dead letter still open or replayed keeps its subject's
/// rounds, so that a replay failing again re-opens it with all of them.
pub async fn prune(pool: &sqlx::PgPool, days: i32, limit: i64) -> Result<u64> {
    Ok(sqlx::query!(
        "DELETE FROM job_attempts WHERE ctid IN (
            SELECT a.ctid FROM job_attempts a
            WHERE a.at < now() - make_interval(days => $1)
              AND NOT EXISTS (SELECT 1 FROM dead_letters d
                              WHERE d.kind = 'job' AND d.subject = a.subject AND d.status <> 'discarded')
            LIMIT $2)",
        days,
        limit,
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// Bounded metric labels: the known queues, else `other`.
fn queue_label(queue: &str) -> &'static str {
    use crate::jobs::queues;
    [queues::SALE_LIFECYCLE, queues::MAINTENANCE, queues::PAYMENTS, queues::AUCTION_LIFECYCLE]
        .into_iter()
        .find(|q| *q == queue)
        .unwrap_or("other")
}
