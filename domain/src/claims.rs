//! Claims: holds on one unit of a sale, and the SQL that grants, finds and
//! expires them.
//!
//! Lock order: whoever changes claims *and* the sale's counters takes the sale
//! row first (`FOR NO KEY UPDATE`, which foreign-key checks do not wait for),
//! then the claims: granting (a batch of claims), sweeping expired holds and
//! closing a sale serialise on the sale row instead of deadlocking. Checkout
//! is the one exception, and safe: it only touches claims that are
//! `checking_out`, which none of those ever wait for, and it takes the hot
//! sale row last, for one statement and the commit (see `gavel-workflows`'
//! checkout).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ids::{BuyerId, ClaimId, SaleId};
use crate::jobs::{self, SaleJob, queues};
use crate::sales;
use crate::status::status_enum;

status_enum!(
    /// A claim's life: `Held → CheckingOut | Expired | Released`, then
    /// `CheckingOut → CheckedOut | Released`. A claim under checkout keeps its
    /// unit and never expires: a payment for it may be on its way.
    pub enum ClaimStatus ("claim status") {
        Held => "held",
        CheckingOut => "checking_out",
        CheckedOut => "checked_out",
        Expired => "expired",
        Released => "released",
    }
);

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Claim {
    pub id: ClaimId,
    pub sale_id: SaleId,
    #[serde(skip)]
    pub buyer_id: BuyerId,
    #[sqlx(try_from = "String")]
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

macro_rules! claim_columns {
    () => {
        "id, sale_id, buyer_id, status, expires_at, created_at"
    };
}

#[derive(sqlx::FromRow)]
struct SaleStock {
    version: i32,
    status: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    hold_seconds: i32,
    per_buyer_limit: i32,
    available: i32,
    held: i32,
    now: DateTime<Utc>,
}

/// The answer to a batch: one attempt per buyer asked, and the stock left.
#[derive(Debug)]
pub struct BatchResult {
    pub attempts: HashMap<BuyerId, Attempt>,
    pub available: i32,
    /// The expiry second whose sweep job this batch made sure of.
    pub sweep_second: Option<i64>,
}

/// Grants claims to a batch of buyers of one sale in one transaction: one lock
/// on the sale row, one read of their existing claims, one multi-row insert,
/// one counter update and one commit for the whole batch.
///
/// A buyer who already holds (or has bought up to the limit) gets their
/// existing claim back; a hold past its expiry counts as expired here even if
/// the sweeper has not run; units are granted in the order of `buyers`.
///
/// `swept_second` is the expiry second whose sweep job the caller already saw
/// committed; a batch whose holds expire in that second skips the enqueue.
pub async fn grant_batch(
    conn: &mut PgConnection,
    sale_id: SaleId,
    buyers: &[BuyerId],
    swept_second: Option<i64>,
) -> Result<BatchResult> {
    let stock: Option<SaleStock> = sqlx::query_as(
        "SELECT version, status, starts_at, ends_at, hold_seconds, per_buyer_limit, available, held, now() AS now
         FROM sales WHERE id = $1 FOR NO KEY UPDATE",
    )
    .bind(sale_id)
    .fetch_optional(&mut *conn)
    .await?;
    let refuse_all = |r: Refusal, available: i32| BatchResult {
        attempts: buyers.iter().map(|b| (*b, Err(r))).collect(),
        available,
        sweep_second: None,
    };
    let Some(mut stock) = stock else {
        return Ok(refuse_all(Refusal::SaleNotFound, 0));
    };
    let now = stock.now;
    if now < stock.starts_at || now >= stock.ends_at {
        return Ok(refuse_all(Refusal::SaleNotActive, stock.available));
    }
    if stock.status == "scheduled" {
        // Past its start but its start job has not run (a worker died holding it,
        // or all workers are down): the first claim performs the same guarded
        // transition, so buyers never wait on a lost job.
        if sales::start(conn, sale_id, stock.version).await?.is_some() {
            tracing::warn!(%sale_id, "sale started by a claim ahead of its start job");
        }
    } else if stock.status != "active" {
        return Ok(refuse_all(Refusal::SaleNotActive, stock.available));
    }

    let mut seen = HashSet::with_capacity(buyers.len());
    let unique: Vec<BuyerId> = buyers.iter().copied().filter(|b| seen.insert(*b)).collect();
    let ids: Vec<Uuid> = unique.iter().map(|b| b.uuid()).collect();
    let sql = concat!(
        "SELECT ",
        claim_columns!(),
        " FROM claims
         WHERE sale_id = $1 AND buyer_id = ANY($2) AND status IN ('held', 'checking_out', 'checked_out')
         ORDER BY created_at"
    );
    let existing: Vec<Claim> = sqlx::query_as(sql).bind(sale_id).bind(&ids).fetch_all(&mut *conn).await?;

    // Holds past their expiry are expired now, in this transaction.
    let overdue: Vec<Uuid> =
        existing.iter().filter(|c| c.status == ClaimStatus::Held && c.expires_at <= now).map(|c| c.id.uuid()).collect();
    let mut returned = 0;
    if !overdue.is_empty() {
        returned += expire(conn, sale_id, now, Expire::These(&overdue)).await?;
    }
    let mut live: HashMap<BuyerId, Claim> = HashMap::new();
    let mut bought: HashMap<BuyerId, i32> = HashMap::new();
    for claim in existing {
        match claim.status {
            ClaimStatus::Held if claim.expires_at > now => {
                live.insert(claim.buyer_id, claim);
            }
            ClaimStatus::CheckingOut => {
                live.insert(claim.buyer_id, claim);
            }
            ClaimStatus::CheckedOut => {
                *bought.entry(claim.buyer_id).or_default() += 1;
                live.entry(claim.buyer_id).or_insert(claim);
            }
            _ => {}
        }
    }
    let wanting: Vec<BuyerId> = unique
        .iter()
        .filter(|b| match live.get(b) {
            Some(c) if matches!(c.status, ClaimStatus::Held | ClaimStatus::CheckingOut) => false,
            _ => bought.get(b).copied().unwrap_or(0) < stock.per_buyer_limit,
        })
        .copied()
        .collect();

    let want = wanting.len() as i32;
    let mut available = stock.available + returned;
    if available < want {
        // Short of stock: first take back units of holds that have run out.
        let n = expire(conn, sale_id, now, Expire::Due { limit: i64::from(want - available) }).await?;
        returned += n;
        available += n;
    }
    let granted = want.min(available);
    let expires_at = now + Duration::seconds(i64::from(stock.hold_seconds));
    let new_claims: Vec<Claim> = wanting[..granted as usize]
        .iter()
        .map(|b| Claim {
            id: ClaimId::new(),
            sale_id,
            buyer_id: *b,
            status: ClaimStatus::Held,
            expires_at,
            created_at: now,
        })
        .collect();
    stock.available = available - granted;
    stock.held = stock.held - returned + granted;
    let mut sweep_second = None;
    if !new_claims.is_empty() {
        // The holds and the counters in one statement: one round trip per batch.
        let claim_ids: Vec<Uuid> = new_claims.iter().map(|c| c.id.uuid()).collect();
        let buyer_ids: Vec<Uuid> = new_claims.iter().map(|c| c.buyer_id.uuid()).collect();
        sqlx::query(
            "WITH granted AS (
                 INSERT INTO claims (id, sale_id, buyer_id, status, expires_at, created_at)
                 SELECT id, $1, buyer, 'held', $4, $5 FROM unnest($2::uuid[], $3::uuid[]) AS t (id, buyer)
             )
             UPDATE sales SET available = $6, held = $7 WHERE id = $1",
        )
        .bind(sale_id)
        .bind(&claim_ids)
        .bind(&buyer_ids)
        .bind(expires_at)
        .bind(now)
        .bind(stock.available)
        .bind(stock.held)
        .execute(&mut *conn)
        .await?;
        let second = expires_at.timestamp();
        if swept_second != Some(second) {
            schedule_sweep(conn, sale_id, expires_at).await?;
        }
        sweep_second = Some(second);
    } else if returned > 0 {
        sqlx::query("UPDATE sales SET available = $2, held = $3 WHERE id = $1")
            .bind(sale_id)
            .bind(stock.available)
            .bind(stock.held)
            .execute(&mut *conn)
            .await?;
    }
    if returned > granted {
        notify_stock_returned(conn, sale_id).await?;
    }

    let mut attempts = HashMap::with_capacity(unique.len());
    for claim in new_claims {
        attempts.insert(claim.buyer_id, Ok(ClaimOutcome { claim, created: true }));
    }
    for buyer in unique {
        attempts.entry(buyer).or_insert_with(|| match live.remove(&buyer) {
            Some(claim) => Ok(ClaimOutcome { claim, created: false }),
            None => Err(Refusal::SoldOut),
        });
    }
    Ok(BatchResult { attempts, available: stock.available, sweep_second })
}

