//! An auction's life as durable jobs: it opens at `starts_at` and closes at
//! its current `ends_at` exactly once, however many workers run and however
//! late a job is.
//!
//! As for sales, exactly once comes from the guard, not from the queue: each
//! job re-reads the auction under a row lock and changes it only if the
//! auction is still in the state it was queued for (the start: `scheduled` at
//! its version; the end: not closed, with the end instant it was queued for,
//! since soft close moves the end and queues a new End job). The change and
//! its event commit together. What the close creates (the winner's order,
//! its reminders and lapse) is [`crate::auction_close`]'s.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gavel_domain::auctions::{self, Auction, AuctionStatus, AuctionTerms, RawAuctionTerms};
use gavel_domain::ids::{AuctionId, MerchantId, ProductId};
use gavel_domain::jobs::{self, AuctionJob, queues};
use gavel_domain::{Error, Result, products};
use sqlx::{PgConnection, PgPool};

use crate::auction_close::{self, Lapse, PaymentReminders};

/// Creates an auction and schedules its start and end, in one transaction.
pub async fn create_auction(
    pool: &PgPool,
    merchant: MerchantId,
    product: ProductId,
    raw: RawAuctionTerms,
) -> Result<Auction> {
    let mut tx = pool.begin().await?;
    let auction = create_auction_in(&mut tx, merchant, product, raw).await?;
    tx.commit().await?;
    Ok(auction)
}

/// [`create_auction`] inside the caller's transaction (the API's idempotency
/// layer stores the answer in it).
pub async fn create_auction_in(
    tx: &mut PgConnection,
    merchant: MerchantId,
    product: ProductId,
    raw: RawAuctionTerms,
) -> Result<Auction> {
    let terms = AuctionTerms::parse(raw, Utc::now())?;
    if products::get(&mut *tx, merchant, product).await?.is_none() {
        return Err(gavel_domain::Invalid::new("product_id", "no such product").into());
    }
    let auction = auctions::insert(&mut *tx, merchant, product, &terms).await?;
    let (id, v) = (auction.id, auction.version);
    let start = AuctionJob::Start { auction_id: id, version: v };
    jobs::enqueue(&mut *tx, queues::AUCTION_LIFECYCLE, &start, auction.starts_at, &format!("start:{id}:v{v}")).await?;
    schedule_end(tx, &auction).await?;
    Ok(auction)
}

/// Queues the End job for the auction's current end (soft close calls this
/// again after moving the end).
pub async fn schedule_end(conn: &mut PgConnection, auction: &Auction) -> Result<()> {
    let (id, at) = (auction.id, auction.ends_at);
    let end = AuctionJob::End { auction_id: id, ends_at: at };
    let key = format!("end:{id}:{}", at.timestamp_micros());
    jobs::enqueue(conn, queues::AUCTION_LIFECYCLE, &end, at, &key).await?;
    crate::reminders::schedule_auction_ending(conn, auction).await?;
    Ok(())
}

/// Cancels a scheduled or active auction. Cancelling a cancelled auction
/// returns it unchanged; an ended auction cannot be cancelled.
pub async fn cancel_auction(pool: &PgPool, merchant: MerchantId, id: AuctionId) -> Result<Auction> {
    let mut tx = pool.begin().await?;
    let auction = auctions::lock_own(&mut tx, merchant, id).await?;
    match auction.status {
        AuctionStatus::Cancelled => return Ok(auction),
        AuctionStatus::Ended => return Err(Error::AuctionLocked { status: auction.status.as_str() }),
        AuctionStatus::Scheduled | AuctionStatus::Active => {}
    }
    let closed = auction_close::close_cancelled(&mut tx, &auction)
        .await?
        .ok_or(Error::VersionMismatch { expected: auction.version, current: auction.version + 1 })?;
    tx.commit().await?;
    Ok(closed)
}

