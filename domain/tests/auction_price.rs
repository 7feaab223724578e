//! Property tests for the auction rules: whatever the bidders send, in any
//! order, the price rule keeps its promises (PRODUCT.md, "The price rule,
//! exactly") and the trail's hash chain detects any change to what was stored.

#![allow(clippy::expect_used)]

use gavel_domain::auctions::increments::IncrementTable;
use gavel_domain::auctions::price::{Bid, Book, Decision};
use gavel_domain::auctions::trail::{self, AttemptFields, AttemptStatus, StoredAttempt};
use gavel_domain::auctions::{AMOUNT_MAX, AMOUNT_MIN};
use gavel_domain::ids::BuyerId;
use proptest::prelude::*;
use uuid::Uuid;

/// A small pool of bidders, so that the same ones meet again (and lead again).
const BIDDERS: u128 = 4;

fn bidder(index: u128) -> BuyerId {
    BuyerId::from_uuid(Uuid::from_u128(index + 1))
}

/// One step of a run, relative to the state it meets, so that most attempts
/// land near `min_next_bid` rather than far below it.
#[derive(Debug, Clone)]
struct Step {
    bidder: u128,
    /// Whole increments above (or below) `min_next_bid`, plus a few minor units.
    steps: i64,
    noise: i64,
    max: MaxChoice,
}

#[derive(Debug, Clone)]
enum MaxChoice {
    /// No `max_amount`: it defaults to the amount.
    None,
    /// `amount` plus whole increments plus a few minor units (maybe below the amount).
    Above { steps: i64, noise: i64 },
    /// Exactly the leader's maximum (equal maxima).
    LeadersMax,
    /// An amount outside the range.
    OutOfRange(i64),
}

fn step() -> impl Strategy<Value = Step> {
    let max = prop_oneof![
        2 => Just(MaxChoice::None),
        5 => (-1i64..8, -2i64..3).prop_map(|(steps, noise)| MaxChoice::Above { steps, noise }),
        2 => Just(MaxChoice::LeadersMax),
        1 => prop_oneof![Just(0i64), Just(-1), Just(AMOUNT_MAX + 1), Just(i64::MAX)].prop_map(MaxChoice::OutOfRange),
    ];
    (0..BIDDERS, -1i64..4, -2i64..3, max).prop_map(|(bidder, steps, noise, max)| Step { bidder, steps, noise, max })
}

fn terms() -> impl Strategy<Value = (i64, Option<i64>)> {
    (
        prop_oneof![1i64..200, 90i64..110, 2_400i64..2_600, 1i64..1_000_000, AMOUNT_MAX - 50_000..=AMOUNT_MAX],
        0u8..3,
        0i64..50_000,
    )
        .prop_map(|(start, has_reserve, above)| {
            let reserve = (has_reserve == 0).then(|| (start + above).min(AMOUNT_MAX));
            (start, reserve)
        })
}

/// One judged attempt and the state after it.
struct Judged {
    sequence: u64,
    bid: Bid,
    min_next_before: i64,
    decision: Decision,
    after: Book,
}

