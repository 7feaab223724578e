//! Database helpers shared by every repository: error classification by
//! SQLSTATE and the one bounded retry loop for serialization failures.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::error::{Error, Result};

/// SQLSTATE 40001 (serialization failure) and 40P01 (deadlock): both mean
/// "run the whole transaction again".
pub fn is_retryable(err: &sqlx::Error) -> bool {
    matches!(sqlstate(err).as_deref(), Some("40001" | "40P01"))
}

/// SQLSTATE 23505 on the named constraint or index.
pub fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint),
        _ => false,
    }
}

/// Whether an error says the database is unavailable (rather than that the
/// statement was wrong): pool exhaustion, a dropped or refused connection, a
/// server shutting down (SQLSTATE class 08, 57P01–57P03, 53300) — as the
/// error the caller should answer with.
pub fn unavailable(err: &sqlx::Error) -> Option<Error> {
    match err {
        sqlx::Error::PoolTimedOut => Some(Error::Overloaded { retry_after: Duration::from_secs(1) }),
        sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => Some(Error::DatabaseUnavailable),
        _ => match sqlstate(err).as_deref() {
            Some(code) if code.starts_with("08") => Some(Error::DatabaseUnavailable),
            // 55000 on connect: "database … is not currently accepting connections".
            Some("57P01" | "57P02" | "57P03" | "53300" | "3D000" | "55000") => Some(Error::DatabaseUnavailable),
            _ => None,
        },
    }
}

/// SQLSTATE 23503 on the named foreign key.
pub fn is_foreign_key_violation(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => db.code().as_deref() == Some("23503") && db.constraint() == Some(constraint),
        _ => false,
    }
}

/// SQLSTATE 55P03 (`lock_timeout` expired): a hot row's queue was too long.
pub fn is_lock_timeout(err: &sqlx::Error) -> bool {
    sqlstate(err).as_deref() == Some("55P03")
}

fn sqlstate(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// How often and how patiently a transaction is retried on 40001/40P01.
#[derive(Debug, Clone, Copy)]
pub struct RetryBudget {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self { attempts: 8, base_delay: Duration::from_millis(2), max_delay: Duration::from_millis(100) }
    }
}

/// Runs `op` until it succeeds, fails for a reason other than a serialization
/// failure or deadlock, or the budget runs out; then the caller gets
/// [`Error::Contention`], never the raw 40001.
pub async fn retry_serializable<T, F, Fut>(budget: RetryBudget, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut delay = budget.base_delay;
    for attempt in 1..=budget.attempts {
        match op().await {
            Err(Error::Database(err)) if is_retryable(&err) => {
                metrics::counter!("gavel_db_retries_total").increment(1);
                if attempt == budget.attempts {
                    break;
                }
                let jitter = rand::rng().random_range(0..=delay.as_micros() as u64);
                tokio::time::sleep(Duration::from_micros(jitter)).await;
                delay = (delay * 2).min(budget.max_delay);
            }
            other => return other,
        }
    }
    Err(Error::Contention { retry_after: Duration::from_secs(1) })
}
