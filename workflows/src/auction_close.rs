//! An auction's close and what follows it: the winner's order with its
//! payment window, the reminders before the deadline, the lapse at it, and
//! the merchant's second-chance offer to the runner-up.
//!
//! Everything a close causes commits with the close, while the auction row
//! is locked: the order, the `auction.ended` and `auction.won` events, the
//! result row, the feed's `ended` entry and the reminder and lapse jobs. The
//! jobs act only if their guard still holds (the order unpaid; for the lapse,
//! its deadline passed), so a job run twice, late or by two workers changes
//! the order once.

use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use gavel_domain::auctions::results::{self, Outcome};
use gavel_domain::auctions::{self, Auction, AuctionStatus, Closing, trail};
use gavel_domain::events::{self, AuctionWon, DomainEvent, OrderCancelled, OrderLapsed, OrderPaymentDue};
use gavel_domain::feed::{self, AuctionFeed, AuctionResult, Entry, Topic};
use gavel_domain::ids::{AuctionId, BuyerId, MerchantId, OrderId};
use gavel_domain::jobs::{self, AuctionJob, queues};
use gavel_domain::money::Money;
use gavel_domain::orders::{self, AwaitingPayment, Order, OrderStatus, OrderSubject};
use gavel_domain::{Error, Result};
use sqlx::{PgConnection, PgPool};

/// How long before an auction order's deadline its buyer is reminded
/// (`auction_payments.reminder_lead_seconds`; default 12 h and 1 h).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentReminders {
    leads: Vec<StdDuration>,
}

impl PaymentReminders {
    pub fn new(leads: impl IntoIterator<Item = StdDuration>) -> Self {
        let mut leads: Vec<_> = leads.into_iter().filter(|l| !l.is_zero()).collect();
        leads.sort_unstable_by(|a, b| b.cmp(a));
        leads.dedup();
        Self { leads }
    }

    /// The reminders of an order due at `due_at` that are still ahead of
    /// `now`: `(lead in seconds, when)`. Those already past are skipped.
    pub fn ahead(&self, due_at: DateTime<Utc>, now: DateTime<Utc>) -> Vec<(i64, DateTime<Utc>)> {
        self.leads
            .iter()
            .filter_map(|lead| {
                let secs = i64::try_from(lead.as_secs()).ok()?;
                let at = due_at - Duration::seconds(secs);
                (at > now).then_some((secs, at))
            })
            .collect()
    }
}

impl Default for PaymentReminders {
    fn default() -> Self {
        Self::new([StdDuration::from_secs(12 * 3600), StdDuration::from_secs(3600)])
    }
}

/// Closes `auction` (locked by the caller, still open) as ended: decides the
/// winner (the leader, if the price reached the reserve), creates their order
/// and everything that goes with it, in the caller's transaction. `None` if the
/// auction had moved on from the state the caller read.
pub async fn close_ended(
    conn: &mut PgConnection,
    auction: &Auction,
    reminders: &PaymentReminders,
) -> Result<Option<Auction>> {
    let trail_hash = results::trail_head(&mut *conn, auction.id).await?;
    let winner = auction.leader().filter(|_| auction.book.reserve_met()).map(|l| l.bidder);
    let order = match winner {
        Some(buyer) => {
            let due_at = Utc::now() + Duration::seconds(i64::from(auction.payment_window_seconds));
            let new = AwaitingPayment {
                merchant: auction.merchant_id,
                buyer,
                auction: auction.id,
                amount: auction.current_price(),
                due_at,
            };
            Some(orders::insert_awaiting_payment(&mut *conn, &new).await?)
        }
        None => None,
    };
    let closing = Closing { winner, order: order.as_ref().map(|o| o.id), trail_hash: trail::to_hex(&trail_hash) };
    let Some(closed) = auctions::close(&mut *conn, auction, AuctionStatus::Ended, &closing).await? else {
        // The caller holds the row lock, so this is a bug; the order above
        // must not commit.
        return Err(Error::Internal(format!("auction {} moved under its lock", auction.id)));
    };
    let ended_at = closed.ended_at.unwrap_or_else(Utc::now);
    let outcome = Outcome {
        auction_id: closed.id,
        winner_buyer_id: winner,
        order_id: closing.order,
        final_price: closed.current_price().minor(),
        ended_at,
        trail_hash,
        second_chance_buyer_id: None,
        second_chance_order_id: None,
    };
    results::insert(&mut *conn, &outcome).await?;
    if let Some(order) = &order {
        award(&mut *conn, order, false, reminders).await?;
    }
    let result = AuctionResult {
        winner: winner.map(|w| w.masked()),
        final_price: outcome.final_price,
        order_id: outcome.order_id,
        ended_at,
        trail_hash: closing.trail_hash,
    };
    feed::append(&mut *conn, Topic::Auction(closed.id), &[Entry::from(&AuctionFeed::Ended { result })]).await?;
    tracing::info!(auction_id = %closed.id, winner = ?winner, order = ?outcome.order_id, "auction ended");
    Ok(Some(closed))
}

