//! A hold becoming a purchase: `Held → CheckingOut` when checkout begins,
//! then `CheckingOut → CheckedOut | Released` when its payment settles, and
//! the sale's counters that follow.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::{Claim, ClaimStatus, held_to_available, notify_stock_returned};
use crate::error::{Error, Result};
use crate::ids::{BuyerId, ClaimId, MerchantId, SaleId};
use crate::money::{Currency, Money};

/// A buyer's claim, locked for checkout, with what its order needs from the
/// sale (read, not locked: a sale's price cannot change once it has claims).
#[derive(Debug)]
pub struct CheckoutTarget {
    pub claim: Claim,
    pub now: DateTime<Utc>,
    pub merchant_id: MerchantId,
    /// The sale's unit price: what the order costs.
    pub price: Money,
}

pub async fn lock_for_checkout(conn: &mut PgConnection, buyer: BuyerId, id: ClaimId) -> Result<CheckoutTarget> {
    let row = sqlx::query!(
        r#"SELECT c.id AS "id: ClaimId", c.sale_id AS "sale_id: SaleId", c.buyer_id AS "buyer_id: BuyerId",
                  c.status AS "status: ClaimStatus", c.expires_at, c.created_at, now() AS "now!",
                  s.merchant_id AS "merchant_id: MerchantId", s.price, s.currency AS "currency: Currency"
           FROM claims c JOIN sales s ON s.id = c.sale_id
           WHERE c.id = $1 AND c.buyer_id = $2 FOR UPDATE OF c"#,
        id as ClaimId,
        buyer as BuyerId,
    )
    .fetch_optional(conn)
    .await?
    .ok_or(Error::NotFound("claim"))?;
    Ok(CheckoutTarget {
        claim: Claim {
            id: row.id,
            sale_id: row.sale_id,
            buyer_id: row.buyer_id,
            status: row.status,
            expires_at: row.expires_at,
            created_at: row.created_at,
        },
        now: row.now,
        merchant_id: row.merchant_id,
        price: Money::new(row.price, row.currency),
    })
}

/// The one statement that moves a single claim: `from → to` if it is still
/// `from` (and of `sale`, when given); `false` if it was not. A claim that
/// leaves for good (`CheckedOut`, `Released`, `Expired`) is stamped closed.
async fn transition(
    conn: &mut PgConnection,
    sale: Option<SaleId>,
    id: ClaimId,
    from: ClaimStatus,
    to: ClaimStatus,
) -> Result<bool> {
    if !from.can_become(to) {
        return Err(Error::Internal(format!("claim {id}: no transition {} -> {}", from.as_str(), to.as_str())));
    }
    let closes = !matches!(to, ClaimStatus::Held | ClaimStatus::CheckingOut);
    let n = sqlx::query!(
        "UPDATE claims SET status = $4, closed_at = CASE WHEN $5 THEN now() ELSE closed_at END
         WHERE id = $1 AND ($2::uuid IS NULL OR sale_id = $2) AND status = $3",
        id as ClaimId,
        sale as Option<SaleId>,
        from as ClaimStatus,
        to as ClaimStatus,
        closes,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// `Held → CheckingOut`: the hold stops running out. `false` if it was not held.
pub async fn start_checkout(conn: &mut PgConnection, id: ClaimId) -> Result<bool> {
    transition(conn, None, id, ClaimStatus::Held, ClaimStatus::CheckingOut).await
}

/// How a checkout ends for its claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutEnd {
    /// Paid: the unit is sold.
    Sold,
    /// Not paid (declined, or the sale was cancelled): the unit returns to stock.
    Released,
}

/// `CheckingOut → CheckedOut | Released` for the claim row alone; the sale's
/// counters follow with [`settle_unit`]. `false` if it was not checking out.
pub async fn finish_checkout(conn: &mut PgConnection, sale_id: SaleId, id: ClaimId, end: CheckoutEnd) -> Result<bool> {
    let to = match end {
        CheckoutEnd::Sold => ClaimStatus::CheckedOut,
        CheckoutEnd::Released => ClaimStatus::Released,
    };
    transition(conn, Some(sale_id), id, ClaimStatus::CheckingOut, to).await
}

/// Moves a checked-out unit in the sale's counters: `held → sold`, unless the
/// sale has been cancelled (then `false` and nothing changes: the caller
/// starts over and releases instead), or `held → available`.
pub async fn settle_unit(conn: &mut PgConnection, sale_id: SaleId, end: CheckoutEnd) -> Result<bool> {
    match end {
        CheckoutEnd::Sold => {
            let n = sqlx::query!(
                "UPDATE sales SET sold = sold + 1, held = held - 1 WHERE id = $1 AND status <> 'cancelled'",
                sale_id as SaleId,
            )
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if n == 1 {
                crate::feed::sale_stock_changed(conn, sale_id, false).await?;
            }
            Ok(n == 1)
        }
        CheckoutEnd::Released => {
            held_to_available(&mut *conn, sale_id, 1).await?;
            notify_stock_returned(&mut *conn, sale_id).await?;
            crate::feed::sale_stock_changed(conn, sale_id, false).await?;
            Ok(true)
        }
    }
}
