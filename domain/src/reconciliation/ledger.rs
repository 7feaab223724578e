//! Gavel's side of a reconciliation: the ledger's payments and refunds (with
//! their order's merchant and state), looked up by the provider's ids for a
//! page of provider objects, and the period's rows no provider page matched,
//! paged by `(created_at, id)`.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::Result;
use crate::ids::{MerchantId, ReconciliationRunId};

/// A payment attempt with its order's owner and state.
#[derive(Debug, Clone)]
pub struct LedgerPayment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub merchant_id: MerchantId,
    pub amount: i64,
    pub currency: String,
    /// `processing|unknown|succeeded|failed|refunded`.
    pub status: String,
    pub provider_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub order_status: String,
}

/// A refund with its payment's currency and PaymentIntent, and its order.
#[derive(Debug, Clone)]
pub struct LedgerRefund {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub provider_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    /// `pending|succeeded`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub payment_provider_id: Option<String>,
    pub order_id: Uuid,
    pub merchant_id: MerchantId,
    pub order_status: String,
}

/// The payments known by one of `provider_ids` or named by one of
/// `payment_ids` (the PaymentIntents' `gavel_payment_id` metadata).
pub async fn payments_matching(
    conn: &mut PgConnection,
    provider_ids: &[String],
    payment_ids: &[Uuid],
) -> Result<Vec<LedgerPayment>> {
    Ok(sqlx::query_as!(
        LedgerPayment,
        r#"SELECT p.id, p.order_id, o.merchant_id AS "merchant_id: MerchantId", p.amount, p.currency, p.status,
                  p.provider_id, p.created_at, o.status AS order_status
           FROM payments p JOIN orders o ON o.id = p.order_id
           WHERE p.provider_id = ANY($1) OR p.id = ANY($2)"#,
        provider_ids,
        payment_ids,
    )
    .fetch_all(conn)
    .await?)
}

/// The refunds known by one of `provider_ids`, or not yet knowing theirs and
/// refunding one of `payment_ids` (a refund's `gavel_payment_id` metadata).
pub async fn refunds_matching(
    conn: &mut PgConnection,
    provider_ids: &[String],
    payment_ids: &[Uuid],
) -> Result<Vec<LedgerRefund>> {
    Ok(sqlx::query_as!(
        LedgerRefund,
        r#"SELECT r.id, r.payment_id, r.provider_id, r.amount, p.currency, r.status, r.created_at,
                  p.provider_id AS payment_provider_id, p.order_id, o.merchant_id AS "merchant_id: MerchantId",
                  o.status AS order_status
           FROM refunds r JOIN payments p ON p.id = r.payment_id JOIN orders o ON o.id = p.order_id
           WHERE r.provider_id = ANY($1) OR (r.provider_id IS NULL AND r.payment_id = ANY($2))"#,
        provider_ids,
        payment_ids,
    )
    .fetch_all(conn)
    .await?)
}

/// Where a ledger page starts: after this `(created_at, id)`.
pub type Keyset = (DateTime<Utc>, Uuid);

/// The period's payments of `merchant` (all, for `None`) that no provider
/// page of `run` matched, after `after`.
pub async fn unseen_payments(
    conn: &mut PgConnection,
    run: ReconciliationRunId,
    merchant: Option<MerchantId>,
    period: (DateTime<Utc>, DateTime<Utc>),
    after: Option<Keyset>,
    limit: i64,
) -> Result<Vec<LedgerPayment>> {
    let (after_at, after_id) = after.unwrap_or((period.0, Uuid::nil()));
    Ok(sqlx::query_as!(
        LedgerPayment,
        r#"SELECT p.id, p.order_id, o.merchant_id AS "merchant_id: MerchantId", p.amount, p.currency, p.status,
                  p.provider_id, p.created_at, o.status AS order_status
           FROM payments p JOIN orders o ON o.id = p.order_id
           WHERE p.created_at >= $2 AND p.created_at < $3 AND (p.created_at, p.id) > ($4::timestamptz, $5::uuid)
             AND ($6::uuid IS NULL OR o.merchant_id = $6)
             AND NOT EXISTS (SELECT 1 FROM reconciliation_seen s WHERE s.run_id = $1 AND s.object_id = p.id)
           ORDER BY p.created_at, p.id LIMIT $7"#,
        run as ReconciliationRunId,
        period.0,
        period.1,
        after_at,
        after_id,
        merchant as Option<MerchantId>,
        limit,
    )
    .fetch_all(conn)
    .await?)
}

/// [`unseen_payments`] for refunds.
pub async fn unseen_refunds(
    conn: &mut PgConnection,
    run: ReconciliationRunId,
    merchant: Option<MerchantId>,
    period: (DateTime<Utc>, DateTime<Utc>),
    after: Option<Keyset>,
    limit: i64,
) -> Result<Vec<LedgerRefund>> {
    let (after_at, after_id) = after.unwrap_or((period.0, Uuid::nil()));
    Ok(sqlx::query_as!(
        LedgerRefund,
        r#"SELECT r.id, r.payment_id, r.provider_id, r.amount, p.currency, r.status, r.created_at,
                  p.provider_id AS payment_provider_id, p.order_id, o.merchant_id AS "merchant_id: MerchantId",
                  o.status AS order_status
           FROM refunds r JOIN payments p ON p.id = r.payment_id JOIN orders o ON o.id = p.order_id
           WHERE r.created_at >= $2 AND r.created_at < $3 AND (r.created_at, r.id) > ($4::timestamptz, $5::uuid)
             AND ($6::uuid IS NULL OR o.merchant_id = $6)
             AND NOT EXISTS (SELECT 1 FROM reconciliation_seen s WHERE s.run_id = $1 AND s.object_id = r.id)
           ORDER BY r.created_at, r.id LIMIT $7"#,
        run as ReconciliationRunId,
        period.0,
        period.1,
        after_at,
        after_id,
        merchant as Option<MerchantId>,
        limit,
    )
    .fetch_all(conn)
    .await?)
}