fn run(start: i64, reserve: Option<i64>, steps: &[Step]) -> (Book, Vec<Judged>) {
    let table = IncrementTable::default();
    let mut book = Book::new(start, reserve).expect("valid terms");
    let mut judged = Vec::new();
    for (sequence, step) in (1u64..).zip(steps) {
        let min_next = book.min_next_bid(&table);
        let inc = table.inc(min_next);
        let amount = min_next + step.steps * inc + step.noise;
        let max_amount = match step.max {
            MaxChoice::None => None,
            MaxChoice::Above { steps, noise } => Some(amount + steps * inc + noise),
            MaxChoice::LeadersMax => Some(book.leader().map_or(amount, |leader| leader.max)),
            MaxChoice::OutOfRange(v) => Some(v),
        };
        let bid = Bid::new(bidder(step.bidder), amount, max_amount);
        let (after, decision) = book.judge(&table, sequence, bid);
        judged.push(Judged { sequence, bid, min_next_before: min_next, decision, after });
        book = after;
    }
    (book, judged)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_visible_price_never_exceeds_the_leaders_maximum_and_never_decreases(
        (start, reserve) in terms(),
        steps in prop::collection::vec(step(), 0..40),
    ) {
        let (_, judged) = run(start, reserve, &steps);
        let mut price = start;
        for j in &judged {
            let now = j.after.current_price();
            prop_assert!(now >= price, "seq {}: price fell from {} to {}", j.sequence, price, now);
            if let Some(leader) = j.after.leader() {
                prop_assert!(now <= leader.max, "seq {}: price {} above the leader's max {}", j.sequence, now, leader.max);
            }
            price = now;
        }
    }

    #[test]
    fn once_there_is_a_bid_the_next_must_beat_the_price(
        (start, reserve) in terms(),
        steps in prop::collection::vec(step(), 0..40),
    ) {
        let table = IncrementTable::default();
        let (_, judged) = run(start, reserve, &steps);
        for j in &judged {
            if j.after.leader().is_some() {
                prop_assert!(j.after.min_next_bid(&table) > j.after.current_price());
            }
            match j.decision {
                Decision::Accepted { current_price, min_next_bid, .. } => {
                    prop_assert!(j.bid.amount >= j.min_next_before, "accepted below min_next_bid");
                    prop_assert!((AMOUNT_MIN..=AMOUNT_MAX).contains(&j.bid.amount));
                    prop_assert!(j.bid.max() >= j.bid.amount);
                    prop_assert_eq!(current_price, j.after.current_price());
                    prop_assert_eq!(min_next_bid, j.after.min_next_bid(&table));
                }
                Decision::Rejected { .. } => {}
            }
        }
    }

    #[test]
    fn a_leaders_own_bid_moves_the_price_only_up_to_the_reserve(
        (start, reserve) in terms(),
        steps in prop::collection::vec(step(), 0..40),
    ) {
        let (_, judged) = run(start, reserve, &steps);
        let mut before = Book::new(start, reserve).expect("valid terms");
        for j in &judged {
            let own = before.leader().is_some_and(|leader| leader.bidder == j.bid.bidder);
            if own && j.decision.is_accepted() {
                let moved = j.after.current_price() != before.current_price();
                prop_assert!(!moved || Some(j.after.current_price()) == reserve, "seq {}: a raise moved the price", j.sequence);
                prop_assert!(j.after.leader().map(|l| l.max) > before.leader().map(|l| l.max));
            }
            before = j.after;
        }
    }

    #[test]
    fn any_state_the_rule_reaches_is_restored_from_its_parts(
        (start, reserve) in terms(),
        steps in prop::collection::vec(step(), 0..40),
    ) {
        let (last, _) = run(start, reserve, &steps);
        let restored = Book::restore(start, reserve, last.current_price(), last.leader(), last.bid_count());
        prop_assert_eq!(restored, Ok(last));
    }

    #[test]
    fn a_rejected_attempt_changes_nothing(
        (start, reserve) in terms(),
        steps in prop::collection::vec(step(), 0..40),
    ) {
        let (_, judged) = run(start, reserve, &steps);
        let mut before = Book::new(start, reserve).expect("valid terms");
        for j in &judged {
            if !j.decision.is_accepted() {
                prop_assert_eq!(j.after, before);
            }
            before = j.after;
        }
    }

    #[test]
    fn replaying_the_accepted_attempts_from_a_fresh_state_gives_the_same_final_state(
        (start, reserve) in terms(),
        steps in prop::collection::vec(step(), 0..40),
    ) {
        let table = IncrementTable::default();
        let (last, judged) = run(start, reserve, &steps);
        let mut replay = Book::new(start, reserve).expect("valid terms");
        for j in judged.iter().filter(|j| j.decision.is_accepted()) {
            let (next, decision) = replay.judge(&table, j.sequence, j.bid);
            prop_assert_eq!(decision, j.decision, "seq {} judged differently on replay", j.sequence);
            replay = next;
        }
        prop_assert_eq!(replay, last);
    }

    #[test]
    fn the_leader_holds_the_highest_maximum_and_is_the_earliest_on_ties(
        (start, reserve) in terms(),
        steps in prop::collection::vec(step(), 1..40),
    ) {
        let (last, judged) = run(start, reserve, &steps);
        let accepted: Vec<&Judged> = judged.iter().filter(|j| j.decision.is_accepted()).collect();
        let highest = accepted.iter().map(|j| j.bid.max()).max();
        let first_to_reach = accepted.iter().find(|j| Some(j.bid.max()) == highest);
        match (last.leader(), first_to_reach) {
            (None, None) => {}
            (Some(leader), Some(first)) => {
                prop_assert_eq!(Some(leader.max), highest);
                prop_assert_eq!(leader.bidder, first.bid.bidder);
            }
            (leader, first) => prop_assert!(false, "leader {:?} but first to the highest {:?}", leader, first.map(|j| j.sequence)),
        }
        prop_assert_eq!(last.bid_count() as usize, accepted.len());
    }
}

