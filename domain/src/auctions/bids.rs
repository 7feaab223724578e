//! Placing bids: a batch of attempts on one auction judged and stored in ONE
//! transaction, under the auction row's lock.
//!
//! The batch is judged in the order given (the order the attempts arrived in
//! the process), each against the state the previous one left
//! ([`Book::judge`]). Every attempt, accepted or rejected, gets the next
//! `sequence` (from `auctions.last_sequence + 1`, without gaps) and its link
//! in the hash chain ([`trail`]); all are inserted by one multi-row statement,
//! and the auction row is updated once, guarded by the version read under the
//! lock. Outbid and extension events, the feed's entries and a moved end job
//! commit in the same transaction.
//!
//! Server time is the database clock read right after the lock is taken: one
//! instant for the whole batch, never earlier than the previous batch's (the
//! lock orders them). Ties within a batch go by `sequence`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::price::{Bid, Decision, Rejection};
use super::trail::{self, AttemptFields, AttemptStatus, StoredAttempt};
use super::{AMOUNT_MAX, AMOUNT_MIN, Auction, AuctionStatus};
use crate::error::{Error, Result};
use crate::events::{self, AuctionExtended, BidOutbid, DomainEvent};
use crate::feed::{self, AuctionFeed, Entry, Topic};
use crate::ids::{AuctionId, BidId, BuyerId, MerchantId};
use crate::money::{Currency, Money};

/// How long a batch waits for the auction's row lock before giving up
/// (answered `503 contention`, nothing stored).
pub const LOCK_TIMEOUT: &str = "2s";

/// The velocity window: `bids_per_minute` attempts per bidder and auction.
const WINDOW_SECONDS: i64 = 60;

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

struct Head {
    last_sequence: i64,
    trail_hash: Vec<u8>,
    now: DateTime<Utc>,
}

/// An attempt judged, before it is stored.
struct Judged {
    fields: AttemptFields,
    id: BidId,
    hash: [u8; 32],
    outcome: std::result::Result<bool, Refusal>,
    current_price: i64,
    min_next_bid: i64,
    ends_at: DateTime<Utc>,
    retry_after: Option<u64>,
}

