//! Stored responses for `Idempotency-Key`.
//!
//! The first request with a key reserves it (with a hash of the request); when
//! it finishes its response is stored. A repeat with the same request gets the
//! stored response; with a different request, a mismatch; while the first is
//! still running, "in progress". A reservation left by a crashed process is
//! taken over after [`STALE_AFTER_SECONDS`].

use sqlx::PgPool;

use crate::error::Result;

pub const STALE_AFTER_SECONDS: i64 = 60;

#[derive(Debug, PartialEq, Eq)]
pub enum Reservation {
    /// Go ahead; call [`complete`] (or [`release`]) afterwards.
    Proceed,
    Replay {
        status: u16,
        content_type: Option<String>,
        body: Vec<u8>,
    },
    Mismatch,
    InProgress,
}

pub async fn reserve(pool: &PgPool, scope: &str, key: &str, request_hash: &[u8]) -> Result<Reservation> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)
         ON CONFLICT (scope, key) DO UPDATE SET created_at = now()
             WHERE idempotency_keys.completed_at IS NULL
               AND idempotency_keys.request_hash = EXCLUDED.request_hash
               AND idempotency_keys.created_at < now() - make_interval(secs => $4)",
    )
    .bind(scope)
    .bind(key)
    .bind(request_hash)
    .bind(STALE_AFTER_SECONDS as f64)
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Reservation::Proceed);
    }
    let row: Option<Stored> = sqlx::query_as(
        "SELECT request_hash, status_code, content_type, body FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        None => Reservation::InProgress,
        Some(stored) if stored.request_hash != request_hash => Reservation::Mismatch,
        Some(Stored { status_code: Some(status), content_type, body, .. }) => {
            Reservation::Replay { status: status as u16, content_type, body: body.unwrap_or_default() }
        }
        Some(_) => Reservation::InProgress,
    })
}

#[derive(sqlx::FromRow)]
struct Stored {
    request_hash: Vec<u8>,
    status_code: Option<i16>,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
}

pub async fn complete(
    pool: &PgPool,
    scope: &str,
    key: &str,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET status_code = $3, content_type = $4, body = $5, completed_at = now()
         WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .bind(status as i16)
    .bind(content_type)
    .bind(body)
    .execute(pool)
    .await?;
    Ok(())
}

/// Forgets a reservation whose request failed on our side, so a retry may run.
pub async fn release(pool: &PgPool, scope: &str, key: &str) -> Result<()> {
    sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND completed_at IS NULL")
        .bind(scope)
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes stored responses older than `days` (run by a periodic job).
pub async fn prune(pool: &PgPool, days: i32) -> Result<u64> {
    Ok(sqlx::query("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(days => $1)")
        .bind(days)
        .execute(pool)
        .await?
        .rows_affected())
}
