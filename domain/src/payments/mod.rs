//! Payment attempts: one row per call to the provider, written *before* the
//! call with the idempotency key it carries, so its outcome can always be
//! found again (by retrying with the key, or by searching the provider for the
//! attempt's id in the metadata). Their states move only through
//! [`transition`].
//!
//! Beside them: [`refunds`] (money returned for a payment that must not
//! stand) and [`provider`] (what the provider says about a charge, and when
//! that may not settle an attempt).

mod method;
pub mod provider;
pub mod refunds;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::{Error, Result};
use crate::ids::{OrderId, PaymentId};
use crate::money::{Currency, Money};
use crate::status::status_enum;

pub use method::PaymentMethod;
pub use provider::{IntentFacts, Refusal};

status_enum!(
    /// See [`PaymentStatus::can_become`]. `Unknown` is never taken for a
    /// failure: the provider may have charged; verification asks it.
    pub enum PaymentStatus ("payment status") {
        /// Recorded; the call is about to be made or is in flight.
        Processing => "processing",
        /// The call timed out or its answer was lost: being verified.
        Unknown => "unknown",
        Succeeded => "succeeded",
        Failed => "failed",
        Refunded => "refunded",
    }
);

impl PaymentStatus {
    /// The outcome is not known yet.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Processing | Self::Unknown)
    }

    /// An attempt's state machine: `Processing → Unknown | Succeeded |
    /// Failed`, `Unknown → Succeeded | Failed`, `Succeeded → Refunded`. The
    /// first definite outcome wins: nothing leaves `Failed`, and `Succeeded`
    /// only by a refund.
    pub fn can_become(self, to: Self) -> bool {
        use PaymentStatus::*;
        matches!(
            (self, to),
            (Processing, Unknown | Succeeded | Failed) | (Unknown, Succeeded | Failed) | (Succeeded, Refunded)
        )
    }
}

#[derive(Debug, Clone)]
pub struct Payment {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub attempt: i32,
    pub idempotency_key: String,
    pub payment_method: PaymentMethod,
    pub amount: Money,
    pub status: PaymentStatus,
    /// The provider's id (Stripe's `pi_…`), once known.
    pub provider_id: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub verify_attempts: i32,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

/// A `payments` row as stored.
struct PaymentRow {
    id: PaymentId,
    order_id: OrderId,
    attempt: i32,
    idempotency_key: String,
    payment_method: PaymentMethod,
    amount: i64,
    currency: Currency,
    status: PaymentStatus,
    provider_id: Option<String>,
    failure_code: Option<String>,
    failure_message: Option<String>,
    verify_attempts: i32,
    created_at: DateTime<Utc>,
    settled_at: Option<DateTime<Utc>>,
}

impl From<PaymentRow> for Payment {
    fn from(r: PaymentRow) -> Self {
        Self {
            id: r.id,
            order_id: r.order_id,
            attempt: r.attempt,
            idempotency_key: r.idempotency_key,
            payment_method: r.payment_method,
            amount: Money::new(r.amount, r.currency),
            status: r.status,
            provider_id: r.provider_id,
            failure_code: r.failure_code,
            failure_message: r.failure_message,
            verify_attempts: r.verify_attempts,
            created_at: r.created_at,
            settled_at: r.settled_at,
        }
    }
}

/// What a new attempt is for.
#[derive(Debug, Clone)]
pub struct NewPayment<'a> {
    pub order: OrderId,
    pub attempt: i32,
    /// Derived from what is paid for (the claim, or the order and attempt), so
    /// a retry after a crash sends the same key.
    pub idempotency_key: String,
    pub payment_method: &'a PaymentMethod,
    pub amount: Money,
}

/// Records an attempt, `Processing`.
pub async fn insert(conn: &mut PgConnection, new: &NewPayment<'_>) -> Result<Payment> {
    let row = sqlx::query_as!(
        PaymentRow,
        r#"INSERT INTO payments (id, order_id, attempt, idempotency_key, payment_method, amount, currency, status)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'processing')
           RETURNING id AS "id: PaymentId", order_id AS "order_id: OrderId", attempt, idempotency_key,
                     payment_method AS "payment_method: PaymentMethod", amount, currency AS "currency: Currency",
                     status AS "status: PaymentStatus", provider_id, failure_code, failure_message,
                     verify_attempts, created_at, settled_at"#,
        PaymentId::new() as PaymentId,
        new.order as OrderId,
        new.attempt,
        new.idempotency_key,
        new.payment_method as &PaymentMethod,
        new.amount.minor(),
        new.amount.currency() as Currency,
    )
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

pub async fn get(conn: &mut PgConnection, id: PaymentId) -> Result<Option<Payment>> {
    let row = sqlx::query_as!(
        PaymentRow,
        r#"SELECT id AS "id: PaymentId", order_id AS "order_id: OrderId", attempt, idempotency_key,
                  payment_method AS "payment_method: PaymentMethod", amount, currency AS "currency: Currency",
                  status AS "status: PaymentStatus", provider_id, failure_code, failure_message,
                  verify_attempts, created_at, settled_at
           FROM payments WHERE id = $1"#,
        id as PaymentId,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Payment::from))
}