enum Expire<'a> {
    These(&'a [Uuid]),
    Due { limit: i64 },
}

/// Marks held claims expired and returns how many changed; the caller, who
/// holds the sale row lock, moves the units from `held` to `available`.
async fn expire(conn: &mut PgConnection, sale_id: SaleId, now: DateTime<Utc>, which: Expire<'_>) -> Result<i32> {
    let result = match which {
        Expire::These(ids) => {
            sqlx::query(
                "UPDATE claims SET status = 'expired', closed_at = $3
                 WHERE sale_id = $1 AND id = ANY($2) AND status = 'held' AND expires_at <= $3",
            )
            .bind(sale_id)
            .bind(ids)
            .bind(now)
            .execute(conn)
            .await?
        }
        Expire::Due { limit } => {
            sqlx::query(
                "UPDATE claims SET status = 'expired', closed_at = $2
                 WHERE id IN (SELECT id FROM claims
                              WHERE sale_id = $1 AND status = 'held' AND expires_at <= $2
                              ORDER BY expires_at LIMIT $3)",
            )
            .bind(sale_id)
            .bind(now)
            .bind(limit)
            .execute(conn)
            .await?
        }
    };
    Ok(result.rows_affected() as i32)
}

/// Expires every overdue hold of a sale and returns the units to stock (the
/// sweeper job). Returns how many holds expired.
pub async fn sweep_expired(conn: &mut PgConnection, sale_id: SaleId) -> Result<i32> {
    let now: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT now() FROM sales WHERE id = $1 AND status = 'active' FOR NO KEY UPDATE")
            .bind(sale_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(now) = now else { return Ok(0) };
    let n = expire(conn, sale_id, now, Expire::Due { limit: i64::MAX }).await?;
    if n > 0 {
        held_to_available(conn, sale_id, n).await?;
        notify_stock_returned(conn, sale_id).await?;
    }
    // Keep the chain alive: the next hold to run out gets a sweep too.
    let next: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT min(expires_at) FROM claims WHERE sale_id = $1 AND status = 'held'")
            .bind(sale_id)
            .fetch_one(&mut *conn)
            .await?;
    if let Some(next) = next {
        schedule_sweep(conn, sale_id, next).await?;
    }
    Ok(n)
}

/// One sweep job per sale and expiry second, however many holds expire in it;
/// it runs at the end of that second, when all of them are due.
async fn schedule_sweep(conn: &mut PgConnection, sale_id: SaleId, expiry: DateTime<Utc>) -> Result<()> {
    let second = expiry.timestamp() + 1;
    let at = DateTime::from_timestamp(second, 0).unwrap_or(expiry);
    let key = format!("sweep:{sale_id}:{second}");
    jobs::enqueue(conn, queues::SALE_LIFECYCLE, &SaleJob::SweepHolds { sale_id }, at, &key).await?;
    Ok(())
}

/// The channel on which processes hear that a sale's stock went up, so their
/// cached "sold out" answers are dropped.
pub const STOCK_RETURNED_CHANNEL: &str = "gavel_stock_returned";

pub async fn notify_stock_returned(conn: &mut PgConnection, sale_id: SaleId) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(STOCK_RETURNED_CHANNEL)
        .bind(sale_id.uuid().to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Who holds or bought a unit of a sale, and when the next hold runs out: the
/// facts a process needs to answer "sold out" from memory.
pub async fn holders(pool: &PgPool, sale_id: SaleId) -> Result<(Vec<BuyerId>, Option<DateTime<Utc>>, DateTime<Utc>)> {
    let buyers: Vec<BuyerId> = sqlx::query_scalar(
        "SELECT buyer_id FROM claims WHERE sale_id = $1 AND status IN ('held', 'checking_out', 'checked_out')",
    )
    .bind(sale_id)
    .fetch_all(pool)
    .await?;
    let (next_expiry, ends_at): (Option<DateTime<Utc>>, DateTime<Utc>) = sqlx::query_as(
        "SELECT (SELECT min(expires_at) FROM claims WHERE sale_id = $1 AND status = 'held'), ends_at
         FROM sales WHERE id = $1",
    )
    .bind(sale_id)
    .fetch_one(pool)
    .await?;
    Ok((buyers, next_expiry, ends_at))
}

/// A buyer's own claim; someone else's is "not found".
pub async fn get_for_buyer(pool: &PgPool, buyer: BuyerId, id: ClaimId) -> Result<Claim> {
    let sql = concat!("SELECT ", claim_columns!(), ", now() AS now FROM claims WHERE id = $1 AND buyer_id = $2");
    let row: ClaimAt =
        sqlx::query_as(sql).bind(id).bind(buyer).fetch_optional(pool).await?.ok_or(Error::NotFound("claim"))?;
    Ok(row.claim.as_of(row.now))
}

#[derive(sqlx::FromRow)]
struct ClaimAt {
    #[sqlx(flatten)]
    claim: Claim,
    now: DateTime<Utc>,
}

/// A buyer's claim, locked for checkout, with what its order needs from the
/// sale (read, not locked: a sale's price cannot change once it has claims).
#[derive(Debug, sqlx::FromRow)]
pub struct CheckoutTarget {
    #[sqlx(flatten)]
    pub claim: Claim,
    pub now: DateTime<Utc>,
    pub merchant_id: crate::ids::MerchantId,
    pub price: i64,
    pub currency: String,
}

pub async fn lock_for_checkout(conn: &mut PgConnection, buyer: BuyerId, id: ClaimId) -> Result<CheckoutTarget> {
    sqlx::query_as(
        "SELECT c.id, c.sale_id, c.buyer_id, c.status, c.expires_at, c.created_at, now() AS now,
                s.merchant_id, s.price, s.currency
         FROM claims c JOIN sales s ON s.id = c.sale_id
         WHERE c.id = $1 AND c.buyer_id = $2 FOR UPDATE OF c",
    )
    .bind(id)
    .bind(buyer)
    .fetch_optional(conn)
    .await?
    .ok_or(Error::NotFound("claim"))
}

/// `Held → CheckingOut`: the hold stops running out. `false` if it was not held.
pub async fn start_checkout(conn: &mut PgConnection, id: ClaimId) -> Result<bool> {
    let n = sqlx::query("UPDATE claims SET status = 'checking_out' WHERE id = $1 AND status = 'held'")
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(n == 1)
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
        CheckoutEnd::Sold => "checked_out",
        CheckoutEnd::Released => "released",
    };
    let n = sqlx::query(
        "UPDATE claims SET status = $2, closed_at = now() WHERE id = $1 AND sale_id = $3 AND status = 'checking_out'",
    )
    .bind(id)
    .bind(to)
    .bind(sale_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Moves a checked-out unit in the sale's counters: `held → sold`, unless the
/// sale has been cancelled (then `false` and nothing changes: the caller
/// starts over and releases instead), or `held → available`.
pub async fn settle_unit(conn: &mut PgConnection, sale_id: SaleId, end: CheckoutEnd) -> Result<bool> {
    match end {
        CheckoutEnd::Sold => {
            let n = sqlx::query(
                "UPDATE sales SET sold = sold + 1, held = held - 1 WHERE id = $1 AND status <> 'cancelled'",
            )
            .bind(sale_id)
            .execute(conn)
            .await?
            .rows_affected();
            Ok(n == 1)
        }
        CheckoutEnd::Released => {
            held_to_available(&mut *conn, sale_id, 1).await?;
            notify_stock_returned(conn, sale_id).await?;
            Ok(true)
        }
    }
}

/// Returns `n` held units to stock (the caller holds the sale lock or this takes it).
async fn held_to_available(conn: &mut PgConnection, sale_id: SaleId, n: i32) -> Result<()> {
    sqlx::query("UPDATE sales SET available = available + $2, held = held - $2 WHERE id = $1")
        .bind(sale_id)
        .bind(n)
        .execute(conn)
        .await?;
    Ok(())
}