/// Judges and stores `attempts` on `auction_id` in the caller's transaction
/// (see the module's documentation). An unknown auction is `NotFound` for all;
/// a bidder without an account is `UnknownBuyer` for that attempt alone (and
/// nothing is stored for it).
pub async fn place_batch(
    conn: &mut PgConnection,
    auction_id: AuctionId,
    attempts: &[Attempt],
    limits: Limits,
) -> Result<BatchOutcome> {
    sqlx::query_scalar!("SELECT set_config('lock_timeout', $1, true)", LOCK_TIMEOUT).fetch_one(&mut *conn).await?;
    let Some(mut auction) = super::lock(&mut *conn, auction_id).await? else {
        return Err(Error::NotFound("auction"));
    };
    let head = sqlx::query_as!(
        Head,
        r#"SELECT last_sequence, trail_hash, clock_timestamp() AS "now!" FROM auctions WHERE id = $1"#,
        auction_id as AuctionId,
    )
    .fetch_one(&mut *conn)
    .await?;
    let now = head.now;
    // A scheduled auction past its start whose start job has not run: the
    // first bid performs the same guarded transition.
    if auction.status == AuctionStatus::Scheduled
        && now >= auction.starts_at
        && now < auction.ends_at
        && let Some(started) = super::start(&mut *conn, auction_id, auction.version).await?
    {
        tracing::warn!(%auction_id, "auction started by a bid ahead of its start job");
        auction = started;
    }

    let bidders: Vec<Uuid> = {
        let mut seen = HashSet::new();
        attempts.iter().map(|a| a.bidder).filter(|b| seen.insert(*b)).map(|b| b.uuid()).collect()
    };
    let accounts: HashMap<BuyerId, Option<MerchantId>> = sqlx::query!(
        r#"SELECT id AS "id: BuyerId", merchant_id AS "merchant_id: MerchantId" FROM buyers WHERE id = ANY($1)"#,
        &bidders[..],
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.id, r.merchant_id))
    .collect();
    let mut recent: HashMap<BuyerId, (u32, DateTime<Utc>)> = sqlx::query!(
        r#"SELECT bidder_id AS "bidder: BuyerId", count(*) AS "count!", min(created_at) AS "oldest!"
           FROM auction_bids
           WHERE auction_id = $1 AND bidder_id = ANY($2) AND created_at > $3
             AND reason IS DISTINCT FROM 'rate_limited'
           GROUP BY bidder_id"#,
        auction_id as AuctionId,
        &bidders[..],
        now - Duration::seconds(WINDOW_SECONDS),
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| (r.bidder, (u32::try_from(r.count).unwrap_or(u32::MAX), r.oldest)))
    .collect();
    let keys: Vec<String> = attempts.iter().filter_map(|a| a.idempotency_key.clone()).collect();
    let mut earlier: HashMap<(BuyerId, String), Placed> =
        if keys.is_empty() { HashMap::new() } else { find_by_keys(&mut *conn, &auction, &keys).await? };

    let mut book = auction.book;
    let mut sequence = u64::try_from(head.last_sequence).unwrap_or_default();
    let mut previous: [u8; 32] = head.trail_hash.as_slice().try_into().unwrap_or(trail::GENESIS);
    let (mut ends_at, mut extensions) = (auction.ends_at, auction.extensions);
    let mut judged: Vec<Judged> = Vec::with_capacity(attempts.len());
    let mut answers: Vec<Option<Result<Placed>>> = Vec::with_capacity(attempts.len());
    let mut slots: Vec<usize> = Vec::with_capacity(attempts.len());
    let mut outbid: Vec<BidOutbid> = Vec::new();
    let mut feed_entries: Vec<Entry> = Vec::new();
    let mut extended: Vec<AuctionExtended> = Vec::new();
    let mut close_due = false;

    for attempt in attempts {
        let Some(owner) = accounts.get(&attempt.bidder) else {
            answers.push(Some(Err(Error::UnknownBuyer)));
            continue;
        };
        if let Some(key) = &attempt.idempotency_key
            && let Some(placed) = earlier.get(&(attempt.bidder, key.clone()))
        {
            answers.push(Some(Ok(placed.clone())));
            continue;
        }
        sequence += 1;
        let amount_ok = (AMOUNT_MIN..=AMOUNT_MAX).contains(&attempt.amount)
            && attempt.max_amount.is_none_or(|m| (AMOUNT_MIN..=AMOUNT_MAX).contains(&m));
        let counted = recent.entry(attempt.bidder).or_insert((0, now));
        let mut retry_after = None;
        let refusal = if counted.0 >= limits.bids_per_minute {
            let wait = (counted.1 + Duration::seconds(WINDOW_SECONDS) - now).num_milliseconds();
            retry_after = Some(u64::try_from(wait).unwrap_or(0).div_ceil(1000).max(1));
            Some(Refusal::RateLimited)
        } else if !amount_ok {
            Some(Refusal::AmountOutOfRange)
        } else if attempt.max_amount.is_some_and(|m| m < attempt.amount) {
            Some(Refusal::InvalidMaxAmount)
        } else if attempt.currency.is_some_and(|c| c != auction.currency) {
            Some(Refusal::CurrencyMismatch)
        } else if *owner == Some(auction.merchant_id) {
            Some(Refusal::OwnAuction)
        } else {
            match auction.status {
                AuctionStatus::Ended | AuctionStatus::Cancelled => Some(Refusal::AuctionClosed),
                _ if now >= ends_at => {
                    close_due = true;
                    Some(Refusal::AuctionClosed)
                }
                AuctionStatus::Scheduled => Some(Refusal::AuctionNotStarted),
                AuctionStatus::Active => None,
            }
        };
        if refusal != Some(Refusal::RateLimited) {
            if counted.0 == 0 {
                counted.1 = now;
            }
            counted.0 += 1;
        }
        let bid = Bid::new(attempt.bidder, attempt.amount, attempt.max_amount);
        let before_leader = book.leader().map(|l| l.bidder);
        let (outcome, current_price, min_next_bid) = match refusal {
            Some(r) => (Err(r), book.current_price(), book.min_next_bid(&auction.increments)),
            None => {
                let (next, decision) = book.judge(&auction.increments, sequence, bid);
                book = next;
                match decision {
                    Decision::Accepted { leading, current_price, min_next_bid } => {
                        (Ok(leading), current_price, min_next_bid)
                    }
                    Decision::Rejected { reason, current_price, min_next_bid } => {
                        (Err(Refusal::from_rule(reason)), current_price, min_next_bid)
                    }
                }
            }
        };
        if outcome.is_ok() {
            let after_leader = book.leader().map(|l| l.bidder);
            if let Some(lost) = before_leader
                && after_leader != Some(lost)
            {
                outbid.push(BidOutbid {
                    auction_id,
                    buyer_id: lost,
                    sequence,
                    current_price: Money::new(current_price, auction.currency),
                    min_next_bid: Money::new(min_next_bid, auction.currency),
                    ends_at,
                });
            }
            let extends = now >= ends_at - Duration::seconds(i64::from(auction.soft_close_seconds))
                && extensions < auction.max_extensions;
            if extends {
                ends_at += Duration::seconds(i64::from(auction.extension_seconds));
                extensions += 1;
            }
            feed_entries.push(Entry::from(&AuctionFeed::Bid {
                sequence,
                current_price,
                min_next_bid,
                leader: book.leader().map(|l| l.bidder.masked()),
                bid_count: book.bid_count(),
                ends_at,
            }));
            if extends {
                extended.push(AuctionExtended { auction_id, ends_at, extensions });
                feed_entries.push(Entry::from(&AuctionFeed::Extended { ends_at, extensions }));
            }
        }
        let fields = AttemptFields {
            sequence,
            bidder: attempt.bidder,
            amount: attempt.amount,
            max_amount: bid.max(),
            status: if outcome.is_ok() { AttemptStatus::Accepted } else { AttemptStatus::Rejected },
            reason: outcome.err().map(|r| r.code().to_owned()),
            created_at_micros: now.timestamp_micros(),
            idempotency_key: attempt.idempotency_key.clone(),
        };
        let hash = trail::attempt_hash(&previous, &fields);
        previous = hash;
        let j = Judged { fields, id: BidId::new(), hash, outcome, current_price, min_next_bid, ends_at, retry_after };
        if let (Some(key), false) = (&attempt.idempotency_key, outcome == Err(Refusal::RateLimited)) {
            earlier.insert((attempt.bidder, key.clone()), j.placed(now, true));
        }
        slots.push(answers.len());
        answers.push(None);
        judged.push(j);
    }
    if !judged.is_empty() {
        insert(&mut *conn, auction_id, now, &judged).await?;
        let leader = book.leader();
        let updated = sqlx::query_scalar!(
            r#"UPDATE auctions
               SET current_price = $3, leader_buyer_id = $4, leader_max = $5, leader_sequence = $6,
                   bid_count = $7, last_sequence = $8, trail_hash = $9, ends_at = $10, extensions = $11,
                   version = version + 1
               WHERE id = $1 AND version = $2
               RETURNING version"#,
            auction_id as AuctionId,
            auction.version,
            book.current_price(),
            leader.map(|l| l.bidder) as Option<BuyerId>,
            leader.map(|l| l.max),
            leader.map(|l| i64::try_from(l.since).unwrap_or(i64::MAX)),
            i32::try_from(book.bid_count()).unwrap_or(i32::MAX),
            i64::try_from(sequence).unwrap_or(i64::MAX),
            &previous[..],
            ends_at,
            extensions,
        )
        .fetch_optional(&mut *conn)
        .await?;
        if updated.is_none() {
            // Cannot happen under the row lock; a serializable retry if it does.
            return Err(Error::Contention { retry_after: std::time::Duration::from_secs(1) });
        }
        for event in outbid {
            events::record(&mut *conn, auction.merchant_id, &DomainEvent::BidOutbid(event)).await?;
        }
        for event in &extended {
            events::record(&mut *conn, auction.merchant_id, &DomainEvent::AuctionExtended(event.clone())).await?;
        }
        if !feed_entries.is_empty() {
            feed::append(&mut *conn, Topic::Auction(auction_id), &feed_entries).await?;
        }
    }
    let extended_to = (!extended.is_empty()).then(|| Auction { ends_at, extensions, ..auction.clone() });

    for (slot, j) in slots.into_iter().zip(judged) {
        answers[slot] = Some(Ok(j.placed(now, false)));
    }
    let placed = answers.into_iter().map(|a| a.unwrap_or_else(|| Err(Error::Internal("bid lost".into())))).collect();
    Ok(BatchOutcome { placed, close_due, extended_to })
}