/// Closes `auction` (locked by the caller) as cancelled: its event and the
/// feed's `cancelled`; no order.
pub async fn close_cancelled(conn: &mut PgConnection, auction: &Auction) -> Result<Option<Auction>> {
    let trail_hash = results::trail_head(&mut *conn, auction.id).await?;
    let closing = Closing { trail_hash: trail::to_hex(&trail_hash), ..Closing::default() };
    let Some(closed) = auctions::close(&mut *conn, auction, AuctionStatus::Cancelled, &closing).await? else {
        return Ok(None);
    };
    feed::append(&mut *conn, Topic::Auction(closed.id), &[Entry::from(&AuctionFeed::Cancelled {})]).await?;
    Ok(Some(closed))
}

/// `auction.won` for `order`, and its reminder and lapse jobs.
async fn award(
    conn: &mut PgConnection,
    order: &Order,
    second_chance: bool,
    reminders: &PaymentReminders,
) -> Result<()> {
    let (auction_id, due_at) = auction_order(order)?;
    let won = AuctionWon {
        auction_id,
        order_id: order.id,
        buyer_id: order.buyer_id,
        price: order.amount,
        payment_due_at: due_at,
        second_chance,
    };
    events::record(&mut *conn, order.merchant_id, &DomainEvent::AuctionWon(won)).await?;
    let order_id = order.id;
    for (lead_seconds, at) in reminders.ahead(due_at, Utc::now()) {
        let job = AuctionJob::Remind { auction_id, order_id, lead_seconds };
        jobs::enqueue(&mut *conn, queues::AUCTION_LIFECYCLE, &job, at, &format!("remind:{order_id}:{lead_seconds}"))
            .await?;
    }
    let lapse = AuctionJob::Lapse { auction_id, order_id };
    jobs::enqueue(&mut *conn, queues::AUCTION_LIFECYCLE, &lapse, due_at, &format!("lapse:{order_id}")).await?;
    Ok(())
}

/// An auction order's auction and deadline.
fn auction_order(order: &Order) -> Result<(AuctionId, DateTime<Utc>)> {
    match (order.subject, order.payment_due_at) {
        (OrderSubject::Auction { auction }, Some(due_at)) => Ok((auction, due_at)),
        _ => Err(Error::Internal(format!("order {} is not an auction's order with a deadline", order.id))),
    }
}

/// The reminder `lead_seconds` before the order's deadline: `order.payment_due`
/// if it is still unpaid (its dedupe key makes a repeated job report once).
pub async fn remind(pool: &PgPool, order_id: OrderId, lead_seconds: i64) -> Result<()> {
    let mut tx = pool.begin().await?;
    let Some(order) = orders::lock(&mut tx, order_id).await? else {
        return Ok(());
    };
    if !order.status.is_unpaid() {
        return Ok(());
    }
    let (auction_id, payment_due_at) = auction_order(&order)?;
    let due = OrderPaymentDue {
        order_id,
        auction_id,
        buyer_id: order.buyer_id,
        amount: order.amount,
        payment_due_at,
        lead_seconds,
    };
    events::record(&mut tx, order.merchant_id, &DomainEvent::OrderPaymentDue(due)).await?;
    tx.commit().await?;
    Ok(())
}

