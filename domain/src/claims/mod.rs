//! Claims: holds on one unit of a sale. This module holds their types and
//! state machine and the reads; the writes live by subject: [`grant`] (the
//! batch on the hot path), [`expiry`] (holds running out or released when a
//! sale closes) and [`checkout`] (a hold turning into a purchase).
//!
//! Every status change is one of [`ClaimStatus::can_become`]'s transitions,
//! written as a guarded `UPDATE … WHERE status = <from>`. The hot-path
//! statements (granting, expiring, releasing) are set-based and keep their
//! literal statuses (the partial indexes on `status = 'held'` serve them);
//! each states at compile time which transition it performs.
//!
//! Lock order: whoever changes claims *and* the sale's counters takes the sale
//! row first (`FOR NO KEY UPDATE`, which foreign-key checks do not wait for),
//! then the claims: granting (a batch of claims), sweeping expired holds and
//! closing a sale serialise on the sale row instead of deadlocking. Checkout
//! is the one exception, and safe: it only touches claims that are
//! `checking_out`, which none of those ever wait for, and it takes the hot
//! sale row last, for one statement and the commit (see `gavel-workflows`'
//! checkout).

mod checkout;
mod expiry;
mod grant;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::error::{Error, Result};
use crate::ids::{BuyerId, ClaimId, SaleId};
use crate::status::status_enum;

pub use checkout::{CheckoutEnd, CheckoutTarget, finish_checkout, lock_for_checkout, settle_unit, start_checkout};
pub use expiry::{CLAIM_REMINDER_LEAD_SECONDS, release_holds, sweep_expired};
pub use grant::{BatchResult, grant_batch};

status_enum!(
    /// A claim's life; [`ClaimStatus::can_become`] is the whole state machine.
    pub enum ClaimStatus ("claim status") {
        Held => "held",
        CheckingOut => "checking_out",
        CheckedOut => "checked_out",
        Expired => "expired",
        Released => "released",
    }
);

impl ClaimStatus {
    /// The allowed transitions: `Held → CheckingOut | Expired | Released`,
    /// then `CheckingOut → CheckedOut | Released`. A claim under checkout
    /// keeps its unit and never expires: a payment for it may be on its way.
    pub const fn can_become(self, to: Self) -> bool {
        use ClaimStatus::{CheckedOut, CheckingOut, Expired, Held, Released};
        matches!((self, to), (Held, CheckingOut | Expired | Released) | (CheckingOut, CheckedOut | Released))
    }

    /// Whether the claim still takes its unit out of stock (held or being
    /// paid for) or took it for good (bought).
    pub const fn is_live(self) -> bool {
        matches!(self, Self::Held | Self::CheckingOut | Self::CheckedOut)
    }
}

/// A claim as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub id: ClaimId,
    pub sale_id: SaleId,
    pub buyer_id: BuyerId,
    pub status: ClaimStatus,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl Claim {
    /// The claim as a reader must see it: a hold past its expiry is expired,
    /// whether or not the sweeper has run yet.
    pub fn as_of(mut self, now: DateTime<Utc>) -> Self {
        if self.status == ClaimStatus::Held && self.expires_at <= now {
            self.status = ClaimStatus::Expired;
        }
        self
    }
}

/// What one claim attempt came to.
#[derive(Debug, Clone)]
pub struct ClaimOutcome {
    pub claim: Claim,
    /// `false` when the buyer already had this claim.
    pub created: bool,
}

/// Why an attempt got no claim. Cheap to copy to every member of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    SoldOut,
    SaleNotActive,
    SaleNotFound,
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::SoldOut => Error::SoldOut,
            Refusal::SaleNotActive => Error::SaleNotActive,
            Refusal::SaleNotFound => Error::NotFound("sale"),
        }
    }
}

pub type Attempt = std::result::Result<ClaimOutcome, Refusal>;