impl Judged {
    fn placed(&self, created_at: DateTime<Utc>, replayed: bool) -> Placed {
        Placed {
            id: self.id,
            sequence: self.fields.sequence,
            amount: self.fields.amount,
            outcome: self.outcome,
            current_price: self.current_price,
            min_next_bid: self.min_next_bid,
            ends_at: self.ends_at,
            created_at,
            retry_after: self.retry_after,
            replayed,
        }
    }
}

/// All judged attempts in one statement.
async fn insert(conn: &mut PgConnection, auction_id: AuctionId, now: DateTime<Utc>, judged: &[Judged]) -> Result<()> {
    let n = judged.len();
    let (mut ids, mut sequences, mut bidders) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut amounts, mut maxima, mut statuses) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut reasons, mut prices, mut minima) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut leading, mut keys, mut hashes) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for j in judged {
        ids.push(j.id.uuid());
        sequences.push(i64::try_from(j.fields.sequence).unwrap_or(i64::MAX));
        bidders.push(j.fields.bidder.uuid());
        amounts.push(j.fields.amount);
        maxima.push(j.fields.max_amount);
        statuses.push(j.fields.status.as_str().to_owned());
        reasons.push(j.fields.reason.clone());
        prices.push(j.current_price);
        minima.push(j.min_next_bid);
        leading.push(j.outcome == Ok(true));
        keys.push(j.fields.idempotency_key.clone());
        hashes.push(j.hash.to_vec());
    }
    sqlx::query!(
        r#"INSERT INTO auction_bids (id, auction_id, sequence, bidder_id, amount, max_amount, status, reason,
                                     current_price, min_next_bid, is_leading, idempotency_key, created_at, hash)
           SELECT t.id, $1, t.sequence, t.bidder, t.amount, t.max_amount, t.status, t.reason,
                  t.price, t.min_next, t.lead, t.key, $2, t.hash
           FROM UNNEST($3::uuid[], $4::int8[], $5::uuid[], $6::int8[], $7::int8[], $8::text[], $9::text[],
                       $10::int8[], $11::int8[], $12::bool[], $13::text[], $14::bytea[])
                AS t(id, sequence, bidder, amount, max_amount, status, reason, price, min_next, lead, key, hash)"#,
        auction_id as AuctionId,
        now,
        &ids[..],
        &sequences[..],
        &bidders[..],
        &amounts[..],
        &maxima[..],
        &statuses[..],
        &reasons[..] as &[Option<String>],
        &prices[..],
        &minima[..],
        &leading[..],
        &keys[..] as &[Option<String>],
        &hashes[..],
    )
    .execute(conn)
    .await?;
    Ok(())
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

