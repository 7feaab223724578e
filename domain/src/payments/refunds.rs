//! Refunds: money returned for a succeeded payment that must not stand (it
//! paid for a unit that was no longer there). The refund is recorded before
//! the provider is asked, so a crash leaves it `pending` for the retry.

use sqlx::PgConnection;

use super::{Facts, Payment, PaymentStatus};
use crate::error::{Error, Result};
use crate::ids::{PaymentId, RefundId};
use crate::money::{Currency, Money};
use crate::status::status_enum;

status_enum!(
    /// `Pending → Succeeded`.
    pub enum RefundStatus ("refund status") {
        /// Owed; the provider has not confirmed it yet.
        Pending => "pending",
        Succeeded => "succeeded",
    }
);

#[derive(Debug, Clone)]
pub struct Refund {
    pub id: RefundId,
    pub payment_id: PaymentId,
    /// The whole payment, in its currency.
    pub amount: Money,
    pub reason: String,
    pub status: RefundStatus,
    /// The provider's `re_…`, once refunded.
    pub provider_id: Option<String>,
}

/// The refund owed for a payment, recorded once (a second call returns the
/// first record).
pub async fn owe(conn: &mut PgConnection, payment: &Payment, reason: &str) -> Result<Refund> {
    sqlx::query!(
        "INSERT INTO refunds (id, payment_id, amount, reason, status) VALUES ($1, $2, $3, $4, 'pending')
         ON CONFLICT (payment_id) DO NOTHING",
        RefundId::new() as RefundId,
        payment.id as PaymentId,
        payment.amount.minor(),
        reason,
    )
    .execute(&mut *conn)
    .await?;
    let r = sqlx::query!(
        r#"SELECT r.id AS "id: RefundId", r.payment_id AS "payment_id: PaymentId", r.amount,
                  p.currency AS "currency: Currency", r.reason, r.status AS "status: RefundStatus", r.provider_id
           FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.payment_id = $1"#,
        payment.id as PaymentId,
    )
    .fetch_one(conn)
    .await?;
    Ok(Refund {
        id: r.id,
        payment_id: r.payment_id,
        amount: Money::new(r.amount, r.currency),
        reason: r.reason,
        status: r.status,
        provider_id: r.provider_id,
    })
}

/// Marks a payment's refund done (`Pending → Succeeded`) and the payment
/// refunded (`Succeeded → Refunded`); `false` if it already was.
pub async fn complete(conn: &mut PgConnection, payment: PaymentId, provider_id: &str) -> Result<bool> {
    let n = sqlx::query!(
        "UPDATE refunds SET status = $3, provider_id = $2, settled_at = now()
         WHERE payment_id = $1 AND status = $4",
        payment as PaymentId,
        provider_id,
        RefundStatus::Succeeded as RefundStatus,
        RefundStatus::Pending as RefundStatus,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    if !super::transition(conn, payment, PaymentStatus::Succeeded, PaymentStatus::Refunded, Facts::default()).await? {
        return Err(Error::Internal(format!("payment {payment} was refunded but is not succeeded")));
    }
    Ok(true)
}

/// Completes refund `refund` with the provider's `provider_id` if it is
/// still owed — the reconciliation's settlement of a refund the provider
/// shows made whose answer never reached Gavel; `false` if it is not owed.
pub async fn complete_owed(conn: &mut PgConnection, refund: RefundId, provider_id: &str) -> Result<bool> {
    let payment = sqlx::query_scalar!(
        r#"SELECT payment_id AS "payment_id: PaymentId" FROM refunds WHERE id = $1 AND status = $2 FOR UPDATE"#,
        refund as RefundId,
        RefundStatus::Pending as RefundStatus,
    )
    .fetch_optional(&mut *conn)
    .await?;
    match payment {
        Some(payment) => complete(conn, payment, provider_id).await,
        None => Ok(false),
    }
}
