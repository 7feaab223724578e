//! The bidding state of one auction and the judge of one attempt: PRODUCT.md,
//! "The price rule, exactly", as code.
//!
//! [`Book::judge`] is pure: it takes the state and an attempt and returns the
//! next state with the decision, so that replaying the accepted attempts of the
//! trail in `sequence` order rebuilds the state exactly. What it does not judge
//! lives with the caller, before the attempt gets here: the clock (`auction_closed`,
//! `auction_not_started`, soft close extensions) belongs to the auction's
//! lifecycle with its `starts_at`/`ends_at`, and the seller check (a merchant may
//! not bid on its own auction) to the bid's repository function, which knows
//! both the auction's merchant and the bidder.
//!
//! Where the rule's text leaves a choice, this is the one taken:
//! - every accepted bid, the leader's own included, carries an `amount` of at
//!   least `min_next_bid` and a maximum of at least its amount (PRODUCT.md: "a bid
//!   is accepted only if it beats the current price by the increment");
//! - a leader's own bid must also raise their maximum; the price then does not
//!   move, except that the reserve clause still applies: a raise that brings the
//!   leading maximum to the reserve lifts the price to the reserve;
//! - an amount or maximum out of range is `amount_out_of_range` before anything
//!   else is judged;
//! - `bid_count` counts every accepted attempt (an outbid-at-once challenger and
//!   a leader's raise included), never the rejected ones nor the proxy's moves.

use serde::Serialize;

use super::increments::IncrementTable;
use super::{AMOUNT_MAX, AMOUNT_MIN};
use crate::Invalid;
use crate::ids::BuyerId;

/// Who leads, up to which maximum, and since which attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leader {
    pub bidder: BuyerId,
    /// The most Gavel bids for them (never shown to others).
    pub max: i64,
    /// The sequence of the attempt that made them leader (a later raise of
    /// their own maximum keeps it).
    pub since: u64,
}

/// One attempt as the price rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bid {
    pub bidder: BuyerId,
    pub amount: i64,
    /// Defaults to `amount`.
    pub max_amount: Option<i64>,
}

impl Bid {
    pub fn new(bidder: BuyerId, amount: i64, max_amount: Option<i64>) -> Self {
        Self { bidder, amount, max_amount }
    }

    /// The maximum, defaulted to the amount.
    pub fn max(&self) -> i64 {
        self.max_amount.unwrap_or(self.amount)
    }
}

/// Why the rule refuses an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// Below `min_next_bid`, a maximum below the amount, or a leader's bid
    /// that does not raise their maximum.
    BidTooLow,
    /// An amount or maximum outside `1..=99,999,999`.
    AmountOutOfRange,
}

impl Rejection {
    /// The problem+json `code` and the trail's `reason`.
    pub fn code(self) -> &'static str {
        match self {
            Self::BidTooLow => "bid_too_low",
            Self::AmountOutOfRange => "amount_out_of_range",
        }
    }
}

/// What the rule decided about one attempt; the prices are those after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accepted { leading: bool, current_price: i64, min_next_bid: i64 },
    Rejected { reason: Rejection, current_price: i64, min_next_bid: i64 },
}

impl Decision {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Self::Accepted { .. })
    }
}

/// The bidding state of one auction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Book {
    starting_price: i64,
    reserve: Option<i64>,
    current_price: i64,
    leader: Option<Leader>,
    bid_count: u32,
}

impl Book {
    /// A fresh auction's state: no bids, the price at the start. The starting
    /// price is an amount; a reserve, if any, is an amount not below it.
    pub fn new(starting_price: i64, reserve: Option<i64>) -> Result<Self, Invalid> {
        if !(AMOUNT_MIN..=AMOUNT_MAX).contains(&starting_price) {
            return Err(Invalid::new("starting_price", format!("must be from {AMOUNT_MIN} to {AMOUNT_MAX}")));
        }
        if let Some(reserve) = reserve {
            if reserve > AMOUNT_MAX {
                return Err(Invalid::new("reserve_price", format!("must be at most {AMOUNT_MAX}")));
            }
            if reserve < starting_price {
                return Err(Invalid::new("reserve_price", "must not be below the starting price"));
            }
        }
        Ok(Self { starting_price, reserve, current_price: starting_price, leader: None, bid_count: 0 })
    }

    /// The state as stored on the auction's row, checked against what
    /// [`Book::judge`] can produce: the price between the start and the
    /// leader's maximum, no leader only before the first bid.
    pub fn restore(
        starting_price: i64,
        reserve: Option<i64>,
        current_price: i64,
        leader: Option<Leader>,
        bid_count: u32,
    ) -> Result<Self, Invalid> {
        let fresh = Self::new(starting_price, reserve)?;
        let consistent = match leader {
            None => current_price == starting_price && bid_count == 0,
            Some(leader) => {
                (starting_price..=leader.max).contains(&current_price) && leader.max <= AMOUNT_MAX && bid_count > 0
            }
        };
        if !consistent {
            return Err(Invalid::new("current_price", "inconsistent with the leader and the bid count"));
        }
        Ok(Self { current_price, leader, bid_count, ..fresh })
    }