/// Earlier attempts of this auction carrying one of `keys`, by (bidder, key).
async fn find_by_keys(
    conn: &mut PgConnection,
    auction: &Auction,
    keys: &[String],
) -> Result<HashMap<(BuyerId, String), Placed>> {
    let rows = sqlx::query_as!(
        StoredBid,
        r#"SELECT id AS "id: BidId", sequence, bidder_id AS "bidder_id: BuyerId", amount, max_amount, status, reason,
                  current_price, min_next_bid, is_leading, idempotency_key, created_at, hash
           FROM auction_bids
           WHERE auction_id = $1 AND idempotency_key = ANY($2) AND reason IS DISTINCT FROM 'rate_limited'"#,
        auction.id as AuctionId,
        keys,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let key = r.idempotency_key.clone()?;
            let outcome = if r.accepted() { Ok(r.is_leading) } else { Err(refusal_from_code(r.reason.as_deref()?)?) };
            let placed = Placed {
                id: r.id,
                sequence: u64::try_from(r.sequence).unwrap_or_default(),
                amount: r.amount,
                outcome,
                current_price: r.current_price,
                min_next_bid: r.min_next_bid,
                ends_at: auction.ends_at,
                created_at: r.created_at,
                retry_after: None,
                replayed: true,
            };
            Some(((r.bidder_id, key), placed))
        })
        .collect())
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
