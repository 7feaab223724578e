//! Placing bids: a batch of attempts on one auction judged in arrival order
//! and stored by ONE statement.
//!
//! A batch is two statements: [`store::snapshot`] reads the auction, its
//! trail's head, the database clock and what the rules need about the
//! batch's bidders; [`judge::judge`] decides every attempt in the order given,
//! each against the state the previous one left; [`store::write`] stores it
//! all — every attempt with its `sequence` (from `auctions.last_sequence + 1`,
//! without gaps) and its link in the hash chain ([`trail`]), the auction's new
//! state, outbid and extension events, the feed's entries and their `NOTIFY` —
//! guarded by the auction's `version`.
//!
//! - [`place_optimistic`] (the hot path) runs the two without a transaction:
//!   if another writer moved the auction between them, the guard fails,
//!   nothing is written and the batch is judged again. A batch that must
//!   start the auction or that moves its end (a job to reschedule in the same
//!   transaction) is handed to the locked path.
//! - [`place_batch`] runs them in the caller's transaction under the auction
//!   row's lock (the naive strategy, and the hot path's fallback).
//!
//! Server time is the database clock of the snapshot: one instant for the
//! whole batch, never earlier than the previous batch's (the previous batch
//! committed before this snapshot, or this batch's guard fails). Ties within a
//! batch go by `sequence`.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::Auction;
use super::price::Rejection;
use super::trail::{self, AttemptFields, AttemptStatus, StoredAttempt};
use crate::error::{Error, Result};
use crate::ids::{AuctionId, BidId, BuyerId};
use crate::money::Currency;

/// How long a batch waits for the auction's row lock before giving up
/// (answered `503 contention`, nothing stored).
pub const LOCK_TIMEOUT: &str = "2s";

/// The velocity window: `bids_per_minute` attempts per bidder and auction.
const WINDOW_SECONDS: i64 = 60;

mod judge;
mod store;

pub use judge::{Judgement, Snapshot};

/// One attempt as it arrives (the amount not yet judged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub bidder: BuyerId,
    pub amount: i64,
    pub max_amount: Option<i64>,
    /// The currency the bid names, if it names one.
    pub currency: Option<Currency>,
    pub idempotency_key: Option<String>,
}

/// Why an attempt was refused; stored as the attempt's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    BidTooLow,
    AmountOutOfRange,
    /// `max_amount` below `amount`.
    InvalidMaxAmount,
    CurrencyMismatch,
    /// The bidder's account belongs to the auction's merchant.
    OwnAuction,
    RateLimited,
    AuctionNotStarted,
    AuctionClosed,
}

impl Refusal {
    /// Every refusal (a stored `reason` reads back through this list).
    pub const ALL: [Self; 8] = [
        Self::BidTooLow,
        Self::AmountOutOfRange,
        Self::InvalidMaxAmount,
        Self::CurrencyMismatch,
        Self::OwnAuction,
        Self::RateLimited,
        Self::AuctionNotStarted,
        Self::AuctionClosed,
    ];

    /// The trail's `reason` and the problem's `code`.
    pub fn code(self) -> &'static str {
        match self {
            Self::BidTooLow => "bid_too_low",
            Self::AmountOutOfRange => "amount_out_of_range",
            Self::InvalidMaxAmount => "invalid_max_amount",
            Self::CurrencyMismatch => "currency_mismatch",
            Self::OwnAuction => "own_auction",
            Self::RateLimited => "rate_limited",
            Self::AuctionNotStarted => "auction_not_started",
            Self::AuctionClosed => "auction_closed",
        }
    }

    fn from_rule(r: Rejection) -> Self {
        match r {
            Rejection::BidTooLow => Self::BidTooLow,
            Rejection::AmountOutOfRange => Self::AmountOutOfRange,
        }
    }
}

/// The answer to one attempt: what was stored and what it left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub id: BidId,
    pub sequence: u64,
    pub amount: i64,
    /// `Ok(leading)` if accepted.
    pub outcome: std::result::Result<bool, Refusal>,
    pub current_price: i64,
    pub min_next_bid: i64,
    pub ends_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// For `rate_limited`: seconds until the bidder's oldest counted attempt leaves the window.
    pub retry_after: Option<u64>,
    /// `true` when this is an earlier attempt found by its idempotency key.
    pub replayed: bool,
}

/// What a batch yields, one entry per attempt in the order given.
#[derive(Debug)]
pub struct BatchOutcome {
    pub placed: Vec<Result<Placed>>,
    /// The auction is active (or scheduled) past its end: the caller should
    /// run the guarded close once this transaction has committed.
    pub close_due: bool,
    /// Soft close moved the end: the auction as it now ends. The caller
    /// queues the end job for it in the same transaction
    /// (`auction_lifecycle::schedule_end`; the domain does not know the queues).
    pub extended_to: Option<Auction>,
}