pub async fn lock(conn: &mut PgConnection, id: PaymentId) -> Result<Option<Payment>> {
    let row = sqlx::query_as!(
        PaymentRow,
        r#"SELECT id AS "id: PaymentId", order_id AS "order_id: OrderId", attempt, idempotency_key,
                  payment_method AS "payment_method: PaymentMethod", amount, currency AS "currency: Currency",
                  status AS "status: PaymentStatus", provider_id, failure_code, failure_message,
                  verify_attempts, created_at, settled_at
           FROM payments WHERE id = $1 FOR UPDATE"#,
        id as PaymentId,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Payment::from))
}

/// The payment the provider knows by `provider_id`.
pub async fn by_provider_id(conn: &mut PgConnection, provider_id: &str) -> Result<Option<Payment>> {
    let row = sqlx::query_as!(
        PaymentRow,
        r#"SELECT id AS "id: PaymentId", order_id AS "order_id: OrderId", attempt, idempotency_key,
                  payment_method AS "payment_method: PaymentMethod", amount, currency AS "currency: Currency",
                  status AS "status: PaymentStatus", provider_id, failure_code, failure_message,
                  verify_attempts, created_at, settled_at
           FROM payments WHERE provider_id = $1"#,
        provider_id,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Payment::from))
}

/// The latest attempt of an order.
pub async fn latest(conn: &mut PgConnection, order: OrderId) -> Result<Option<Payment>> {
    let row = sqlx::query_as!(
        PaymentRow,
        r#"SELECT id AS "id: PaymentId", order_id AS "order_id: OrderId", attempt, idempotency_key,
                  payment_method AS "payment_method: PaymentMethod", amount, currency AS "currency: Currency",
                  status AS "status: PaymentStatus", provider_id, failure_code, failure_message,
                  verify_attempts, created_at, settled_at
           FROM payments WHERE order_id = $1 ORDER BY attempt DESC LIMIT 1"#,
        order as OrderId,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Payment::from))
}

/// What the provider said, written with a transition.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// The provider's id for the charge, once known (kept if not given).
    pub provider_id: Option<&'a str>,
    /// Why it failed: (code, message).
    pub failure: Option<(&'a str, &'a str)>,
}

/// Moves an attempt `from → to` (one of [`PaymentStatus::can_become`]'s
/// moves) with what the provider said; `settled_at` is stamped on a definite
/// outcome. `false` if it is no longer `from`: the first outcome written wins,
/// later ones change nothing.
pub async fn transition(
    conn: &mut PgConnection,
    id: PaymentId,
    from: PaymentStatus,
    to: PaymentStatus,
    facts: Facts<'_>,
) -> Result<bool> {
    if !from.can_become(to) {
        return Err(Error::Internal(format!("payment {id} cannot go from {} to {}", from.as_str(), to.as_str())));
    }
    let n = sqlx::query!(
        r#"UPDATE payments SET status = $3, provider_id = coalesce($4, provider_id),
                               failure_code = coalesce($5, failure_code),
                               failure_message = coalesce($6, failure_message), updated_at = now(),
                               settled_at = CASE WHEN $3 IN ('succeeded', 'failed') THEN now() ELSE settled_at END
           WHERE id = $1 AND status = $2"#,
        id as PaymentId,
        from as PaymentStatus,
        to as PaymentStatus,
        facts.provider_id,
        facts.failure.map(|f| f.0),
        facts.failure.map(|f| f.1),
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// An `Unknown` attempt's provider id, learnt while it stays unknown (not a
/// transition). `false` if it is no longer unknown.
pub async fn note_provider_id(conn: &mut PgConnection, id: PaymentId, provider_id: Option<&str>) -> Result<bool> {
    let n = sqlx::query!(
        "UPDATE payments SET provider_id = coalesce($2, provider_id), updated_at = now()
         WHERE id = $1 AND status = 'unknown'",
        id as PaymentId,
        provider_id,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Attempts whose saga stopped: `processing` and not moved for
/// `processing_after` (the process calling Stripe died), or `unknown` and not
/// moved for `unknown_after` (their verification jobs were lost).
pub async fn stalled(
    conn: &mut PgConnection,
    processing_after: std::time::Duration,
    unknown_after: std::time::Duration,
) -> Result<Vec<PaymentId>> {
    Ok(sqlx::query_scalar!(
        r#"SELECT id AS "id: PaymentId" FROM payments
           WHERE (status = 'processing' AND updated_at < now() - make_interval(secs => $1))
              OR (status = 'unknown' AND updated_at < now() - make_interval(secs => $2))
           ORDER BY updated_at LIMIT 1000"#,
        processing_after.as_secs_f64(),
        unknown_after.as_secs_f64(),
    )
    .fetch_all(conn)
    .await?)
}

/// Counts a verification round; returns how many there have been.
pub async fn count_verification(conn: &mut PgConnection, id: PaymentId) -> Result<i32> {
    Ok(sqlx::query_scalar!(
        r#"UPDATE payments SET verify_attempts = verify_attempts + 1, updated_at = now() WHERE id = $1
           RETURNING verify_attempts AS "verify_attempts!""#,
        id as PaymentId,
    )
    .fetch_one(conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus::{self, *};

    #[test]
    fn attempts_move_only_along_their_state_machine() {
        let all = [Processing, Unknown, Succeeded, Failed, Refunded];
        let allowed = [
            (Processing, Unknown),
            (Processing, Succeeded),
            (Processing, Failed),
            (Unknown, Succeeded),
            (Unknown, Failed),
            (Succeeded, Refunded),
        ];
        for from in all {
            for to in all {
                assert_eq!(PaymentStatus::can_become(from, to), allowed.contains(&(from, to)), "{from:?} → {to:?}");
            }
        }
    }
}