/// How long a lapse that finds a payment settling waits before it looks again.
const LAPSE_RECHECK_SECONDS: i64 = 30;

/// What [`lapse`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lapse {
    /// The order lapsed now.
    Lapsed,
    /// Paid, refunded, or lapsed before: nothing to do.
    Settled,
    /// Its deadline is ahead.
    NotYet { due_at: DateTime<Utc> },
    /// A payment started before the deadline is being settled; another
    /// lapse job is queued to look again.
    PaymentInFlight,
}

/// At the deadline: an unpaid order becomes `lapsed` with `order.lapsed`,
/// exactly once (a guarded transition under the order's lock).
pub async fn lapse(pool: &PgPool, order_id: OrderId) -> Result<Lapse> {
    let mut tx = pool.begin().await?;
    let Some(order) = orders::lock(&mut tx, order_id).await? else {
        return Ok(Lapse::Settled);
    };
    if order.status == OrderStatus::PendingVerification {
        // A payment begun before the deadline is settling: look again later
        // (paid: nothing to do; failed: it lapses then).
        let (auction_id, _) = auction_order(&order)?;
        let again = Utc::now() + Duration::seconds(LAPSE_RECHECK_SECONDS);
        let key = format!("lapse:{order_id}:recheck:{}", again.timestamp_micros());
        jobs::enqueue(&mut tx, queues::AUCTION_LIFECYCLE, &AuctionJob::Lapse { auction_id, order_id }, again, &key)
            .await?;
        tx.commit().await?;
        return Ok(Lapse::PaymentInFlight);
    }
    if !order.status.is_unpaid() {
        return Ok(Lapse::Settled);
    }
    let (auction_id, payment_due_at) = auction_order(&order)?;
    if Utc::now() < payment_due_at {
        return Ok(Lapse::NotYet { due_at: payment_due_at });
    }
    let lapsed = orders::transition(&mut tx, order_id, order.status, OrderStatus::Lapsed)
        .await?
        .ok_or_else(|| Error::Internal(format!("order {order_id} moved under its lock")))?;
    let event = OrderLapsed { order_id, auction_id, buyer_id: lapsed.buyer_id, amount: lapsed.amount, payment_due_at };
    events::record(&mut tx, lapsed.merchant_id, &DomainEvent::OrderLapsed(event)).await?;
    tx.commit().await?;
    tracing::info!(%order_id, %auction_id, "auction order lapsed");
    Ok(Lapse::Lapsed)
}

/// A merchant cancels an auction's order that is unpaid with no payment in
/// flight (`awaiting_payment` or `payment_failed`): it becomes `cancelled`,
/// with `order.cancelled`, in one transaction under the order's lock; its
/// reminder and lapse jobs then find it settled and do nothing, and the lot
/// may be offered to the runner-up ([`second_chance`]). Cancelling a
/// cancelled order answers it again (a retry is safe); another merchant's
/// order is not found. The caller commits `conn`'s transaction.
pub async fn cancel(conn: &mut PgConnection, merchant: MerchantId, order_id: OrderId) -> Result<Order> {
    let order = match orders::lock(&mut *conn, order_id).await? {
        Some(order) if order.merchant_id == merchant => order,
        _ => return Err(Error::NotFound("order")),
    };
    let OrderSubject::Auction { auction: auction_id } = order.subject else {
        return Err(Error::OrderNotCancellable {
            status: order.status.as_str(),
            reason: "only an auction's order can be cancelled (a sale's order is paid at its checkout)",
        });
    };
    match order.status {
        OrderStatus::Cancelled => return Ok(order),
        OrderStatus::AwaitingPayment | OrderStatus::PaymentFailed => {}
        OrderStatus::PendingVerification => {
            return Err(Error::OrderNotCancellable {
                status: order.status.as_str(),
                reason: "a payment is in flight; fetch the order again once it settles",
            });
        }
        OrderStatus::Paid | OrderStatus::Refunded | OrderStatus::Lapsed => {
            return Err(Error::OrderNotCancellable { status: order.status.as_str(), reason: "it is settled" });
        }
    }
    let cancelled = orders::transition(&mut *conn, order_id, order.status, OrderStatus::Cancelled)
        .await?
        .ok_or_else(|| Error::Internal(format!("order {order_id} moved under its lock")))?;
    let event = OrderCancelled { order_id, auction_id, buyer_id: cancelled.buyer_id, amount: cancelled.amount };
    events::record(&mut *conn, cancelled.merchant_id, &DomainEvent::OrderCancelled(event)).await?;
    tracing::info!(%order_id, %auction_id, "auction order cancelled by its merchant");
    Ok(cancelled)
}

