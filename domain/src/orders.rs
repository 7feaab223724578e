//! Orders: what a buyer pays for. A flash-sale order is created by the
//! checkout of a claim; an auction order by the auction's close, with a
//! payment deadline. Their states, and the one guarded way to move between
//! them ([`transition`]), live here.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::claims::Claim;
use crate::error::{Error, Result};
use crate::ids::{AuctionId, BuyerId, ClaimId, MerchantId, OrderId, PaymentId, SaleId};
use crate::money::{Currency, Money};
use crate::sales::SaleStatus;
use crate::status::status_enum;

status_enum!(
    /// See [`OrderStatus::can_become`] for the moves between them.
    pub enum OrderStatus ("order status") {
        /// Created for an auction winner; no payment tried yet.
        AwaitingPayment => "awaiting_payment",
        /// A payment is in flight or its outcome is being verified with the provider.
        PendingVerification => "pending_verification",
        Paid => "paid",
        PaymentFailed => "payment_failed",
        /// Paid, then refunded (the unit it paid for was no longer there).
        Refunded => "refunded",
        /// An auction's order not paid by its deadline; final.
        Lapsed => "lapsed",
        /// An auction's unpaid order cancelled by its merchant; final.
        Cancelled => "cancelled",
    }
);

impl OrderStatus {
    /// The order's state machine: `AwaitingPayment → PendingVerification →
    /// Paid | PaymentFailed | Refunded` (refunded: paid for a unit that was
    /// gone), `Paid → Refunded`, and `PaymentFailed → PendingVerification`
    /// (an auction's winner tries another card within the window; a sale's
    /// order is never paid again, which `POST /v1/orders/{id}/pay` enforces),
    /// and `AwaitingPayment | PaymentFailed → Lapsed | Cancelled` (an auction's
    /// order not paid by its deadline, or cancelled by its merchant; nothing
    /// leaves either).
    pub fn can_become(self, to: Self) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (AwaitingPayment | PaymentFailed, PendingVerification | Lapsed | Cancelled)
                | (PendingVerification, Paid | PaymentFailed | Refunded)
                | (Paid, Refunded)
        )
    }

    /// Not paid yet, and no payment in flight: a reminder is due, and at the
    /// deadline the order lapses.
    pub fn is_unpaid(self) -> bool {
        matches!(self, Self::AwaitingPayment | Self::PaymentFailed)
    }
}

/// What an order pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSubject {
    /// One unit of a flash sale, held by the claim.
    Sale { sale: SaleId, claim: ClaimId },
    /// An auction's winning lot.
    Auction { auction: AuctionId },
}

impl OrderSubject {
    pub fn sale(self) -> Option<SaleId> {
        match self {
            Self::Sale { sale, .. } => Some(sale),
            Self::Auction { .. } => None,
        }
    }