/// Limits the batch applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Attempts one bidder may make on one auction in 60 s (rate-limited attempts not counted).
    pub bids_per_minute: u32,
}

/// What [`place_optimistic`] did.
#[derive(Debug)]
pub enum Optimistic {
    /// Stored and committed.
    Placed(Box<BatchOutcome>),
    /// Another writer moved the auction since the snapshot: nothing stored; judge again.
    Moved,
    /// The batch starts the auction or moves its end: place it under the lock
    /// ([`place_batch`]) in a transaction that also reschedules the end job.
    NeedsLock,
}

/// The hot path: `attempts` on `auction_id` in one read and one guarded,
/// self-committing write (see the module's documentation). An unknown auction
/// is `NotFound`; a bidder without an account is `UnknownBuyer` for that
/// attempt alone (nothing is stored for it).
pub async fn place_optimistic(
    pool: &PgPool,
    auction_id: AuctionId,
    attempts: &[Attempt],
    limits: Limits,
) -> Result<Optimistic> {
    let mut conn = pool.acquire().await?;
    let Some(snapshot) = store::snapshot(&mut conn, auction_id, attempts, limits).await? else {
        return Err(Error::NotFound("auction"));
    };
    if snapshot.start_due() {
        return Ok(Optimistic::NeedsLock);
    }
    let judgement = judge::judge(&snapshot, attempts, limits);
    if !judgement.extended.is_empty() {
        return Ok(Optimistic::NeedsLock);
    }
    if !judgement.judged.is_empty() && !store::write(&mut conn, &snapshot, &judgement).await? {
        return Ok(Optimistic::Moved);
    }
    let close_due = judgement.close_due;
    Ok(Optimistic::Placed(Box::new(BatchOutcome {
        placed: judgement.answers(snapshot.now),
        close_due,
        extended_to: None,
    })))
}

/// Judges and stores `attempts` on `auction_id` in the caller's transaction,
/// under the auction row's lock (taken here, waiting at most
/// [`LOCK_TIMEOUT`]). An unknown auction is `NotFound` for all; a bidder
/// without an account is `UnknownBuyer` for that attempt alone (and nothing
/// is stored for it).
pub async fn place_batch(
    conn: &mut PgConnection,
    auction_id: AuctionId,
    attempts: &[Attempt],
    limits: Limits,
) -> Result<BatchOutcome> {
    sqlx::query_scalar!("SELECT set_config('lock_timeout', $1, true)", LOCK_TIMEOUT).fetch_one(&mut *conn).await?;
    if super::lock(&mut *conn, auction_id).await?.is_none() {
        return Err(Error::NotFound("auction"));
    }
    let Some(mut snapshot) = store::snapshot(&mut *conn, auction_id, attempts, limits).await? else {
        return Err(Error::NotFound("auction"));
    };
    // A scheduled auction past its start whose start job has not run: the
    // first bid performs the same guarded transition.
    if snapshot.start_due()
        && let Some(started) = super::start(&mut *conn, auction_id, snapshot.auction.version).await?
    {
        tracing::warn!(%auction_id, "auction started by a bid ahead of its start job");
        snapshot.auction = started;
    }
    let judgement = judge::judge(&snapshot, attempts, limits);
    if !judgement.judged.is_empty() && !store::write(&mut *conn, &snapshot, &judgement).await? {
        // Cannot happen under the row lock; a serializable retry if it does.
        return Err(Error::Contention { retry_after: std::time::Duration::from_secs(1) });
    }
    let extended_to = (!judgement.extended.is_empty()).then(|| Auction {
        ends_at: judgement.ends_at,
        extensions: judgement.extensions,
        ..snapshot.auction.clone()
    });
    let close_due = judgement.close_due;
    Ok(BatchOutcome { placed: judgement.answers(snapshot.now), close_due, extended_to })
}

/// One attempt as stored in the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBid {
    pub id: BidId,
    pub sequence: i64,
    pub bidder_id: BuyerId,
    pub amount: i64,
    pub max_amount: i64,
    pub status: String,
    pub reason: Option<String>,
    pub current_price: i64,
    pub min_next_bid: i64,
    pub is_leading: bool,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub hash: Vec<u8>,
}

impl StoredBid {
    pub fn accepted(&self) -> bool {
        self.status == AttemptStatus::Accepted.as_str()
    }

