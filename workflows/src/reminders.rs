//! Reminders to buyers, as outbox events the notifier fans out: a hold that
//! ends in a minute (`claim.expiring`) and an auction that ends in five
//! minutes and in one (`auction.ending_soon`, to its bidders and watchers).
//!
//! Each is decided in the transaction of the change that causes it: the
//! grant of a hold queues its reminder job (`claims::schedule_sweep`, one job
//! per sale and expiry second), and an auction's creation or a soft-close
//! extension queues the reminders for its (new) end ([`schedule_auction_ending`],
//! from `auction_lifecycle::schedule_end`), so a change that rolls back
//! never reminds anyone. When the job runs it writes the events only if the
//! facts still hold (the claim still `held`; the auction still active and
//! still ending at the instant the job was queued for), under dedupe keys
//! that make a job run twice write nothing new.

use chrono::{DateTime, Duration, Utc};
use gavel_domain::events::{self, AuctionEndingSoon, ClaimExpiring, DomainEvent};
use gavel_domain::ids::{AuctionId, BuyerId, ClaimId, MerchantId, SaleId};
use gavel_domain::jobs::{self, AuctionJob, queues};
use gavel_domain::money::{Currency, Money};
use gavel_domain::{Error, Result, auctions::Auction};
use sqlx::{PgConnection, PgPool};

/// Before an auction's end, its bidders and watchers are reminded this many seconds ahead.
pub const AUCTION_REMINDER_LEADS: [i64; 2] = [300, 60];

/// Queues the ending-soon reminders for the auction's current end (those
/// still in the future), in the caller's transaction.
pub async fn schedule_auction_ending(conn: &mut PgConnection, auction: &Auction) -> Result<()> {
    let now = Utc::now();
    for lead in AUCTION_REMINDER_LEADS {
        let at = auction.ends_at - Duration::seconds(lead);
        if at <= now || at <= auction.starts_at {
            continue;
        }
        let job = AuctionJob::EndingSoon { auction_id: auction.id, ends_at: auction.ends_at, lead_seconds: lead };
        let key = format!("ending-soon:{}:{}:{lead}", auction.id, auction.ends_at.timestamp_micros());
        jobs::enqueue(&mut *conn, queues::AUCTION_LIFECYCLE, &job, at, &key).await?;
    }
    Ok(())
}

fn money(minor: i64, currency: &str) -> Result<Money> {
    let currency: Currency =
        currency.parse().map_err(|_| Error::Internal(format!("a stored currency Gavel does not know: {currency}")))?;
    Ok(Money::new(minor, currency))
}

/// `claim.expiring` for each hold of the sale ending in `expires_second`
/// that is still held.
pub async fn claims_expiring(pool: &PgPool, sale_id: SaleId, expires_second: i64) -> Result<()> {
    let from = DateTime::from_timestamp(expires_second, 0).unwrap_or_default();
    let until = from + Duration::seconds(1);
    let mut tx = pool.begin().await?;
    let held = sqlx::query!(
        r#"SELECT c.id AS "id: ClaimId", c.buyer_id AS "buyer_id: BuyerId", c.expires_at,
                  s.merchant_id AS "merchant_id: MerchantId", s.price, s.currency
           FROM claims c JOIN sales s ON s.id = c.sale_id
           WHERE c.sale_id = $1 AND c.status = 'held' AND c.expires_at >= $2 AND c.expires_at < $3
             AND c.expires_at > now()"#,
        sale_id as SaleId,
        from,
        until,
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut reminded = 0;
    for claim in &held {
        let event = DomainEvent::ClaimExpiring(ClaimExpiring {
            claim_id: claim.id,
            sale_id,
            buyer_id: claim.buyer_id,
            expires_at: claim.expires_at,
            price: money(claim.price, &claim.currency)?,
        });
        reminded += u32::from(events::record(&mut tx, claim.merchant_id, &event).await?);
    }
    tx.commit().await?;
    if reminded > 0 {
        tracing::info!(%sale_id, reminded, "buyers reminded of holds ending soon");
    }
    Ok(())
}

/// `auction.ending_soon` to each bidder and watcher, if the auction is still
/// active and still ends at `ends_at`.
pub async fn auction_ending(pool: &PgPool, auction_id: AuctionId, ends_at: DateTime<Utc>, lead: i64) -> Result<()> {
    let mut tx = pool.begin().await?;
    // A share lock: a bid that would extend the end waits for this commit (or
    // this waits for it and then sees the new end).
    let Some(auction) = sqlx::query!(
        r#"SELECT merchant_id AS "merchant_id: MerchantId", product_id, status, ends_at, current_price, currency
           FROM auctions WHERE id = $1 FOR SHARE"#,
        auction_id as AuctionId,
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(());
    };
    if auction.status != "active" || auction.ends_at != ends_at {
        tracing::debug!(%auction_id, "an ending-soon reminder for an end that no longer holds; nothing sent");
        return Ok(());
    }
    let recipients = sqlx::query_scalar!(
        r#"SELECT bidder_id AS "id!: BuyerId" FROM auction_bids WHERE auction_id = $1 AND status = 'accepted'
           UNION
           SELECT buyer_id FROM watches WHERE product_id = $2"#,
        auction_id as AuctionId,
        auction.product_id,
    )
    .fetch_all(&mut *tx)
    .await?;
    let price = money(auction.current_price, &auction.currency)?;
    let mut reminded = 0;
    for buyer in recipients {
        let event = DomainEvent::AuctionEndingSoon(AuctionEndingSoon {
            auction_id,
            buyer_id: buyer,
            ends_at,
            lead_seconds: lead,
            current_price: price,
        });
        reminded += u32::from(events::record(&mut tx, auction.merchant_id, &event).await?);
    }
    tx.commit().await?;
    tracing::info!(%auction_id, lead, reminded, "bidders and watchers reminded of the auction's end");
    Ok(())
}
