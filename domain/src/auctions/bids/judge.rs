//! Judging a batch: pure, from a [`Snapshot`] of the auction to a
//! [`Judgement`] of what to store and answer. No clock, no database.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::{Attempt, Limits, Placed, Refusal, WINDOW_SECONDS};
use crate::auctions::price::{Bid, Book, Decision};
use crate::auctions::trail::{self, AttemptFields, AttemptStatus};
use crate::auctions::{AMOUNT_MAX, AMOUNT_MIN, Auction, AuctionStatus};
use crate::error::{Error, Result};
use crate::events::{AuctionExtended, BidOutbid};
use crate::feed::{AuctionFeed, Entry};
use crate::ids::{BidId, BuyerId, MerchantId};
use crate::money::Money;

/// What a batch is judged against: the auction and everything about its
/// bidders that the rules read, as of one instant (`now`).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub auction: Auction,
    pub last_sequence: i64,
    pub trail_hash: Vec<u8>,
    /// The server time of every attempt of the batch.
    pub now: DateTime<Utc>,
    /// The batch's bidders with an account: the merchant their account belongs to, if any.
    pub accounts: HashMap<BuyerId, Option<MerchantId>>,
    /// Per bidder: attempts counted by the velocity limit in the window, and the oldest's time.
    pub recent: HashMap<BuyerId, (u32, DateTime<Utc>)>,
    /// Earlier attempts found by the batch's idempotency keys, by (bidder, key).
    pub earlier: HashMap<(BuyerId, String), Placed>,
}

impl Snapshot {
    /// A scheduled auction past its start whose start job has not run: the
    /// batch must start it (under the lock) before judging.
    pub fn start_due(&self) -> bool {
        let a = &self.auction;
        a.status == AuctionStatus::Scheduled && self.now >= a.starts_at && self.now < a.ends_at
    }
}

/// An attempt judged, before it is stored.
#[derive(Debug, Clone)]
pub struct Judged {
    pub fields: AttemptFields,
    pub id: BidId,
    pub hash: [u8; 32],
    pub outcome: std::result::Result<bool, Refusal>,
    pub current_price: i64,
    pub min_next_bid: i64,
    pub ends_at: DateTime<Utc>,
    pub retry_after: Option<u64>,
}

