//! Payment attempts: one row per call to the provider, written *before* the
//! call with the idempotency key it carries, so its outcome can always be
//! found again (by retrying with the key, or by searching the provider for the
//! attempt's id in the metadata). Refunds of payments that must be returned.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;

use crate::error::Result;
use crate::ids::{OrderId, PaymentId, RefundId};
use crate::status::status_enum;

status_enum!(
    /// `Processing → Succeeded | Failed | Unknown`, `Unknown → Succeeded | Failed`,
    /// `Succeeded → Refunded`. `Unknown` is never taken for a failure: the
    /// provider may have charged; verification asks it.
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
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Payment {
    pub id: PaymentId,
    #[serde(skip)]
    pub order_id: OrderId,
    pub attempt: i32,
    #[serde(skip)]
    pub idempotency_key: String,
    #[serde(skip)]
    pub payment_method: String,
    pub amount: i64,
    pub currency: String,
    #[sqlx(try_from = "String")]
    pub status: PaymentStatus,
    /// The provider's id (Stripe's `pi_…`), once known.
    pub provider_id: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    #[serde(skip)]
    pub verify_attempts: i32,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

/// What a Stripe PaymentIntent says about itself, as far as telling whether
/// it is an attempt's goes (from an event, or from Stripe itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentFacts {
    /// Stripe's `pi_…`.
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// The attempt its metadata names (we set it on every charge).
    pub payment: Option<PaymentId>,
}

status_enum!(
    /// Why a provider event may not settle an attempt. A small fixed set: each
    /// is a metric label.
    pub enum Refusal ("refusal") {
        /// The attempt knows its PaymentIntent, and this is another one.
        PaymentIntentMismatch => "payment_intent_mismatch",
        /// The PaymentIntent's metadata does not name this attempt.
        PaymentMismatch => "payment_mismatch",
        AmountMismatch => "amount_mismatch",
        CurrencyMismatch => "currency_mismatch",
        /// Stripe has no such PaymentIntent.
        UnknownPaymentIntent => "unknown_payment_intent",
        /// Stripe says the PaymentIntent did not do what the event claims.
        StatusMismatch => "status_mismatch",
    }
);

impl Payment {
    /// Why `intent` cannot be this attempt's PaymentIntent, if it cannot.
    pub fn refusal(&self, intent: &IntentFacts) -> Option<Refusal> {
        if self.provider_id.as_deref().is_some_and(|known| known != intent.id) {
            Some(Refusal::PaymentIntentMismatch)
        } else if intent.payment != Some(self.id) {
            Some(Refusal::PaymentMismatch)
        } else if intent.amount != self.amount {
            Some(Refusal::AmountMismatch)
        } else if !intent.currency.eq_ignore_ascii_case(&self.currency) {
            Some(Refusal::CurrencyMismatch)
        } else {
            None
        }
    }
}

macro_rules! payment_columns {
    () => {
        "id, order_id, attempt, idempotency_key, payment_method, amount, currency, status, provider_id, \
         failure_code, failure_message, verify_attempts, created_at, settled_at"
    };
}

/// What a new attempt is for.
#[derive(Debug, Clone)]
pub struct NewPayment<'a> {
    pub order: OrderId,
    pub attempt: i32,
    /// Derived from what is paid for (the claim, or the order and attempt), so
    /// a retry after a crash sends the same key.
    pub idempotency_key: String,
    pub payment_method: &'a str,
    pub amount: i64,
    pub currency: &'a str,
}

pub async fn insert(conn: &mut PgConnection, new: &NewPayment<'_>) -> Result<Payment> {
    let sql = concat!(
        "INSERT INTO payments (id, order_id, attempt, idempotency_key, payment_method, amount, currency, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'processing') RETURNING ",
        payment_columns!()
    );
    Ok(sqlx::query_as(sql)
        .bind(PaymentId::new())
        .bind(new.order)
        .bind(new.attempt)
        .bind(&new.idempotency_key)
        .bind(new.payment_method)
        .bind(new.amount)
        .bind(new.currency)
        .fetch_one(conn)
        .await?)
}

pub async fn get(conn: &mut PgConnection, id: PaymentId) -> Result<Option<Payment>> {
    let sql = concat!("SELECT ", payment_columns!(), " FROM payments WHERE id = $1");
    Ok(sqlx::query_as(sql).bind(id).fetch_optional(conn).await?)
}

pub async fn lock(conn: &mut PgConnection, id: PaymentId) -> Result<Option<Payment>> {
    let sql = concat!("SELECT ", payment_columns!(), " FROM payments WHERE id = $1 FOR UPDATE");
    Ok(sqlx::query_as(sql).bind(id).fetch_optional(conn).await?)
}

/// The payment the provider knows by `provider_id`.
pub async fn by_provider_id(conn: &mut PgConnection, provider_id: &str) -> Result<Option<Payment>> {
    let sql = concat!("SELECT ", payment_columns!(), " FROM payments WHERE provider_id = $1");
    Ok(sqlx::query_as(sql).bind(provider_id).fetch_optional(conn).await?)
}