    /// The fields its hash commits to, and the hash as stored.
    pub fn to_attempt(&self) -> StoredAttempt {
        StoredAttempt {
            fields: AttemptFields {
                sequence: u64::try_from(self.sequence).unwrap_or_default(),
                bidder: self.bidder_id,
                amount: self.amount,
                max_amount: self.max_amount,
                status: if self.accepted() { AttemptStatus::Accepted } else { AttemptStatus::Rejected },
                reason: self.reason.clone(),
                created_at_micros: self.created_at.timestamp_micros(),
                idempotency_key: self.idempotency_key.clone(),
            },
            // A stored hash of the wrong length cannot match any computed one.
            hash: self.hash.as_slice().try_into().unwrap_or([0xff; 32]),
        }
    }
}

fn refusal_from_code(code: &str) -> Option<Refusal> {
    Refusal::ALL.into_iter().find(|r| r.code() == code)
}

/// One page of the trail in `sequence` order, after the attempt `starting_after`
/// (an id of this auction's trail; an unknown one gives an empty page).
pub async fn list(
    pool: &PgPool,
    auction: AuctionId,
    limit: i64,
    starting_after: Option<BidId>,
) -> Result<Vec<StoredBid>> {
    Ok(sqlx::query_as!(
        StoredBid,
        r#"SELECT id AS "id: BidId", sequence, bidder_id AS "bidder_id: BuyerId", amount, max_amount, status, reason,
                  current_price, min_next_bid, is_leading, idempotency_key, created_at, hash
           FROM auction_bids
           WHERE auction_id = $1
             AND sequence > CASE WHEN $2::uuid IS NULL THEN 0
                                 ELSE (SELECT b.sequence FROM auction_bids b WHERE b.id = $2 AND b.auction_id = $1) END
           ORDER BY sequence LIMIT $3"#,
        auction as AuctionId,
        starting_after as Option<BidId>,
        limit,
    )
    .fetch_all(pool)
    .await?)
}

/// What `gavel auctions verify` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub auction_id: String,
    pub attempts: u64,
    /// The head recomputed from the stored attempts (up to the break, if any).
    pub computed_hash: String,
    /// `auctions.trail_hash`.
    pub stored_hash: String,
    pub last_sequence: i64,
    pub ok: bool,
    /// Where and why the chain breaks.
    pub error: Option<String>,
}

/// Recomputes the trail's chain from the stored attempts, page by page, and
/// compares its head with the auction's `trail_hash` and `last_sequence`.
pub async fn verify(pool: &PgPool, auction: AuctionId) -> Result<Verification> {
    const PAGE: i64 = 5_000;
    let head = sqlx::query!("SELECT last_sequence, trail_hash FROM auctions WHERE id = $1", auction as AuctionId,)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::NotFound("auction"))?;
    let mut previous = trail::GENESIS;
    let mut count: u64 = 0;
    let mut error = None;
    let mut after: i64 = 0;
    'pages: loop {
        let page = sqlx::query_as!(
            StoredBid,
            r#"SELECT id AS "id: BidId", sequence, bidder_id AS "bidder_id: BuyerId", amount, max_amount, status,
                      reason, current_price, min_next_bid, is_leading, idempotency_key, created_at, hash
               FROM auction_bids WHERE auction_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3"#,
            auction as AuctionId,
            after,
            PAGE,
        )
        .fetch_all(pool)
        .await?;
        let Some(last) = page.last() else { break };
        after = last.sequence;
        for bid in &page {
            let attempt = bid.to_attempt();
            let expected = count + 1;
            if attempt.fields.sequence != expected {
                error = Some(format!("expected sequence {expected}, found {}", attempt.fields.sequence));
                break 'pages;
            }
            let computed = trail::attempt_hash(&previous, &attempt.fields);
            if computed != attempt.hash {
                error = Some(format!(
                    "sequence {expected}: the stored hash {} is not the recomputed {}",
                    hex::encode(&bid.hash),
                    trail::to_hex(&computed)
                ));
                break 'pages;
            }
            previous = computed;
            count = expected;
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    let stored_hash = hex::encode(&head.trail_hash);
    let computed_hash = trail::to_hex(&previous);
    if error.is_none() && i64::try_from(count).ok() != Some(head.last_sequence) {
        error = Some(format!("{count} attempts stored but the auction counts {}", head.last_sequence));
    }
    if error.is_none() && computed_hash != stored_hash {
        error = Some(format!("the auction's trail_hash {stored_hash} is not the recomputed {computed_hash}"));
    }
    Ok(Verification {
        auction_id: auction.to_string(),
        attempts: count,
        computed_hash,
        stored_hash,
        last_sequence: head.last_sequence,
        ok: error.is_none(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_refusal_reads_back_from_its_stored_code() {
        let codes: HashSet<_> = Refusal::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), Refusal::ALL.len(), "one code each");
        for r in Refusal::ALL {
            assert_eq!(refusal_from_code(r.code()), Some(r));
        }
        assert_eq!(refusal_from_code("sold_out"), None);
    }
}
