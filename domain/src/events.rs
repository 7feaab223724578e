//! Domain events: the outbox that merchant webhooks and the notifier consume.
//!
//! An event is inserted in the same transaction as the state change it reports,
//! under a dedupe key, so a change that commits always has its event and a
//! retried job never reports twice.

use serde_json::Value;
use sqlx::PgConnection;

use crate::error::Result;
use crate::ids::{EventId, MerchantId};

pub mod kinds {
    pub const SALE_STARTED: &str = "sale.started";
    pub const SALE_ENDED: &str = "sale.ended";
    pub const SALE_CANCELLED: &str = "sale.cancelled";
    pub const ORDER_PAID: &str = "order.paid";
    pub const ORDER_PAYMENT_FAILED: &str = "order.payment_failed";
    pub const ORDER_REFUNDED: &str = "order.refunded";
}

/// Records an event; `false` if one with the same dedupe key exists.
pub async fn record(
    conn: &mut PgConnection,
    merchant: MerchantId,
    kind: &str,
    subject_id: &str,
    dedupe_key: &str,
    payload: Value,
) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO events (id, merchant_id, type, subject_id, dedupe_key, payload)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(EventId::new())
    .bind(merchant)
    .bind(kind)
    .bind(subject_id)
    .bind(dedupe_key)
    .bind(payload)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}
