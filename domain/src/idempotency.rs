//! Stored answers for `Idempotency-Key`, scoped to a principal.
//!
//! A row is only ever a finished answer: it is written in the same
//! transaction as the request's effect (or, for requests whose resource
//! makes a repeat harmless, after it), never as a reservation. "Someone is
//! working on this key" is a transaction-scoped advisory lock instead
//! ([`try_lock`]): it lives exactly as long as the transaction holding it, so
//! a crashed process's claim on a key vanishes with its connection.

use sqlx::{PgConnection, PgExecutor};

use crate::error::Result;

/// A finished answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub request_hash: Vec<u8>,
    pub status_code: i16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// The answer stored under (scope, key), if any. Reservations left by
/// earlier versions (no answer yet) count as nothing.
pub async fn lookup<'c>(db: impl PgExecutor<'c>, scope: &str, key: &str) -> Result<Option<Stored>> {
    let stored = sqlx::query_as!(
        Stored,
        r#"SELECT request_hash, status_code AS "status_code!", content_type, body AS "body!" FROM idempotency_keys
           WHERE scope = $1 AND key = $2 AND status_code IS NOT NULL AND body IS NOT NULL"#,
        scope,
        key,
    )
    .fetch_optional(db)
    .await?;
    Ok(stored)
}

/// Takes the key for the rest of the caller's transaction; `false` when a
/// live transaction (this process's or another's) holds it.
pub async fn try_lock(conn: &mut PgConnection, scope: &str, key: &str) -> Result<bool> {
    let locked = sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_xact_lock(hashtextextended($1 || chr(10) || $2, 8)) AS "locked!""#,
        scope,
        key,
    )
    .fetch_one(conn)
    .await?;
    Ok(locked)
}

/// Stores the answer; `false` when one is already stored (the first wins).
pub async fn store<'c>(db: impl PgExecutor<'c>, scope: &str, key: &str, answer: &Stored) -> Result<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO idempotency_keys (scope, key, request_hash, status_code, content_type, body, completed_at)
         VALUES ($1, $2, $3, $4, $5, $6, now())
         ON CONFLICT (scope, key) DO UPDATE
             SET request_hash = EXCLUDED.request_hash, status_code = EXCLUDED.status_code,
                 content_type = EXCLUDED.content_type, body = EXCLUDED.body, completed_at = now()
             WHERE idempotency_keys.status_code IS NULL",
        scope,
        key,
        answer.request_hash,
        answer.status_code,
        answer.content_type,
        answer.body,
    )
    .execute(db)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Deletes stored responses older than `days` (run by a periodic job).
pub async fn prune<'c>(db: impl PgExecutor<'c>, days: i32) -> Result<u64> {
    Ok(sqlx::query!("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(days => $1)", days)
        .execute(db)
        .await?
        .rows_affected())
}
