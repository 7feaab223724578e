//! Orders: what a buyer pays for. A flash-sale order is created by the
//! checkout of a claim; an auction order by the auction's close, with a
//! payment deadline. Their states and transitions live here.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::claims::Claim;
use crate::error::{Error, Result};
use crate::ids::{BuyerId, ClaimId, MerchantId, OrderId, PaymentId, SaleId};
use crate::sales::SaleStatus;
use crate::status::status_enum;

status_enum!(
    /// `AwaitingPayment → PendingVerification → Paid | PaymentFailed`, and
    /// `Paid → Refunded`. An auction order may go from `PaymentFailed` back to
    /// `PendingVerification` (the winner tries another card within the window).
    pub enum OrderStatus ("order status") {
        /// Created for an auction winner; no payment tried yet.
        AwaitingPayment => "awaiting_payment",
        /// A payment is in flight or its outcome is being verified with the provider.
        PendingVerification => "pending_verification",
        Paid => "paid",
        PaymentFailed => "payment_failed",
        /// Paid, then refunded (the unit it paid for was no longer there).
        Refunded => "refunded",
    }
);

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Order {
    pub id: OrderId,
    #[serde(skip)]
    pub merchant_id: MerchantId,
    #[serde(skip)]
    pub buyer_id: BuyerId,
    pub sale_id: Option<SaleId>,
    pub claim_id: Option<ClaimId>,
    /// The auction this order settles (`auc_…` once auctions exist).
    #[serde(skip)]
    pub auction_id: Option<Uuid>,
    #[sqlx(try_from = "String")]
    pub status: OrderStatus,
    /// Minor units.
    pub amount: i64,
    pub currency: String,
    pub payment_due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

macro_rules! order_columns {
    () => {
        "id, merchant_id, buyer_id, sale_id, claim_id, auction_id, status, amount, currency, payment_due_at, \
         created_at, updated_at, paid_at"
    };
    (o) => {
        "o.id, o.merchant_id, o.buyer_id, o.sale_id, o.claim_id, o.auction_id, o.status, o.amount, o.currency, \
         o.payment_due_at, o.created_at, o.updated_at, o.paid_at"
    };
}

/// The order of a claim's checkout, created in `PendingVerification` (its
/// first payment is recorded in the same transaction).
pub async fn insert_for_claim(
    conn: &mut PgConnection,
    merchant: MerchantId,
    claim: &Claim,
    amount: i64,
    currency: &str,
) -> Result<Order> {
    let sql = concat!(
        "INSERT INTO orders (id, merchant_id, buyer_id, sale_id, claim_id, status, amount, currency)
         VALUES ($1, $2, $3, $4, $5, 'pending_verification', $6, $7) RETURNING ",
        order_columns!()
    );
    Ok(sqlx::query_as(sql)
        .bind(OrderId::new())
        .bind(merchant)
        .bind(claim.buyer_id)
        .bind(claim.sale_id)
        .bind(claim.id)
        .bind(amount)
        .bind(currency)
        .fetch_one(conn)
        .await?)
}

/// What the auction's close needs to create the winner's order.
#[derive(Debug, Clone)]
pub struct AwaitingPayment {
    pub merchant: MerchantId,
    pub buyer: BuyerId,
    pub auction_id: Uuid,
    pub amount: i64,
    pub currency: String,
    pub due_at: DateTime<Utc>,
}

/// An order to be paid by `due_at` through `POST /v1/orders/{id}/pay`.
pub async fn insert_awaiting_payment(conn: &mut PgConnection, new: &AwaitingPayment) -> Result<Order> {
    let sql = concat!(
        "INSERT INTO orders (id, merchant_id, buyer_id, auction_id, status, amount, currency, payment_due_at)
         VALUES ($1, $2, $3, $4, 'awaiting_payment', $5, $6, $7) RETURNING ",
        order_columns!()
    );
    Ok(sqlx::query_as(sql)
        .bind(OrderId::new())
        .bind(new.merchant)
        .bind(new.buyer)
        .bind(new.auction_id)
        .bind(new.amount)
        .bind(&new.currency)
        .bind(new.due_at)
        .fetch_one(conn)
        .await?)
}

/// The order a payment attempt is for, locked, with its sale's status (for a
/// sale's order) read alongside.
#[derive(Debug, sqlx::FromRow)]
pub struct PaidFor {
    #[sqlx(flatten)]
    pub order: Order,
    pub sale_status: Option<String>,
}

impl PaidFor {
    /// The order is a sale's, and that sale has been cancelled.
    pub fn sale_cancelled(&self) -> bool {
        self.sale_status.clone().and_then(|s| SaleStatus::try_from(s).ok()) == Some(SaleStatus::Cancelled)
    }
}

pub async fn lock_for_payment(conn: &mut PgConnection, payment: PaymentId) -> Result<Option<PaidFor>> {
    let sql = concat!(
        "SELECT ",
        order_columns!(o),
        ", s.status AS sale_status
         FROM orders o LEFT JOIN sales s ON s.id = o.sale_id
         WHERE o.id = (SELECT order_id FROM payments WHERE id = $1) FOR UPDATE OF o"
    );
    Ok(sqlx::query_as(sql).bind(payment).fetch_optional(conn).await?)
}

pub async fn lock(conn: &mut PgConnection, id: OrderId) -> Result<Option<Order>> {
    let sql = concat!("SELECT ", order_columns!(), " FROM orders WHERE id = $1 FOR UPDATE");
    Ok(sqlx::query_as(sql).bind(id).fetch_optional(conn).await?)
}

/// An order by id, unscoped and unlocked (the saga's own reads).
pub async fn by_id(conn: &mut PgConnection, id: OrderId) -> Result<Option<Order>> {
    let sql = concat!("SELECT ", order_columns!(), " FROM orders WHERE id = $1");
    Ok(sqlx::query_as(sql).bind(id).fetch_optional(conn).await?)
}

pub async fn for_claim(conn: &mut PgConnection, claim: ClaimId) -> Result<Option<Order>> {
    let sql = concat!("SELECT ", order_columns!(), " FROM orders WHERE claim_id = $1");
    Ok(sqlx::query_as(sql).bind(claim).fetch_optional(conn).await?)
}

/// Moves an order to `to`; `paid_at` is stamped on `Paid`.
pub async fn set_status(conn: &mut PgConnection, id: OrderId, to: OrderStatus) -> Result<Order> {
    let sql = concat!(
        "UPDATE orders SET status = $2, updated_at = now(),
                           paid_at = CASE WHEN $2 = 'paid' THEN now() ELSE paid_at END
         WHERE id = $1 RETURNING ",
        order_columns!()
    );
    Ok(sqlx::query_as(sql).bind(id).bind(to.as_str()).fetch_one(conn).await?)
}

/// Who is asking: a merchant sees the orders of its sales and auctions, a
/// buyer their own; anyone else's order is "not found".
#[derive(Debug, Clone, Copy)]
pub enum Viewer {
    Merchant(MerchantId),
    Buyer(BuyerId),
}

pub async fn get(pool: &PgPool, viewer: Viewer, id: OrderId) -> Result<Order> {
    let sql =
        concat!("SELECT ", order_columns!(), " FROM orders WHERE id = $1 AND (merchant_id = $2 OR buyer_id = $3)");
    let (merchant, buyer) = match viewer {
        Viewer::Merchant(m) => (Some(m), None),
        Viewer::Buyer(b) => (None, Some(b)),
    };
    sqlx::query_as(sql).bind(id).bind(merchant).bind(buyer).fetch_optional(pool).await?.ok_or(Error::NotFound("order"))
}

/// A viewer's orders, newest first.
pub async fn list(pool: &PgPool, viewer: Viewer, limit: i64, starting_after: Option<OrderId>) -> Result<Vec<Order>> {
    let sql = concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders
         WHERE (merchant_id = $1 OR buyer_id = $2) AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    );
    let (merchant, buyer) = match viewer {
        Viewer::Merchant(m) => (Some(m), None),
        Viewer::Buyer(b) => (None, Some(b)),
    };
    Ok(sqlx::query_as(sql).bind(merchant).bind(buyer).bind(starting_after).bind(limit).fetch_all(pool).await?)
}