/// The latest attempt of an order.
pub async fn latest(conn: &mut PgConnection, order: OrderId) -> Result<Option<Payment>> {
    let sql =
        concat!("SELECT ", payment_columns!(), " FROM payments WHERE order_id = $1 ORDER BY attempt DESC LIMIT 1");
    Ok(sqlx::query_as(sql).bind(order).fetch_optional(conn).await?)
}

/// Settles an open payment (`Processing`/`Unknown` → `to`). `false` if it was
/// already settled: the first definite outcome wins, later ones change nothing.
pub async fn settle(
    conn: &mut PgConnection,
    id: PaymentId,
    to: PaymentStatus,
    provider_id: Option<&str>,
    failure: Option<(&str, &str)>,
) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE payments SET status = $2, provider_id = coalesce($3, provider_id),
                             failure_code = $4, failure_message = $5, updated_at = now(),
                             settled_at = CASE WHEN $2 IN ('succeeded', 'failed') THEN now() ELSE settled_at END
         WHERE id = $1 AND status IN ('processing', 'unknown')",
    )
    .bind(id)
    .bind(to.as_str())
    .bind(provider_id)
    .bind(failure.map(|f| f.0))
    .bind(failure.map(|f| f.1))
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
    Ok(sqlx::query_scalar(
        "SELECT id FROM payments
         WHERE (status = 'processing' AND updated_at < now() - make_interval(secs => $1))
            OR (status = 'unknown' AND updated_at < now() - make_interval(secs => $2))
         ORDER BY updated_at LIMIT 1000",
    )
    .bind(processing_after.as_secs_f64())
    .bind(unknown_after.as_secs_f64())
    .fetch_all(conn)
    .await?)
}

/// Counts a verification round; returns how many there have been.
pub async fn count_verification(conn: &mut PgConnection, id: PaymentId) -> Result<i32> {
    Ok(sqlx::query_scalar(
        "UPDATE payments SET verify_attempts = verify_attempts + 1, updated_at = now() WHERE id = $1
         RETURNING verify_attempts",
    )
    .bind(id)
    .fetch_one(conn)
    .await?)
}

/// The refund owed for a payment, recorded before the provider is asked.
pub async fn insert_refund(conn: &mut PgConnection, payment: &Payment, reason: &str) -> Result<RefundId> {
    let id: Option<RefundId> = sqlx::query_scalar(
        "INSERT INTO refunds (id, payment_id, amount, reason, status) VALUES ($1, $2, $3, $4, 'pending')
         ON CONFLICT (payment_id) DO NOTHING RETURNING id",
    )
    .bind(RefundId::new())
    .bind(payment.id)
    .bind(payment.amount)
    .bind(reason)
    .fetch_optional(&mut *conn)
    .await?;
    match id {
        Some(id) => Ok(id),
        None => Ok(sqlx::query_scalar("SELECT id FROM refunds WHERE payment_id = $1")
            .bind(payment.id)
            .fetch_one(conn)
            .await?),
    }
}

/// Marks a refund done and its payment refunded; `false` if it already was.
pub async fn complete_refund(conn: &mut PgConnection, payment: PaymentId, provider_id: &str) -> Result<bool> {
    let n = sqlx::query(
        "UPDATE refunds SET status = 'succeeded', provider_id = $2, settled_at = now()
         WHERE payment_id = $1 AND status = 'pending'",
    )
    .bind(payment)
    .bind(provider_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if n == 1 {
        sqlx::query("UPDATE payments SET status = 'refunded', updated_at = now() WHERE id = $1")
            .bind(payment)
            .execute(conn)
            .await?;
    }
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payment_intent_is_an_attempts_only_if_id_metadata_amount_and_currency_agree() {
        let payment = Payment {
            id: PaymentId::new(),
            order_id: OrderId::new(),
            attempt: 1,
            idempotency_key: "k".into(),
            payment_method: "pm_card_visa".into(),
            amount: 1999,
            currency: "usd".into(),
            status: PaymentStatus::Unknown,
            provider_id: None,
            failure_code: None,
            failure_message: None,
            verify_attempts: 0,
            created_at: Utc::now(),
            settled_at: None,
        };
        let intent = IntentFacts { id: "pi_1".into(), amount: 1999, currency: "USD".into(), payment: Some(payment.id) };
        assert_eq!(payment.refusal(&intent), None, "an unknown id is accepted until the attempt knows its own");
        let known = Payment { provider_id: Some("pi_2".into()), ..payment.clone() };
        assert_eq!(known.refusal(&intent), Some(Refusal::PaymentIntentMismatch));
        let other = IntentFacts { payment: Some(PaymentId::new()), ..intent.clone() };
        assert_eq!(payment.refusal(&other), Some(Refusal::PaymentMismatch));
        let unnamed = IntentFacts { payment: None, ..intent.clone() };
        assert_eq!(payment.refusal(&unnamed), Some(Refusal::PaymentMismatch));
        let cheap = IntentFacts { amount: 1, ..intent.clone() };
        assert_eq!(payment.refusal(&cheap), Some(Refusal::AmountMismatch));
        let euros = IntentFacts { currency: "eur".into(), ..intent };
        assert_eq!(payment.refusal(&euros), Some(Refusal::CurrencyMismatch));
    }
}