    pub fn starting_price(&self) -> i64 {
        self.starting_price
    }

    pub fn reserve(&self) -> Option<i64> {
        self.reserve
    }

    pub fn current_price(&self) -> i64 {
        self.current_price
    }

    pub fn leader(&self) -> Option<Leader> {
        self.leader
    }

    /// The accepted attempts so far (a challenger outbid at once by proxy and a
    /// leader's raise of their own maximum count too: each is an accepted bid).
    pub fn bid_count(&self) -> u32 {
        self.bid_count
    }

    /// The least amount the next bid may carry.
    pub fn min_next_bid(&self, table: &IncrementTable) -> i64 {
        match self.leader {
            None => self.starting_price,
            Some(_) => self.current_price + table.inc(self.current_price),
        }
    }

    /// Whether the price has reached the reserve (always, without a reserve).
    /// At the end, `false` means no winner.
    pub fn reserve_met(&self) -> bool {
        self.leader.is_some() && self.reserve.is_none_or(|reserve| self.current_price >= reserve)
    }

    /// Judges the attempt numbered `sequence` against this state, returning
    /// the state after it and the decision. A rejected attempt leaves the state
    /// as it was.
    pub fn judge(&self, table: &IncrementTable, sequence: u64, bid: Bid) -> (Book, Decision) {
        match self.apply(table, sequence, bid) {
            Ok((next, leading)) => {
                let decision = Decision::Accepted {
                    leading,
                    current_price: next.current_price,
                    min_next_bid: next.min_next_bid(table),
                };
                (next, decision)
            }
            Err(reason) => {
                let decision = Decision::Rejected {
                    reason,
                    current_price: self.current_price,
                    min_next_bid: self.min_next_bid(table),
                };
                (*self, decision)
            }
        }
    }

