//! How an ended auction closed (`auction_results`): written once by the close,
//! read by the auction resource, and amended once by the merchant's
//! second-chance offer.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::error::{Error, Result};
use crate::ids::{AuctionId, BuyerId, OrderId};

/// An ended auction's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub auction_id: AuctionId,
    /// Null without bids or below the reserve.
    pub winner_buyer_id: Option<BuyerId>,
    /// The winner's order.
    pub order_id: Option<OrderId>,
    /// Minor units.
    pub final_price: i64,
    pub ended_at: DateTime<Utc>,
    /// The head of the bid trail's hash chain when it closed.
    pub trail_hash: [u8; 32],
    pub second_chance_buyer_id: Option<BuyerId>,
    pub second_chance_order_id: Option<OrderId>,
}

struct OutcomeRow {
    auction_id: AuctionId,
    winner_buyer_id: Option<BuyerId>,
    order_id: Option<OrderId>,
    final_price: i64,
    ended_at: DateTime<Utc>,
    trail_hash: Vec<u8>,
    second_chance_buyer_id: Option<BuyerId>,
    second_chance_order_id: Option<OrderId>,
}

impl TryFrom<OutcomeRow> for Outcome {
    type Error = Error;

    fn try_from(r: OutcomeRow) -> Result<Self> {
        let trail_hash = <[u8; 32]>::try_from(r.trail_hash.as_slice())
            .map_err(|_| Error::Internal(format!("auction {}: stored trail hash is not 32 bytes", r.auction_id)))?;
        Ok(Self {
            auction_id: r.auction_id,
            winner_buyer_id: r.winner_buyer_id,
            order_id: r.order_id,
            final_price: r.final_price,
            ended_at: r.ended_at,
            trail_hash,
            second_chance_buyer_id: r.second_chance_buyer_id,
            second_chance_order_id: r.second_chance_order_id,
        })
    }
}

/// The head of the auction's bid trail as the row carries it (the genesis
/// hash before the first attempt).
pub async fn trail_head(conn: &mut PgConnection, id: AuctionId) -> Result<[u8; 32]> {
    let stored =
        sqlx::query_scalar!("SELECT trail_hash FROM auctions WHERE id = $1", id as AuctionId).fetch_one(conn).await?;
    <[u8; 32]>::try_from(stored.as_slice())
        .map_err(|_| Error::Internal(format!("auction {id}: stored trail hash is not 32 bytes")))
}

/// Stores the result of a close. The primary key makes a second close of the
/// same auction an error that rolls its transaction back.
pub async fn insert(conn: &mut PgConnection, outcome: &Outcome) -> Result<()> {
    sqlx::query!(
        "INSERT INTO auction_results (auction_id, winner_buyer_id, order_id, final_price, ended_at, trail_hash)
         VALUES ($1, $2, $3, $4, $5, $6)",
        outcome.auction_id as AuctionId,
        outcome.winner_buyer_id as Option<BuyerId>,
        outcome.order_id as Option<OrderId>,
        outcome.final_price,
        outcome.ended_at,
        outcome.trail_hash.as_slice(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The result of an ended auction (`None` before it ends, or when cancelled).
pub async fn get(pool: &PgPool, id: AuctionId) -> Result<Option<Outcome>> {
    let row = sqlx::query_as!(
        OutcomeRow,
        r#"SELECT auction_id AS "auction_id: AuctionId", winner_buyer_id AS "winner_buyer_id: BuyerId",
                  order_id AS "order_id: OrderId", final_price, ended_at, trail_hash,
                  second_chance_buyer_id AS "second_chance_buyer_id: BuyerId",
                  second_chance_order_id AS "second_chance_order_id: OrderId"
           FROM auction_results WHERE auction_id = $1"#,
        id as AuctionId,
    )
    .fetch_optional(pool)
    .await?;
    row.map(Outcome::try_from).transpose()
}

/// The result, locked for the second-chance offer.
pub async fn lock(conn: &mut PgConnection, id: AuctionId) -> Result<Option<Outcome>> {
    let row = sqlx::query_as!(
        OutcomeRow,
        r#"SELECT auction_id AS "auction_id: AuctionId", winner_buyer_id AS "winner_buyer_id: BuyerId",
                  order_id AS "order_id: OrderId", final_price, ended_at, trail_hash,
                  second_chance_buyer_id AS "second_chance_buyer_id: BuyerId",
                  second_chance_order_id AS "second_chance_order_id: OrderId"
           FROM auction_results WHERE auction_id = $1 FOR UPDATE"#,
        id as AuctionId,
    )
    .fetch_optional(conn)
    .await?;
    row.map(Outcome::try_from).transpose()
}

/// Records the one second-chance offer; `false` if one was already made.
pub async fn set_second_chance(conn: &mut PgConnection, id: AuctionId, buyer: BuyerId, order: OrderId) -> Result<bool> {
    let done = sqlx::query!(
        "UPDATE auction_results SET second_chance_buyer_id = $2, second_chance_order_id = $3
         WHERE auction_id = $1 AND second_chance_order_id IS NULL AND order_id IS NOT NULL",
        id as AuctionId,
        buyer as BuyerId,
        order as OrderId,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// The runner-up: among the accepted attempts of bidders other than the
/// winner, the bidder with the highest maximum (ties: the earlier attempt),
/// with that maximum — their last maximum price, since a bidder's accepted
/// maxima only rise.
pub async fn runner_up(conn: &mut PgConnection, id: AuctionId, winner: BuyerId) -> Result<Option<(BuyerId, i64)>> {
    let row = sqlx::query!(
        r#"SELECT bidder_id AS "bidder_id: BuyerId", max_amount FROM auction_bids
           WHERE auction_id = $1 AND status = 'accepted' AND bidder_id <> $2
           ORDER BY max_amount DESC, sequence ASC LIMIT 1"#,
        id as AuctionId,
        winner as BuyerId,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.bidder_id, r.max_amount)))
}

/// The results of the given auctions (those that have one), for a page of
/// auctions.
pub async fn of_many(pool: &PgPool, ids: &[AuctionId]) -> Result<Vec<Outcome>> {
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|id| id.uuid()).collect();
    let rows = sqlx::query_as!(
        OutcomeRow,
        r#"SELECT auction_id AS "auction_id: AuctionId", winner_buyer_id AS "winner_buyer_id: BuyerId",
                  order_id AS "order_id: OrderId", final_price, ended_at, trail_hash,
                  second_chance_buyer_id AS "second_chance_buyer_id: BuyerId",
                  second_chance_order_id AS "second_chance_order_id: OrderId"
           FROM auction_results WHERE auction_id = ANY($1)"#,
        &uuids,
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Outcome::try_from).collect()
}