    pub fn claim(self) -> Option<ClaimId> {
        match self {
            Self::Sale { claim, .. } => Some(claim),
            Self::Auction { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Order {
    pub id: OrderId,
    pub merchant_id: MerchantId,
    pub buyer_id: BuyerId,
    pub subject: OrderSubject,
    pub status: OrderStatus,
    pub amount: Money,
    pub payment_due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

/// An `orders` row as stored; [`Order`] once its subject is checked.
struct OrderRow {
    id: OrderId,
    merchant_id: MerchantId,
    buyer_id: BuyerId,
    sale_id: Option<SaleId>,
    claim_id: Option<ClaimId>,
    auction_id: Option<AuctionId>,
    status: OrderStatus,
    amount: i64,
    currency: Currency,
    payment_due_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
}

impl TryFrom<OrderRow> for Order {
    type Error = Error;

    fn try_from(row: OrderRow) -> Result<Self> {
        let subject = match (row.sale_id, row.claim_id, row.auction_id) {
            (Some(sale), Some(claim), None) => OrderSubject::Sale { sale, claim },
            (None, None, Some(auction)) => OrderSubject::Auction { auction },
            _ => return Err(Error::Internal(format!("order {} has no single subject", row.id))),
        };
        Ok(Order {
            id: row.id,
            merchant_id: row.merchant_id,
            buyer_id: row.buyer_id,
            subject,
            status: row.status,
            amount: Money::new(row.amount, row.currency),
            payment_due_at: row.payment_due_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            paid_at: row.paid_at,
        })
    }
}

fn order_of(row: Option<OrderRow>) -> Result<Option<Order>> {
    row.map(Order::try_from).transpose()
}

/// The order of a claim's checkout, created in `PendingVerification` (its
/// first payment is recorded in the same transaction).
pub async fn insert_for_claim(
    conn: &mut PgConnection,
    merchant: MerchantId,
    claim: &Claim,
    amount: Money,
) -> Result<Order> {
    sqlx::query_as!(
        OrderRow,
        r#"INSERT INTO orders (id, merchant_id, buyer_id, sale_id, claim_id, status, amount, currency)
           VALUES ($1, $2, $3, $4, $5, 'pending_verification', $6, $7)
           RETURNING id AS "id: OrderId", merchant_id AS "merchant_id: MerchantId", buyer_id AS "buyer_id: BuyerId",
                     sale_id AS "sale_id: SaleId", claim_id AS "claim_id: ClaimId",
                     auction_id AS "auction_id: AuctionId", status AS "status: OrderStatus", amount,
                     currency AS "currency: Currency", payment_due_at, created_at, updated_at, paid_at"#,
        OrderId::new() as OrderId,
        merchant as MerchantId,
        claim.buyer_id as BuyerId,
        claim.sale_id as SaleId,
        claim.id as ClaimId,
        amount.minor(),
        amount.currency() as Currency,
    )
    .fetch_one(conn)
    .await?
    .try_into()
}

/// What the auction's close needs to create the winner's order.
#[derive(Debug, Clone)]
pub struct AwaitingPayment {
    pub merchant: MerchantId,
    pub buyer: BuyerId,
    pub auction: AuctionId,
    pub amount: Money,
    pub due_at: DateTime<Utc>,
}

/// An order to be paid by `due_at` through `POST /v1/orders/{id}/pay`.
pub async fn insert_awaiting_payment(conn: &mut PgConnection, new: &AwaitingPayment) -> Result<Order> {
    sqlx::query_as!(
        OrderRow,
        r#"INSERT INTO orders (id, merchant_id, buyer_id, auction_id, status, amount, currency, payment_due_at)
           VALUES ($1, $2, $3, $4, 'awaiting_payment', $5, $6, $7)
           RETURNING id AS "id: OrderId", merchant_id AS "merchant_id: MerchantId", buyer_id AS "buyer_id: BuyerId",
                     sale_id AS "sale_id: SaleId", claim_id AS "claim_id: ClaimId",
                     auction_id AS "auction_id: AuctionId", status AS "status: OrderStatus", amount,
                     currency AS "currency: Currency", payment_due_at, created_at, updated_at, paid_at"#,
        OrderId::new() as OrderId,
        new.merchant as MerchantId,
        new.buyer as BuyerId,
        new.auction as AuctionId,
        new.amount.minor(),
        new.amount.currency() as Currency,
        new.due_at,
    )
    .fetch_one(conn)
    .await?
    .try_into()
}

/// The order a payment attempt is for, locked, with its sale's status (for a
/// sale's order) read alongside.
#[derive(Debug)]
pub struct PaidFor {
    pub order: Order,
    pub sale_status: Option<SaleStatus>,
}

impl PaidFor {
    /// The order is a sale's, and that sale has been cancelled.
    pub fn sale_cancelled(&self) -> bool {
        self.sale_status == Some(SaleStatus::Cancelled)
    }
}

pub async fn lock_for_payment(conn: &mut PgConnection, payment: PaymentId) -> Result<Option<PaidFor>> {
    let found = sqlx::query!(
        r#"SELECT o.id AS "id: OrderId", o.merchant_id AS "merchant_id: MerchantId",
                  o.buyer_id AS "buyer_id: BuyerId", o.sale_id AS "sale_id: SaleId",
                  o.claim_id AS "claim_id: ClaimId", o.auction_id AS "auction_id: AuctionId",
                  o.status AS "status: OrderStatus", o.amount, o.currency AS "currency: Currency",
                  o.payment_due_at, o.created_at, o.updated_at, o.paid_at,
                  s.status AS "sale_status?: SaleStatus"
           FROM orders o LEFT JOIN sales s ON s.id = o.sale_id
           WHERE o.id = (SELECT order_id FROM payments WHERE id = $1) FOR UPDATE OF o"#,
        payment as PaymentId,
    )
    .fetch_optional(conn)
    .await?;
    let Some(r) = found else { return Ok(None) };
    let order = OrderRow {
        id: r.id,
        merchant_id: r.merchant_id,
        buyer_id: r.buyer_id,
        sale_id: r.sale_id,
        claim_id: r.claim_id,
        auction_id: r.auction_id,
        status: r.status,
        amount: r.amount,
        currency: r.currency,
        payment_due_at: r.payment_due_at,
        created_at: r.created_at,
        updated_at: r.updated_at,
        paid_at: r.paid_at,
    }
    .try_into()?;
    Ok(Some(PaidFor { order, sale_status: r.sale_status }))
}

pub async fn lock(conn: &mut PgConnection, id: OrderId) -> Result<Option<Order>> {
    let row = sqlx::query_as!(
        OrderRow,
        r#"SELECT id AS "id: OrderId", merchant_id AS "merchant_id: MerchantId", buyer_id AS "buyer_id: BuyerId",
                  sale_id AS "sale_id: SaleId", claim_id AS "claim_id: ClaimId",
                  auction_id AS "auction_id: AuctionId", status AS "status: OrderStatus", amount,
                  currency AS "currency: Currency", payment_due_at, created_at, updated_at, paid_at
           FROM orders WHERE id = $1 FOR UPDATE"#,
        id as OrderId,
    )
    .fetch_optional(conn)
    .await?;
    order_of(row)
}

/// An order by id, unscoped and unlocked (the saga's own reads).
pub async fn by_id(conn: &mut PgConnection, id: OrderId) -> Result<Option<Order>> {
    let row = sqlx::query_as!(
        OrderRow,
        r#"SELECT id AS "id: OrderId", merchant_id AS "merchant_id: MerchantId", buyer_id AS "buyer_id: BuyerId",
                  sale_id AS "sale_id: SaleId", claim_id AS "claim_id: ClaimId",
                  auction_id AS "auction_id: AuctionId", status AS "status: OrderStatus", amount,
                  currency AS "currency: Currency", payment_due_at, created_at, updated_at, paid_at
           FROM orders WHERE id = $1"#,
        id as OrderId,
    )
    .fetch_optional(conn)
    .await?;
    order_of(row)
}

pub async fn for_claim(conn: &mut PgConnection, claim: ClaimId) -> Result<Option<Order>> {
    let row = sqlx::query_as!(
        OrderRow,
        r#"SELECT id AS "id: OrderId", merchant_id AS "merchant_id: MerchantId", buyer_id AS "buyer_id: BuyerId",
                  sale_id AS "sale_id: SaleId", claim_id AS "claim_id: ClaimId",
                  auction_id AS "auction_id: AuctionId", status AS "status: OrderStatus", amount,
                  currency AS "currency: Currency", payment_due_at, created_at, updated_at, paid_at
           FROM orders WHERE claim_id = $1"#,
        claim as ClaimId,
    )
    .fetch_optional(conn)
    .await?;
    order_of(row)
}

/// Moves an order `from → to` (one of [`OrderStatus::can_become`]'s moves),
/// stamping `paid_at` on `Paid`. `None` if the order is no longer `from`: a
/// caller holding its lock treats that as a bug, any other as "someone else
/// moved it first".
pub async fn transition(
    conn: &mut PgConnection,
    id: OrderId,
    from: OrderStatus,
    to: OrderStatus,
) -> Result<Option<Order>> {
    if !from.can_become(to) {
        return Err(Error::Internal(format!("order {id} cannot go from {} to {}", from.as_str(), to.as_str())));
    }
    let row = sqlx::query_as!(
        OrderRow,
        r#"UPDATE orders SET status = $3, updated_at = now(),
                             paid_at = CASE WHEN $3 = 'paid' THEN now() ELSE paid_at END
           WHERE id = $1 AND status = $2
           RETURNING id AS "id: OrderId", merchant_id AS "merchant_id: MerchantId", buyer_id AS "buyer_id: BuyerId",
                     sale_id AS "sale_id: SaleId", claim_id AS "claim_id: ClaimId",
                     auction_id AS "auction_id: AuctionId", status AS "status: OrderStatus", amount,
                     currency AS "currency: Currency", payment_due_at, created_at, updated_at, paid_at"#,
        id as OrderId,
        from as OrderStatus,
        to as OrderStatus,
    )
    .fetch_optional(conn)
    .await?;
    order_of(row)
}

/// Who is asking: a merchant sees the orders of its sales and auctions, a
/// buyer their own; anyone else's order is "not found".
#[derive(Debug, Clone, Copy)]
pub enum Viewer {
    Merchant(MerchantId),
    Buyer(BuyerId),
}

impl Viewer {
    fn scope(self) -> (Option<MerchantId>, Option<BuyerId>) {
        match self {
            Viewer::Merchant(m) => (Some(m), None),
            Viewer::Buyer(b) => (None, Some(b)),
        }
    }
}

pub async fn get(pool: &PgPool, viewer: Viewer, id: OrderId) -> Result<Order> {
    let (merchant, buyer) = viewer.scope();
    let row = sqlx::query_as!(
        OrderRow,
        r#"SELECT id AS "id: OrderId", merchant_id AS "merchant_id: MerchantId", buyer_id AS "buyer_id: BuyerId",
                  sale_id AS "sale_id: SaleId", claim_id AS "claim_id: ClaimId",
                  auction_id AS "auction_id: AuctionId", status AS "status: OrderStatus", amount,
                  currency AS "currency: Currency", payment_due_at, created_at, updated_at, paid_at
           FROM orders WHERE id = $1 AND (merchant_id = $2 OR buyer_id = $3)"#,
        id as OrderId,
        merchant as Option<MerchantId>,
        buyer as Option<BuyerId>,
    )
    .fetch_optional(pool)
    .await?;
    order_of(row)?.ok_or(Error::NotFound("order"))
}

/// A viewer's orders, newest first.
pub async fn list(pool: &PgPool, viewer: Viewer, limit: i64, starting_after: Option<OrderId>) -> Result<Vec<Order>> {
    let (merchant, buyer) = viewer.scope();
    let rows = sqlx::query_as!(
        OrderRow,
        r#"SELECT id AS "id: OrderId", merchant_id AS "merchant_id: MerchantId", buyer_id AS "buyer_id: BuyerId",
                  sale_id AS "sale_id: SaleId", claim_id AS "claim_id: ClaimId",
                  auction_id AS "auction_id: AuctionId", status AS "status: OrderStatus", amount,
                  currency AS "currency: Currency", payment_due_at, created_at, updated_at, paid_at
           FROM orders
           WHERE (merchant_id = $1 OR buyer_id = $2) AND ($3::uuid IS NULL OR id < $3)
           ORDER BY id DESC LIMIT $4"#,
        merchant as Option<MerchantId>,
        buyer as Option<BuyerId>,
        starting_after as Option<OrderId>,
        limit,
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Order::try_from).collect()
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::{self, *};

    #[test]
    fn orders_move_only_along_their_state_machine() {
        let all = [AwaitingPayment, PendingVerification, Paid, PaymentFailed, Refunded, Lapsed];
        let allowed = [
            (AwaitingPayment, PendingVerification),
            (PaymentFailed, PendingVerification),
            (PendingVerification, Paid),
            (PendingVerification, PaymentFailed),
            (PendingVerification, Refunded),
            (Paid, Refunded),
            (AwaitingPayment, Lapsed),
            (PaymentFailed, Lapsed),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    OrderStatus::can_become(from, to),
                    allowed.contains(&(from, to)),
                    "{} → {}",
                    from.as_str(),
                    to.as_str()
                );
            }
        }
        assert!(!Paid.can_become(PendingVerification), "a paid order is never paid again");
        assert!(!Lapsed.can_become(PendingVerification), "a lapsed order is never paid");
    }
}