/// The runner-up's order, made by [`second_chance`].
#[derive(Debug, Clone)]
pub struct SecondChance {
    pub order: Order,
    /// False when the offer had been made before (this is that order).
    pub created: bool,
}

/// Offers the lot to the runner-up once the winner's order has lapsed (or
/// its merchant cancelled it): a new
/// order at the runner-up's highest maximum, with its own window, reminders
/// and lapse. Made once per auction; asked again, it answers the same order.
pub async fn second_chance(
    conn: &mut PgConnection,
    merchant: MerchantId,
    auction_id: AuctionId,
    reminders: &PaymentReminders,
) -> Result<SecondChance> {
    let auction = auctions::lock_own(&mut *conn, merchant, auction_id).await?;
    if auction.status != AuctionStatus::Ended {
        return Err(Error::SecondChanceUnavailable { reason: "the auction has not ended" });
    }
    let outcome = results::lock(&mut *conn, auction_id)
        .await?
        .ok_or_else(|| Error::Internal(format!("auction {auction_id} ended without a result")))?;
    if let Some(existing) = outcome.second_chance_order_id {
        let order = orders::by_id(&mut *conn, existing)
            .await?
            .ok_or_else(|| Error::Internal(format!("second-chance order {existing} is missing")))?;
        return Ok(SecondChance { order, created: false });
    }
    let (Some(winner), Some(winners_order)) = (outcome.winner_buyer_id, outcome.order_id) else {
        return Err(Error::SecondChanceUnavailable { reason: "the auction has no winner" });
    };
    let status = orders::by_id(&mut *conn, winners_order).await?.map(|o| o.status);
    if !matches!(status, Some(OrderStatus::Lapsed | OrderStatus::Cancelled)) {
        return Err(Error::SecondChanceUnavailable {
            reason: "the winner's order has neither lapsed nor been cancelled",
        });
    }
    let Some((buyer, max)) = results::runner_up(&mut *conn, auction_id, winner).await? else {
        return Err(Error::NoRunnerUp);
    };
    let order = offer(&mut *conn, &auction, buyer, Money::new(max, auction.currency), reminders).await?;
    if !results::set_second_chance(&mut *conn, auction_id, buyer, order.id).await? {
        return Err(Error::Internal(format!("auction {auction_id}: second chance recorded under its lock")));
    }
    Ok(SecondChance { order, created: true })
}

async fn offer(
    conn: &mut PgConnection,
    auction: &Auction,
    buyer: BuyerId,
    amount: Money,
    reminders: &PaymentReminders,
) -> Result<Order> {
    let due_at = Utc::now() + Duration::seconds(i64::from(auction.payment_window_seconds));
    let new = AwaitingPayment { merchant: auction.merchant_id, buyer, auction: auction.id, amount, due_at };
    let order = orders::insert_awaiting_payment(&mut *conn, &new).await?;
    award(conn, &order, true, reminders).await?;
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reminders_already_past_are_skipped_and_the_rest_come_earliest_first() {
        let now = Utc::now();
        let due = now + Duration::hours(24);
        let ahead = PaymentReminders::default().ahead(due, now);
        assert_eq!(ahead, vec![(43_200, due - Duration::hours(12)), (3_600, due - Duration::hours(1))]);
        let soon = now + Duration::minutes(30);
        assert_eq!(PaymentReminders::default().ahead(soon, now), vec![], "both leads are longer than the window");
        let custom = PaymentReminders::new([StdDuration::from_secs(60), StdDuration::ZERO, StdDuration::from_secs(60)]);
        assert_eq!(custom.ahead(soon, now), vec![(60, soon - Duration::seconds(60))]);
    }
}