// ---------------------------------------------------------------- the trail

fn attempt_fields() -> impl Strategy<Value = Vec<AttemptFields>> {
    let one = (
        0..BIDDERS,
        any::<i64>(),
        any::<i64>(),
        any::<bool>(),
        prop::option::of(prop_oneof![Just("bid_too_low"), Just("auction_closed"), Just("amount_out_of_range")]),
        any::<i64>(),
        prop::option::of("[a-zA-Z0-9-]{0,12}"),
    );
    prop::collection::vec(one, 1..12).prop_map(|rows| {
        (1u64..)
            .zip(rows)
            .map(|(sequence, (who, amount, max_amount, accepted, reason, at, key))| AttemptFields {
                sequence,
                bidder: bidder(who),
                amount,
                max_amount,
                status: if accepted { AttemptStatus::Accepted } else { AttemptStatus::Rejected },
                reason: if accepted { None } else { reason.map(String::from) },
                created_at_micros: at,
                idempotency_key: key,
            })
            .collect()
    })
}

/// Changes one field (chosen by `which`) of one attempt, always to a different value.
fn tamper(attempt: &mut StoredAttempt, which: u8) {
    let f = &mut attempt.fields;
    match which % 9 {
        0 => f.sequence = f.sequence.wrapping_add(1),
        1 => f.bidder = if f.bidder == bidder(BIDDERS) { bidder(0) } else { bidder(BIDDERS) },
        2 => f.amount = f.amount.wrapping_add(1),
        3 => f.max_amount = f.max_amount.wrapping_sub(1),
        4 => {
            f.status = match f.status {
                AttemptStatus::Accepted => AttemptStatus::Rejected,
                AttemptStatus::Rejected => AttemptStatus::Accepted,
            }
        }
        5 => f.reason = if f.reason.is_some() { None } else { Some("bid_too_low".into()) },
        6 => f.created_at_micros = f.created_at_micros.wrapping_add(1),
        7 => f.idempotency_key = Some(format!("{}x", f.idempotency_key.as_deref().unwrap_or(""))),
        _ => attempt.hash[31] ^= 0x80,
    }
}

proptest! {
    #[test]
    fn the_trail_verifies_what_it_built(fields in attempt_fields()) {
        let trail = trail::build(fields);
        let last = trail.last().map(|a| a.hash).expect("at least one attempt");
        prop_assert_eq!(trail::verify(&trail), Ok(last));
    }

    #[test]
    fn any_single_changed_field_breaks_the_trail(fields in attempt_fields(), at in any::<prop::sample::Index>(), which in any::<u8>()) {
        let mut trail = trail::build(fields);
        let i = at.index(trail.len());
        tamper(&mut trail[i], which);
        let broken = trail::verify(&trail).expect_err("a changed attempt is found");
        prop_assert_eq!(broken.sequence, i as u64 + 1);
    }

    #[test]
    fn reordered_attempts_break_the_trail(
        fields in attempt_fields().prop_filter("two attempts to swap", |f| f.len() >= 2),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
        renumber in any::<bool>(),
    ) {
        let mut trail = trail::build(fields);
        let (i, j) = (a.index(trail.len()), b.index(trail.len()));
        prop_assume!(i != j);
        let same_but_for_sequence = AttemptFields { sequence: trail[j].fields.sequence, ..trail[i].fields.clone() };
        prop_assume!(same_but_for_sequence != trail[j].fields);
        trail.swap(i, j);
        if renumber {
            // Renumbered to hide the swap: the hashes still give it away.
            for (sequence, attempt) in (1u64..).zip(trail.iter_mut()) {
                attempt.fields.sequence = sequence;
            }
        }
        prop_assert!(trail::verify(&trail).is_err());
    }
}
