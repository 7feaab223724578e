//! Granting holds: the claim hot path, one transaction per batch of buyers.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::expiry::{Expire, expire, schedule_sweep};
use super::{Attempt, Claim, ClaimOutcome, ClaimStatus, Refusal, held_to_available_at, notify_stock_returned};
use crate::error::Result;
use crate::feed::{self, Entry, SaleFeed, Topic};
use crate::ids::{BuyerId, ClaimId, SaleId};
use crate::sales::{self, SaleStatus};

/// What a batch needs of its sale, read under the sale's row lock.
struct SaleStock {
    version: i32,
    status: SaleStatus,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    hold_seconds: i32,
    per_buyer_limit: i32,
    available: i32,
    held: i32,
    sold: i32,
    /// When the sale's feed last published its stock.
    feed_stock_at: Option<DateTime<Utc>>,
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
    let stock = sqlx::query_as!(
        SaleStock,
        r#"SELECT version, status AS "status: SaleStatus", starts_at, ends_at, hold_seconds, per_buyer_limit,
                  available, held, sold, feed_stock_at, now() AS "now!"
           FROM sales WHERE id = $1 FOR NO KEY UPDATE"#,
        sale_id as SaleId,
    )
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
    match stock.status {
        SaleStatus::Scheduled => {
            // Past its start but its start job has not run (a worker died
            // holding it, or all workers are down): the first claim performs
            // the same guarded transition, so buyers never wait on a lost job.
            if sales::start(conn, sale_id, stock.version).await?.is_some() {
                tracing::warn!(%sale_id, "sale started by a claim ahead of its start job");
            }
        }
        SaleStatus::Active => {}
        SaleStatus::Ended | SaleStatus::Cancelled => {
            return Ok(refuse_all(Refusal::SaleNotActive, stock.available));
        }
    }

    let mut seen = HashSet::with_capacity(buyers.len());
    let unique: Vec<BuyerId> = buyers.iter().copied().filter(|b| seen.insert(*b)).collect();
    let ids: Vec<Uuid> = unique.iter().map(|b| b.uuid()).collect();
    let existing: Vec<Claim> = sqlx::query_as!(
        Claim,
        r#"SELECT id AS "id: ClaimId", sale_id AS "sale_id: SaleId", buyer_id AS "buyer_id: BuyerId",
                  status AS "status: ClaimStatus", expires_at, created_at
           FROM claims
           WHERE sale_id = $1 AND buyer_id = ANY($2) AND status IN ('held', 'checking_out', 'checked_out')
           ORDER BY created_at"#,
        sale_id as SaleId,
        &ids[..],
    )
    .fetch_all(&mut *conn)
    .await?;

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
    // The live feed: a `stock` event at most every STOCK_EVERY_MS (the
    // counters' own UPDATE records when, or marks the change for the feed
    // tick), and always the one that sells the last unit, with `sold_out`.
    let sold_out = granted > 0 && stock.available == 0;
    let publish =
        sold_out || stock.feed_stock_at.is_none_or(|at| now - at >= Duration::milliseconds(feed::STOCK_EVERY_MS));
    let mut sweep_second = None;
    if !new_claims.is_empty() {
        // The holds, the counters and the feed's mark in one statement: one
        // round trip per batch.
        let claim_ids: Vec<Uuid> = new_claims.iter().map(|c| c.id.uuid()).collect();
        let buyer_ids: Vec<Uuid> = new_claims.iter().map(|c| c.buyer_id.uuid()).collect();
        sqlx::query!(
            "WITH granted AS (
                 INSERT INTO claims (id, sale_id, buyer_id, status, expires_at, created_at)
                 SELECT id, $1, buyer, 'held', $4, $5 FROM unnest($2::uuid[], $3::uuid[]) AS t (id, buyer)
             )
             UPDATE sales SET available = $6, held = $7,
                              feed_stock_at = CASE WHEN $8 THEN $5 ELSE feed_stock_at END,
                              feed_stock_dirty = NOT $8
             WHERE id = $1",
            sale_id as SaleId,
            &claim_ids[..],
            &buyer_ids[..],
            expires_at,
            now,
            stock.available,
            stock.held,
            publish,
        )
        .execute(&mut *conn)
        .await?;
        let second = expires_at.timestamp();
        if swept_second != Some(second) {
            schedule_sweep(conn, sale_id, expires_at).await?;
        }
        sweep_second = Some(second);
        if publish {
            let mut entries = vec![Entry::from(&SaleFeed::Stock {
                available: i64::from(stock.available),
                held: i64::from(stock.held),
                sold: i64::from(stock.sold),
            })];
            if sold_out {
                entries.push(Entry::from(&SaleFeed::SoldOut {}));
            }
            feed::append(conn, Topic::Sale(sale_id), &entries).await?;
        }
    } else if returned > 0 {
        held_to_available_at(conn, sale_id, stock.available, stock.held).await?;
        feed::sale_stock_changed(conn, sale_id, false).await?;
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