impl Judged {
    pub fn placed(&self, created_at: DateTime<Utc>, replayed: bool) -> Placed {
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

/// What a batch leaves behind: the attempts to store, the auction's new
/// state, its events and feed entries, and one answer per attempt.
#[derive(Debug)]
pub struct Judgement {
    /// The attempts to store, in sequence order.
    pub judged: Vec<Judged>,
    /// One per attempt given; `None` where the answer is the stored attempt
    /// `judged[slots[i]]` (filled by [`Judgement::answers`]).
    answers: Vec<Option<Result<Placed>>>,
    slots: Vec<usize>,
    pub book: Book,
    pub last_sequence: u64,
    pub trail_hash: [u8; 32],
    pub ends_at: DateTime<Utc>,
    pub extensions: i32,
    pub outbid: Vec<BidOutbid>,
    pub extended: Vec<AuctionExtended>,
    pub feed: Vec<Entry>,
    /// Some attempt found the auction active past its end.
    pub close_due: bool,
}

impl Judgement {
    /// The answers, in the order the attempts were given.
    pub fn answers(self, now: DateTime<Utc>) -> Vec<Result<Placed>> {
        let Self { mut answers, slots, judged, .. } = self;
        for (slot, j) in slots.into_iter().zip(&judged) {
            answers[slot] = Some(Ok(j.placed(now, false)));
        }
        answers.into_iter().map(|a| a.unwrap_or_else(|| Err(Error::Internal("bid lost".into())))).collect()
    }
}

/// Judges `attempts` in the order given, each against the state the previous
/// one left (PRODUCT.md's price rule, the velocity limit, the seller check,
/// the auction's window and soft close), chaining each stored attempt's hash.
pub fn judge(snapshot: &Snapshot, attempts: &[Attempt], limits: Limits) -> Judgement {
    let auction = &snapshot.auction;
    let now = snapshot.now;
    let mut recent = snapshot.recent.clone();
    let mut earlier: HashMap<(BuyerId, String), Placed> = HashMap::new();
    let mut book = auction.book;
    let mut sequence = u64::try_from(snapshot.last_sequence).unwrap_or_default();
    let mut previous: [u8; 32] = snapshot.trail_hash.as_slice().try_into().unwrap_or(trail::GENESIS);
    let (mut ends_at, mut extensions) = (auction.ends_at, auction.extensions);
    let mut j = Judgement {
        judged: Vec::with_capacity(attempts.len()),
        answers: Vec::with_capacity(attempts.len()),
        slots: Vec::with_capacity(attempts.len()),
        book,
        last_sequence: sequence,
        trail_hash: previous,
        ends_at,
        extensions,
        outbid: Vec::new(),
        extended: Vec::new(),
        feed: Vec::new(),
        close_due: false,
    };

    for attempt in attempts {
        let Some(owner) = snapshot.accounts.get(&attempt.bidder) else {
            j.answers.push(Some(Err(Error::UnknownBuyer)));
            continue;
        };
        if let Some(key) = &attempt.idempotency_key {
            let found = (attempt.bidder, key.clone());
            if let Some(placed) = snapshot.earlier.get(&found).or_else(|| earlier.get(&found)) {
                j.answers.push(Some(Ok(placed.clone())));
                continue;
            }
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
                    j.close_due = true;
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
                j.outbid.push(BidOutbid {
                    auction_id: auction.id,
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
            j.feed.push(Entry::from(&AuctionFeed::Bid {
                sequence,
                current_price,
                min_next_bid,
                leader: book.leader().map(|l| l.bidder.masked()),
                bid_count: book.bid_count(),
                ends_at,
            }));
            if extends {
                j.extended.push(AuctionExtended { auction_id: auction.id, ends_at, extensions });
                j.feed.push(Entry::from(&AuctionFeed::Extended { ends_at, extensions }));
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
        let judged =
            Judged { fields, id: BidId::new(), hash, outcome, current_price, min_next_bid, ends_at, retry_after };
        if let (Some(key), false) = (&attempt.idempotency_key, outcome == Err(Refusal::RateLimited)) {
            earlier.insert((attempt.bidder, key.clone()), judged.placed(now, true));
        }
        j.slots.push(j.answers.len());
        j.answers.push(None);
        j.judged.push(judged);
    }
    j.book = book;
    j.last_sequence = sequence;
    j.trail_hash = previous;
    j.ends_at = ends_at;
    j.extensions = extensions;
    j
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;
    use crate::auctions::increments::IncrementTable;
    use crate::ids::{AuctionId, ProductId};
    use crate::money::Currency;

    fn snapshot(bidders: &[BuyerId], now: DateTime<Utc>, ends_in: i64) -> Snapshot {
        let auction = Auction {
            id: AuctionId::new(),
            merchant_id: MerchantId::new(),
            product_id: ProductId::new(),
            status: AuctionStatus::Active,
            currency: "usd".parse::<Currency>().expect("usd is supported"),
            book: Book::new(1_000, None).expect("a valid book"),
            starts_at: now - Duration::minutes(5),
            ends_at: now + Duration::seconds(ends_in),
            soft_close_seconds: 60,
            extension_seconds: 30,
            max_extensions: 1,
            extensions: 0,
            payment_window_seconds: 3600,
            increments: IncrementTable::default(),
            version: 3,
            created_at: now - Duration::minutes(10),
            ended_at: None,
        };
        Snapshot {
            auction,
            last_sequence: 7,
            trail_hash: trail::GENESIS.to_vec(),
            now,
            accounts: bidders.iter().map(|b| (*b, None)).collect(),
            recent: HashMap::new(),
            earlier: HashMap::new(),
        }
    }

    fn attempt(bidder: BuyerId, amount: i64, key: Option<&str>) -> Attempt {
        Attempt { bidder, amount, max_amount: None, currency: None, idempotency_key: key.map(str::to_owned) }
    }

    #[test]
    fn a_batch_is_judged_in_order_and_chained_from_the_head() {
        let (a, b) = (BuyerId::new(), BuyerId::new());
        let snap = snapshot(&[a, b], Utc::now(), 3600);
        let j = judge(
            &snap,
            &[attempt(a, 1_000, None), attempt(b, 1_000, None), attempt(b, 1_100, None)],
            Limits { bids_per_minute: 10 },
        );
        let seqs: Vec<u64> = j.judged.iter().map(|x| x.fields.sequence).collect();
        assert_eq!(seqs, [8, 9, 10], "sequences continue from the head without gaps");
        assert_eq!(j.judged[1].outcome, Err(Refusal::BidTooLow), "the second is judged after the first");
        assert_eq!(j.judged[2].outcome, Ok(true));
        assert_eq!(j.outbid.len(), 1, "a lost the lead once");
        assert_eq!(j.outbid[0].buyer_id, a);
        assert_eq!(j.feed.len(), 2, "one feed entry per accepted bid");
        let mut previous = trail::GENESIS;
        for x in &j.judged {
            previous = trail::attempt_hash(&previous, &x.fields);
            assert_eq!(previous, x.hash);
        }
        assert_eq!(j.trail_hash, previous, "the new head is the last link");
        assert_eq!(j.last_sequence, 10);
    }

    #[test]
    fn a_key_repeated_inside_one_batch_answers_the_first_attempt() {
        let a = BuyerId::new();
        let snap = snapshot(&[a], Utc::now(), 3600);
        let j =
            judge(&snap, &[attempt(a, 1_000, Some("k")), attempt(a, 5_000, Some("k"))], Limits { bids_per_minute: 10 });
        assert_eq!(j.judged.len(), 1, "the repeat is not stored");
        let now = snap.now;
        let answers = j.answers(now);
        let (first, second) = (answers[0].as_ref().expect("stored"), answers[1].as_ref().expect("replayed"));
        assert_eq!(first.id, second.id);
        assert!(second.replayed && !first.replayed);
    }

    #[test]
    fn unknown_bidders_store_nothing_and_the_velocity_limit_counts_the_batch() {
        let (a, stranger) = (BuyerId::new(), BuyerId::new());
        let snap = snapshot(&[a], Utc::now(), 3600);
        let attempts: Vec<Attempt> = [attempt(stranger, 1_000, None)]
            .into_iter()
            .chain((0..3).map(|i| attempt(a, 1_000 + i * 500, None)))
            .collect();
        let j = judge(&snap, &attempts, Limits { bids_per_minute: 2 });
        assert_eq!(j.judged.len(), 3);
        assert_eq!(j.judged[2].outcome, Err(Refusal::RateLimited));
        assert!(j.judged[2].retry_after.is_some());
        let answers = j.answers(snap.now);
        assert!(matches!(answers[0], Err(Error::UnknownBuyer)));
    }

    #[test]
    fn a_bid_in_the_soft_close_extends_once_and_a_bid_past_the_end_asks_for_the_close() {
        let (a, b) = (BuyerId::new(), BuyerId::new());
        let snap = snapshot(&[a, b], Utc::now(), 10);
        let j = judge(&snap, &[attempt(a, 1_000, None), attempt(b, 2_000, None)], Limits { bids_per_minute: 10 });
        assert_eq!(j.extended.len(), 1, "max_extensions is 1");
        assert_eq!(j.ends_at, snap.auction.ends_at + Duration::seconds(30));
        assert!(!j.close_due);

        let past = snapshot(&[a], Utc::now(), -1);
        let j = judge(&past, &[attempt(a, 1_000, None)], Limits { bids_per_minute: 10 });
        assert_eq!(j.judged[0].outcome, Err(Refusal::AuctionClosed));
        assert!(j.close_due);
    }
}