/// Runs one job of the auction-lifecycle queue.
pub async fn run(pool: &PgPool, reminders: &PaymentReminders, job: AuctionJob) -> Result<()> {
    match job {
        AuctionJob::Start { auction_id, version } => start(pool, reminders, auction_id, version).await,
        AuctionJob::End { auction_id, ends_at } => end(pool, reminders, auction_id, ends_at).await,
        AuctionJob::Remind { order_id, lead_seconds, .. } => auction_close::remind(pool, order_id, lead_seconds).await,
        AuctionJob::EndingSoon { auction_id, ends_at, lead_seconds } => {
            crate::reminders::auction_ending(pool, auction_id, ends_at, lead_seconds).await
        }
        AuctionJob::Lapse { order_id, .. } => {
            let mut found = auction_close::lapse(pool, order_id).await?;
            if let Lapse::NotYet { due_at } = found {
                // The queue may hand a job over up to a second early.
                wait_until(due_at).await;
                found = auction_close::lapse(pool, order_id).await?;
            }
            match found {
                Lapse::Lapsed | Lapse::Settled | Lapse::PaymentInFlight => Ok(()),
                // Far too early: the queue's retry brings it back.
                Lapse::NotYet { .. } => {
                    Err(Error::Internal(format!("order {order_id}: lapse job ran before its deadline")))
                }
            }
        }
    }
}

/// The queue may hand a job over up to a second early: wait out the remainder.
async fn wait_until(at: DateTime<Utc>) {
    if let Ok(early) = (at - Utc::now()).to_std() {
        tokio::time::sleep(early.min(Duration::from_secs(5))).await;
    }
}

async fn start(pool: &PgPool, reminders: &PaymentReminders, auction_id: AuctionId, version: i32) -> Result<()> {
    let Some(window) = auctions::window(pool, auction_id).await? else {
        return Ok(());
    };
    if window.version != version || window.status != AuctionStatus::Scheduled {
        return Ok(());
    }
    let starts_at = window.starts_at;
    wait_until(starts_at).await;
    let mut tx = pool.begin().await?;
    let Some(auction) = auctions::lock(&mut tx, auction_id).await? else {
        return Ok(());
    };
    if auction.version != version || auction.status != AuctionStatus::Scheduled {
        return Ok(());
    }
    if Utc::now() >= auction.ends_at {
        // A start that runs after the whole window has passed closes it.
        close_ended(&mut tx, &auction, reminders).await?;
    } else if auctions::start(&mut tx, auction_id, version).await?.is_some() {
        tracing::info!(%auction_id, late_ms = (Utc::now() - starts_at).num_milliseconds(), "auction started");
    }
    tx.commit().await?;
    Ok(())
}

async fn end(pool: &PgPool, reminders: &PaymentReminders, auction_id: AuctionId, ends_at: DateTime<Utc>) -> Result<()> {
    let Some(window) = auctions::window(pool, auction_id).await? else {
        return Ok(());
    };
    if window.ends_at != ends_at || window.status.is_final() {
        return Ok(());
    }
    wait_until(ends_at).await;
    match close_if_due(pool, reminders, auction_id).await? {
        Due::NotYet { ends_at: current } if current == ends_at => {
            // Not due yet: the queue's retry brings it back.
            Err(Error::Internal(format!("auction {auction_id}: end job ran before its end")))
        }
        // Closed now, closed before, or moved later (soft close: its own End
        // job is queued for the new end).
        _ => Ok(()),
    }
}

/// What [`close_if_due`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Closed by this call.
    Closed,
    /// Already closed (ended or cancelled), or never started and not due.
    Final,
    /// Still open until `ends_at`.
    NotYet { ends_at: DateTime<Utc> },
}

/// Closes the auction if its end has passed and it is still open: the End
/// job's work, also run by a bid that finds the auction past its end (as a
/// claim that finds a sale past its start starts it). Exactly once: the
/// auction row is locked and the close is a guarded transition. The winner's
/// order gets its reminders at `reminders`' lead times.
pub async fn close_if_due(pool: &PgPool, reminders: &PaymentReminders, auction_id: AuctionId) -> Result<Due> {
    let mut tx = pool.begin().await?;
    let Some(auction) = auctions::lock(&mut tx, auction_id).await? else {
        return Ok(Due::Final);
    };
    if auction.status.is_final() {
        return Ok(Due::Final);
    }
    if Utc::now() < auction.ends_at {
        return Ok(Due::NotYet { ends_at: auction.ends_at });
    }
    close_ended(&mut tx, &auction, reminders).await?;
    tx.commit().await?;
    Ok(Due::Closed)
}

async fn close_ended(conn: &mut PgConnection, auction: &Auction, reminders: &PaymentReminders) -> Result<()> {
    auction_close::close_ended(conn, auction, reminders).await?;
    Ok(())
}