/// The channel on which processes hear that a sale's stock went up, so their
/// cached "sold out" answers are dropped.
pub const STOCK_RETURNED_CHANNEL: &str = "gavel_stock_returned";

pub async fn notify_stock_returned(conn: &mut PgConnection, sale_id: SaleId) -> Result<()> {
    sqlx::query!("SELECT pg_notify($1, $2)", STOCK_RETURNED_CHANNEL, sale_id.uuid().to_string()).execute(conn).await?;
    Ok(())
}

/// Who holds or bought a unit of a sale, and when the next hold runs out: the
/// facts a process needs to answer "sold out" from memory.
#[derive(Debug, Clone)]
pub struct Holders {
    pub buyers: Vec<BuyerId>,
    pub next_expiry: Option<DateTime<Utc>>,
    pub ends_at: DateTime<Utc>,
}

pub async fn holders(pool: &PgPool, sale_id: SaleId) -> Result<Holders> {
    let buyers = sqlx::query_scalar!(
        r#"SELECT buyer_id AS "buyer_id: BuyerId" FROM claims
           WHERE sale_id = $1 AND status IN ('held', 'checking_out', 'checked_out')"#,
        sale_id as SaleId,
    )
    .fetch_all(pool)
    .await?;
    let sale = sqlx::query!(
        r#"SELECT (SELECT min(expires_at) FROM claims WHERE sale_id = $1 AND status = 'held') AS next_expiry, ends_at
           FROM sales WHERE id = $1"#,
        sale_id as SaleId,
    )
    .fetch_one(pool)
    .await?;
    Ok(Holders { buyers, next_expiry: sale.next_expiry, ends_at: sale.ends_at })
}

/// A buyer's own claim; someone else's is "not found".
pub async fn get_for_buyer(pool: &PgPool, buyer: BuyerId, id: ClaimId) -> Result<Claim> {
    let row = sqlx::query!(
        r#"SELECT id AS "id: ClaimId", sale_id AS "sale_id: SaleId", buyer_id AS "buyer_id: BuyerId",
                  status AS "status: ClaimStatus", expires_at, created_at, now() AS "now!"
           FROM claims WHERE id = $1 AND buyer_id = $2"#,
        id as ClaimId,
        buyer as BuyerId,
    )
    .fetch_optional(pool)
    .await?
    .ok_or(Error::NotFound("claim"))?;
    let claim = Claim {
        id: row.id,
        sale_id: row.sale_id,
        buyer_id: row.buyer_id,
        status: row.status,
        expires_at: row.expires_at,
        created_at: row.created_at,
    };
    Ok(claim.as_of(row.now))
}

/// Returns `n` held units to stock (the caller holds the sale lock or this takes it).
async fn held_to_available(conn: &mut PgConnection, sale_id: SaleId, n: i32) -> Result<()> {
    sqlx::query!("UPDATE sales SET available = available + $2, held = held - $2 WHERE id = $1", sale_id as SaleId, n)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets a sale's stock counters to what the caller, holding the sale lock,
/// computed.
async fn held_to_available_at(conn: &mut PgConnection, sale_id: SaleId, available: i32, held: i32) -> Result<()> {
    sqlx::query!("UPDATE sales SET available = $2, held = $3 WHERE id = $1", sale_id as SaleId, available, held)
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ClaimStatus::{self, *};

    #[test]
    fn only_held_and_checking_out_claims_move_and_nothing_returns_to_held() {
        let all = [Held, CheckingOut, CheckedOut, Expired, Released];
        for from in all {
            for to in all {
                let allowed = ClaimStatus::can_become(from, to);
                assert!(!(allowed && to == Held), "{from:?} -> {to:?}");
                assert!(!(allowed && matches!(from, CheckedOut | Expired | Released)), "{from:?} -> {to:?}");
            }
        }
        assert!(Held.can_become(CheckingOut) && CheckingOut.can_become(CheckedOut));
        assert!(!CheckingOut.can_become(Expired), "a claim under checkout never expires");
    }
}