    fn apply(&self, table: &IncrementTable, sequence: u64, bid: Bid) -> Result<(Book, bool), Rejection> {
        let (amount, max) = (bid.amount, bid.max());
        let in_range = |v: i64| (AMOUNT_MIN..=AMOUNT_MAX).contains(&v);
        if !in_range(amount) || !in_range(max) {
            return Err(Rejection::AmountOutOfRange);
        }
        if amount < self.min_next_bid(table) || max < amount {
            return Err(Rejection::BidTooLow);
        }
        let (leader, price, leading) = match self.leader {
            None => (Leader { bidder: bid.bidder, max, since: sequence }, amount, true),
            Some(leader) if leader.bidder == bid.bidder => {
                if max <= leader.max {
                    return Err(Rejection::BidTooLow);
                }
                (Leader { max, ..leader }, self.current_price, true)
            }
            Some(leader) if max > leader.max => {
                let price = amount.max(max.min(leader.max + table.inc(leader.max)));
                (Leader { bidder: bid.bidder, max, since: sequence }, price, true)
            }
            Some(leader) => {
                let price = amount.max(leader.max.min(max + table.inc(max)));
                (leader, price, false)
            }
        };
        let price = match self.reserve {
            Some(reserve) if leader.max >= reserve => price.max(reserve),
            _ => price,
        };
        let next =
            Book { current_price: price, leader: Some(leader), bid_count: self.bid_count.saturating_add(1), ..*self };
        Ok((next, leading))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-worked run: bids numbered from 1, each judged against the state the previous left.
    struct Run {
        table: IncrementTable,
        book: Book,
        sequence: u64,
    }

    impl Run {
        fn new(starting_price: i64, reserve: Option<i64>) -> Self {
            let book = Book::new(starting_price, reserve).expect("valid terms");
            Self { table: IncrementTable::default(), book, sequence: 0 }
        }

        fn bid(&mut self, bidder: BuyerId, amount: i64, max: Option<i64>) -> Decision {
            self.sequence += 1;
            let (book, decision) = self.book.judge(&self.table, self.sequence, Bid::new(bidder, amount, max));
            self.book = book;
            decision
        }

        fn leader(&self) -> (BuyerId, i64) {
            let leader = self.book.leader().expect("a leader");
            (leader.bidder, leader.max)
        }
    }

    fn accepted(leading: bool, current_price: i64, min_next_bid: i64) -> Decision {
        Decision::Accepted { leading, current_price, min_next_bid }
    }

    fn rejected(reason: Rejection, current_price: i64, min_next_bid: i64) -> Decision {
        Decision::Rejected { reason, current_price, min_next_bid }
    }

    #[test]
    fn without_bids_the_next_bid_is_the_starting_price_and_the_first_leads_at_its_amount() {
        let mut run = Run::new(1_000, None);
        assert_eq!(run.book.min_next_bid(&run.table), 1_000);
        assert!(!run.book.reserve_met(), "no bid, no winner");
        let a = BuyerId::new();
        assert_eq!(run.bid(a, 999, None), rejected(Rejection::BidTooLow, 1_000, 1_000));
        // 1,000 is in the 500–2,499 band: +50.
        assert_eq!(run.bid(a, 1_000, Some(5_000)), accepted(true, 1_000, 1_050));
        assert_eq!(run.leader(), (a, 5_000));
        assert_eq!(run.book.leader().map(|l| l.since), Some(2));
        assert_eq!(run.book.bid_count(), 1);
        assert!(run.book.reserve_met());
    }

    #[test]
    fn a_smaller_challenger_is_outbid_at_once_one_increment_above_its_maximum() {
        let mut run = Run::new(1_000, None);
        let (a, b) = (BuyerId::new(), BuyerId::new());
        run.bid(a, 1_000, Some(5_000));
        // C = 1,050 ≤ L = 5,000: max(1,050, min(5,000, 1,050 + 50)) = 1,100.
        assert_eq!(run.bid(b, 1_050, None), accepted(false, 1_100, 1_150));
        assert_eq!(run.leader(), (a, 5_000));
        // The price never passes the leader's maximum: min(5,000, 4,990 + 100).
        assert_eq!(run.bid(b, 4_990, None), accepted(false, 5_000, 5_100));
        assert_eq!(run.book.bid_count(), 3);
    }

    #[test]
    fn a_larger_challenger_leads_one_increment_above_the_old_maximum() {
        let mut run = Run::new(1_000, None);
        let (a, c) = (BuyerId::new(), BuyerId::new());
        run.bid(a, 1_000, Some(5_000));
        // C = 8,000 > L = 5,000: max(1,050, min(8,000, 5,000 + 100)) = 5,100.
        assert_eq!(run.bid(c, 1_050, Some(8_000)), accepted(true, 5_100, 5_200));
        assert_eq!(run.leader(), (c, 8_000));
        assert_eq!(run.book.leader().map(|l| l.since), Some(2));
        // Capped by the challenger's maximum: min(5,150, 5,000 + 100) = 5,150.
        let mut run = Run::new(1_000, None);
        run.bid(a, 1_000, Some(5_000));
        assert_eq!(run.bid(c, 1_050, Some(5_050)), accepted(true, 5_050, 5_150));
        // The amount wins when above both: max(7,000, min(9,000, 5,100)).
        let mut run = Run::new(1_000, None);
        run.bid(a, 1_000, Some(5_000));
        assert_eq!(run.bid(c, 7_000, Some(9_000)), accepted(true, 7_000, 7_100));
    }

    #[test]
    fn equal_maxima_go_to_the_earlier_bid() {
        let mut run = Run::new(1_000, None);
        let (a, b) = (BuyerId::new(), BuyerId::new());
        run.bid(a, 1_000, Some(5_000));
        assert_eq!(run.bid(b, 4_000, Some(5_000)), accepted(false, 5_000, 5_100));
        assert_eq!(run.leader(), (a, 5_000));
    }

    #[test]
    fn the_leader_raising_their_own_maximum_moves_nothing_visible() {
        let mut run = Run::new(1_000, None);
        let a = BuyerId::new();
        run.bid(a, 1_000, Some(5_000));
        assert_eq!(run.bid(a, 1_050, Some(6_000)), accepted(true, 1_000, 1_050));
        assert_eq!(run.leader(), (a, 6_000));
        assert_eq!(run.book.leader().map(|l| l.since), Some(1), "still leader since the first attempt");
        // Not above their maximum: refused, nothing changes.
        let before = run.book;
        assert_eq!(run.bid(a, 1_050, Some(6_000)), rejected(Rejection::BidTooLow, 1_000, 1_050));
        assert_eq!(run.bid(a, 1_050, None), rejected(Rejection::BidTooLow, 1_000, 1_050));
        assert_eq!(run.book, before);
    }

    #[test]
    fn increments_follow_the_band_of_the_price_at_its_edges() {
        // 99 is in the first band (+5): the challenger leads at 104, then +25.
        let mut run = Run::new(50, None);
        let (a, b) = (BuyerId::new(), BuyerId::new());
        run.bid(a, 50, Some(99));
        assert_eq!(run.bid(b, 55, Some(200)), accepted(true, 104, 129));
        // 2,499 → +50; 2,500 → +100.
        let mut run = Run::new(2_499, None);
        assert_eq!(run.bid(a, 2_499, None), accepted(true, 2_499, 2_549));
        let mut run = Run::new(2_500, None);
        assert_eq!(run.bid(a, 2_500, None), accepted(true, 2_500, 2_600));
        // 499,999 → +5,000; 500,000 → +10,000.
        let mut run = Run::new(499_999, None);
        assert_eq!(run.bid(a, 499_999, None), accepted(true, 499_999, 504_999));
        assert_eq!(run.bid(b, 504_998, Some(600_000)), rejected(Rejection::BidTooLow, 499_999, 504_999));
        assert_eq!(run.bid(b, 504_999, Some(600_000)), accepted(true, 504_999, 514_999));
    }

    #[test]
    fn a_maximum_below_the_amount_is_too_low() {
        let mut run = Run::new(1_000, None);
        let a = BuyerId::new();
        assert_eq!(run.bid(a, 2_000, Some(1_999)), rejected(Rejection::BidTooLow, 1_000, 1_000));
        assert_eq!(run.book.leader(), None);
        assert_eq!(run.book.bid_count(), 0);
    }

    #[test]
    fn amounts_outside_one_to_99_999_999_are_out_of_range() {
        let mut run = Run::new(1, None);
        let a = BuyerId::new();
        for (amount, max) in [(0, None), (-5, None), (100_000_000, None), (1, Some(100_000_000)), (5, Some(-1))] {
            assert_eq!(run.bid(a, amount, max), rejected(Rejection::AmountOutOfRange, 1, 1), "{amount} {max:?}");
        }
        assert_eq!(run.bid(a, 1, Some(99_999_999)), accepted(true, 1, 6));
        assert_eq!(Rejection::AmountOutOfRange.code(), "amount_out_of_range");
        assert_eq!(Rejection::BidTooLow.code(), "bid_too_low");
    }

    #[test]
    fn the_price_rises_to_the_reserve_once_the_leading_maximum_reaches_it() {
        let (a, b) = (BuyerId::new(), BuyerId::new());
        // Not met: the price stays below, no winner.
        let mut run = Run::new(1_000, Some(3_000));
        assert_eq!(run.bid(a, 1_000, Some(2_000)), accepted(true, 1_000, 1_050));
        assert!(!run.book.reserve_met());
        // A challenger whose maximum reaches it: min(3,500, 2,050) = 2,050, lifted to 3,000.
        assert_eq!(run.bid(b, 1_050, Some(3_500)), accepted(true, 3_000, 3_100));
        assert!(run.book.reserve_met());
        // A first bid whose maximum reaches it.
        let mut run = Run::new(1_000, Some(3_000));
        assert_eq!(run.bid(a, 1_000, Some(4_000)), accepted(true, 3_000, 3_100));
        // The leader raising their own maximum to the reserve: the reserve clause lifts the price.
        let mut run = Run::new(1_000, Some(3_000));
        run.bid(a, 1_000, Some(2_000));
        assert_eq!(run.bid(a, 1_050, Some(3_000)), accepted(true, 3_000, 3_100));
        assert!(run.book.reserve_met());
        // A challenger below the leader whose maximum reaches the reserve.
        let mut run = Run::new(1_000, Some(3_000));
        run.bid(a, 1_000, Some(5_000));
        assert_eq!(run.book.current_price(), 3_000);
        assert_eq!(run.bid(b, 3_100, None), accepted(false, 3_200, 3_300));
    }

    #[test]
    fn terms_are_checked() {
        assert_eq!(Book::new(0, None).map_err(|e| e.field), Err("starting_price"));
        assert_eq!(Book::new(100_000_000, None).map_err(|e| e.field), Err("starting_price"));
        assert_eq!(Book::new(1_000, Some(999)).map_err(|e| e.field), Err("reserve_price"));
        assert_eq!(Book::new(1_000, Some(100_000_000)).map_err(|e| e.field), Err("reserve_price"));
        assert!(Book::new(1_000, Some(1_000)).is_ok());
    }

    #[test]
    fn an_inconsistent_stored_state_is_refused() {
        let a = BuyerId::new();
        let leader = |max| Some(Leader { bidder: a, max, since: 1 });
        assert!(Book::restore(1_000, None, 1_000, None, 0).is_ok());
        assert!(Book::restore(1_000, None, 1_050, None, 0).is_err(), "a moved price without a leader");
        assert!(Book::restore(1_000, None, 1_000, None, 2).is_err(), "bids without a leader");
        assert!(Book::restore(1_000, None, 2_000, leader(1_500), 1).is_err(), "a price above the maximum");
        assert!(Book::restore(1_000, None, 900, leader(1_500), 1).is_err(), "a price below the start");
        assert!(Book::restore(1_000, None, 1_000, leader(1_500), 0).is_err(), "a leader without a bid");
        assert!(Book::restore(1_000, None, 1_200, leader(1_500), 3).is_ok());
    }
}
