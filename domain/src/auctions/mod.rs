//! Auctions: the pure rules of bidding, apart from storage and HTTP.
//!
//! - [`increments`]: the bid increment table (eBay's by default, or a merchant's own);
//! - [`price`]: the bidding state of one auction and the judge of one attempt
//!   (PRODUCT.md, "The price rule, exactly");
//! - [`trail`]: the tamper-evident hash chain over the stored attempts;
//! - [`results`]: how an ended auction closed (winner, order, final hash).
//!
//! Nothing here reads a clock or a database: whether the auction is open (not
//! started, closed, soft close) and whether the bidder is the seller are decided
//! by the caller before an attempt reaches [`price::Book::judge`].

pub mod bids;
pub mod increments;
pub mod price;
pub mod results;
pub mod trail;

/// The smallest amount a bid may carry, in minor units.
pub const AMOUNT_MIN: i64 = 1;
/// The largest amount a bid may carry, in minor units (PRODUCT.md: 99,999,999).
pub const AMOUNT_MAX: i64 = 99_999_999;

use chrono::{DateTime, Duration, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use self::increments::{Band, IncrementTable};
use self::price::{Book, Leader};
use crate::error::{Error, Invalid, Result};
use crate::events::{self, AuctionClosed, AuctionStarted, DomainEvent};
use crate::ids::{AuctionId, BuyerId, MerchantId, OrderId, ProductId};
use crate::money::{Currency, Money};
use crate::sales::{MAX_DURATION_SECONDS, START_GRACE_SECONDS, bounded, required};
use crate::status::status_enum;

status_enum!(
    /// Where an auction is in its life; [`AuctionStatus::can_become`] is the
    /// whole state machine.
    pub enum AuctionStatus ("auction status") {
        Scheduled => "scheduled",
        Active => "active",
        Ended => "ended",
        Cancelled => "cancelled",
    }
);

impl AuctionStatus {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Ended | Self::Cancelled)
    }

    /// The allowed transitions: `Scheduled → Active`, `Scheduled | Active →
    /// Ended | Cancelled` (a start job that runs after the whole window ends
    /// the auction unstarted); nothing leaves `Ended` or `Cancelled`.
    pub const fn can_become(self, to: Self) -> bool {
        use AuctionStatus::{Active, Cancelled, Ended, Scheduled};
        matches!((self, to), (Scheduled, Active) | (Scheduled | Active, Ended | Cancelled))
    }
}

/// An auction as stored. Its bidding state is a [`Book`], checked for
/// consistency when the row is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Auction {
    pub id: AuctionId,
    pub merchant_id: MerchantId,
    pub product_id: ProductId,
    pub status: AuctionStatus,
    pub currency: Currency,
    pub book: Book,
    pub starts_at: DateTime<Utc>,
    /// The current end; soft close moves it later.
    pub ends_at: DateTime<Utc>,
    pub soft_close_seconds: i32,
    pub extension_seconds: i32,
    pub max_extensions: i32,
    pub extensions: i32,
    pub payment_window_seconds: i32,
    pub increments: IncrementTable,
    /// Changes with every change of the row.
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl Auction {
    pub fn starting_price(&self) -> Money {
        Money::new(self.book.starting_price(), self.currency)
    }

    pub fn reserve_price(&self) -> Option<Money> {
        self.book.reserve().map(|r| Money::new(r, self.currency))
    }

    pub fn current_price(&self) -> Money {
        Money::new(self.book.current_price(), self.currency)
    }

    /// The least amount the next bid may carry (PRODUCT.md's price rule).
    pub fn min_next_bid(&self) -> Money {
        Money::new(self.book.min_next_bid(&self.increments), self.currency)
    }

    pub fn leader(&self) -> Option<Leader> {
        self.book.leader()
    }
}

/// An `auctions` row as the queries read it.
struct AuctionRow {
    id: AuctionId,
    merchant_id: MerchantId,
    product_id: ProductId,
    status: AuctionStatus,
    currency: Currency,
    starting_price: i64,
    reserve_price: Option<i64>,
    current_price: i64,
    leader_buyer_id: Option<BuyerId>,
    leader_max: Option<i64>,
    leader_sequence: Option<i64>,
    bid_count: i32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    soft_close_seconds: i32,
    extension_seconds: i32,
    max_extensions: i32,
    extensions: i32,
    payment_window_seconds: i32,
    increments: Json<IncrementTable>,
    version: i32,
    created_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
}

impl TryFrom<AuctionRow> for Auction {
    type Error = Error;

    fn try_from(r: AuctionRow) -> Result<Self> {
        let leader = match (r.leader_buyer_id, r.leader_max, r.leader_sequence) {
            (Some(bidder), Some(max), Some(since)) => {
                Some(Leader { bidder, max, since: u64::try_from(since).unwrap_or_default() })
            }
            _ => None,
        };
        let bid_count = u32::try_from(r.bid_count).unwrap_or_default();
        let book = Book::restore(r.starting_price, r.reserve_price, r.current_price, leader, bid_count)
            .map_err(|e| Error::Internal(format!("auction {}: stored state: {e}", r.id)))?;
        Ok(Self {
            id: r.id,
            merchant_id: r.merchant_id,
            product_id: r.product_id,
            status: r.status,
            currency: r.currency,
            book,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            soft_close_seconds: r.soft_close_seconds,
            extension_seconds: r.extension_seconds,
            max_extensions: r.max_extensions,
            extensions: r.extensions,
            payment_window_seconds: r.payment_window_seconds,
            increments: r.increments.0,
            version: r.version,
            created_at: r.created_at,
            ended_at: r.ended_at,
        })
    }
}

/// The merchant-settable terms of an auction, validated as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct AuctionTerms {
    pub currency: Currency,
    /// The fresh bidding state: starting price and reserve, checked.
    pub book: Book,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub soft_close_seconds: i32,
    pub extension_seconds: i32,
    pub max_extensions: i32,
    pub payment_window_seconds: i32,
    pub increments: IncrementTable,
}

/// Raw terms as they arrive, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawAuctionTerms {
    pub currency: Option<String>,
    pub starting_price: Option<i64>,
    pub reserve_price: Option<i64>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub soft_close_seconds: Option<i64>,
    pub extension_seconds: Option<i64>,
    pub max_extensions: Option<i64>,
    pub payment_window_seconds: Option<i64>,
    pub increments: Option<Vec<Band>>,
}

const MAX_SOFT_CLOSE_SECONDS: i64 = 3600;
const MAX_EXTENSION_SECONDS: i64 = 3600;
const MAX_EXTENSIONS: i64 = 100;
const MIN_PAYMENT_WINDOW_SECONDS: i64 = 60;
const MAX_PAYMENT_WINDOW_SECONDS: i64 = 30 * 24 * 3600;

impl AuctionTerms {
    /// Validates new terms; `now` bounds how far in the past `starts_at` may be.
    /// Errors name the field to blame.
    pub fn parse(raw: RawAuctionTerms, now: DateTime<Utc>) -> Result<Self, Invalid> {
        let currency = required("currency", raw.currency)?.parse()?;
        let book = Book::new(required("starting_price", raw.starting_price)?, raw.reserve_price)?;
        let starts_at = required("starts_at", raw.starts_at)?;
        if starts_at < now - Duration::seconds(START_GRACE_SECONDS) {
            return Err(Invalid::new("starts_at", "must not be in the past"));
        }
        if starts_at > now + Duration::days(366) {
            return Err(Invalid::new("starts_at", "must be within a year"));
        }
        let ends_at = required("ends_at", raw.ends_at)?;
        if ends_at <= starts_at {
            return Err(Invalid::new("ends_at", "must be after starts_at"));
        }
        bounded("ends_at", (ends_at - starts_at).num_seconds(), 1, MAX_DURATION_SECONDS)?;
        let soft_close =
            bounded("soft_close_seconds", raw.soft_close_seconds.unwrap_or(30), 0, MAX_SOFT_CLOSE_SECONDS)?;
        let extension = bounded("extension_seconds", raw.extension_seconds.unwrap_or(60), 1, MAX_EXTENSION_SECONDS)?;
        let max_extensions = bounded("max_extensions", raw.max_extensions.unwrap_or(5), 0, MAX_EXTENSIONS)?;
        let payment_window = bounded(
            "payment_window_seconds",
            raw.payment_window_seconds.unwrap_or(86_400),
            MIN_PAYMENT_WINDOW_SECONDS,
            MAX_PAYMENT_WINDOW_SECONDS,
        )?;
        let increments = match raw.increments {
            Some(bands) => IncrementTable::new(bands)?,
            None => IncrementTable::default(),
        };
        Ok(Self {
            currency,
            book,
            starts_at,
            ends_at,
            soft_close_seconds: soft_close as i32,
            extension_seconds: extension as i32,
            max_extensions: max_extensions as i32,
            payment_window_seconds: payment_window as i32,
            increments,
        })
    }
}

pub async fn insert(
    conn: &mut PgConnection,
    merchant: MerchantId,
    product: ProductId,
    terms: &AuctionTerms,
) -> Result<Auction> {
    let row = sqlx::query_as!(
        AuctionRow,
        r#"INSERT INTO auctions (id, merchant_id, product_id, status, currency, starting_price, reserve_price,
                                 current_price, starts_at, ends_at, soft_close_seconds, extension_seconds,
                                 max_extensions, payment_window_seconds, increments)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $8, $9, $10, $11, $12, $13, $14)
           RETURNING id AS "id: AuctionId", merchant_id AS "merchant_id: MerchantId",
                     product_id AS "product_id: ProductId", status AS "status: AuctionStatus",
                     currency AS "currency: Currency", starting_price, reserve_price, current_price,
                     leader_buyer_id AS "leader_buyer_id: BuyerId", leader_max, leader_sequence, bid_count,
                     starts_at, ends_at, soft_close_seconds, extension_seconds, max_extensions, extensions,
                     payment_window_seconds, increments AS "increments: Json<IncrementTable>", version,
                     created_at, ended_at"#,
        AuctionId::new() as AuctionId,
        merchant as MerchantId,
        product as ProductId,
        AuctionStatus::Scheduled as AuctionStatus,
        terms.currency as Currency,
        terms.book.starting_price(),
        terms.book.reserve(),
        terms.starts_at,
        terms.ends_at,
        terms.soft_close_seconds,
        terms.extension_seconds,
        terms.max_extensions,
        terms.payment_window_seconds,
        Json(&terms.increments) as Json<&IncrementTable>,
    )
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// Any auction by id, as the public sees it (no tenant check).
pub async fn get_public(pool: &PgPool, id: AuctionId) -> Result<Auction> {
    let row = sqlx::query_as!(
        AuctionRow,
        r#"SELECT id AS "id: AuctionId", merchant_id AS "merchant_id: MerchantId",
                  product_id AS "product_id: ProductId", status AS "status: AuctionStatus",
                  currency AS "currency: Currency", starting_price, reserve_price, current_price,
                  leader_buyer_id AS "leader_buyer_id: BuyerId", leader_max, leader_sequence, bid_count,
                  starts_at, ends_at, soft_close_seconds, extension_seconds, max_extensions, extensions,
                  payment_window_seconds, increments AS "increments: Json<IncrementTable>", version,
                  created_at, ended_at
           FROM auctions WHERE id = $1"#,
        id as AuctionId,
    )
    .fetch_optional(pool)
    .await?;
    row.ok_or(Error::NotFound("auction"))?.try_into()
}

/// A merchant's own auction; another merchant's is "not found".
pub async fn get(pool: &PgPool, merchant: MerchantId, id: AuctionId) -> Result<Auction> {
    let row = sqlx::query_as!(
        AuctionRow,
        r#"SELECT id AS "id: AuctionId", merchant_id AS "merchant_id: MerchantId",
                  product_id AS "product_id: ProductId", status AS "status: AuctionStatus",
                  currency AS "currency: Currency", starting_price, reserve_price, current_price,
                  leader_buyer_id AS "leader_buyer_id: BuyerId", leader_max, leader_sequence, bid_count,
                  starts_at, ends_at, soft_close_seconds, extension_seconds, max_extensions, extensions,
                  payment_window_seconds, increments AS "increments: Json<IncrementTable>", version,
                  created_at, ended_at
           FROM auctions WHERE id = $1 AND merchant_id = $2"#,
        id as AuctionId,
        merchant as MerchantId,
    )
    .fetch_optional(pool)
    .await?;
    row.ok_or(Error::NotFound("auction"))?.try_into()
}

/// Any auction by id, locked for the rest of the transaction (for jobs).
pub async fn lock(conn: &mut PgConnection, id: AuctionId) -> Result<Option<Auction>> {
    let row = sqlx::query_as!(
        AuctionRow,
        r#"SELECT id AS "id: AuctionId", merchant_id AS "merchant_id: MerchantId",
                  product_id AS "product_id: ProductId", status AS "status: AuctionStatus",
                  currency AS "currency: Currency", starting_price, reserve_price, current_price,
                  leader_buyer_id AS "leader_buyer_id: BuyerId", leader_max, leader_sequence, bid_count,
                  starts_at, ends_at, soft_close_seconds, extension_seconds, max_extensions, extensions,
                  payment_window_seconds, increments AS "increments: Json<IncrementTable>", version,
                  created_at, ended_at
           FROM auctions WHERE id = $1 FOR NO KEY UPDATE"#,
        id as AuctionId,
    )
    .fetch_optional(conn)
    .await?;
    row.map(Auction::try_from).transpose()
}

/// A merchant's auction, locked, for a change.
pub async fn lock_own(conn: &mut PgConnection, merchant: MerchantId, id: AuctionId) -> Result<Auction> {
    let row = sqlx::query_as!(
        AuctionRow,
        r#"SELECT id AS "id: AuctionId", merchant_id AS "merchant_id: MerchantId",
                  product_id AS "product_id: ProductId", status AS "status: AuctionStatus",
                  currency AS "currency: Currency", starting_price, reserve_price, current_price,
                  leader_buyer_id AS "leader_buyer_id: BuyerId", leader_max, leader_sequence, bid_count,
                  starts_at, ends_at, soft_close_seconds, extension_seconds, max_extensions, extensions,
                  payment_window_seconds, increments AS "increments: Json<IncrementTable>", version,
                  created_at, ended_at
           FROM auctions WHERE id = $1 AND merchant_id = $2 FOR NO KEY UPDATE"#,
        id as AuctionId,
        merchant as MerchantId,
    )
    .fetch_optional(conn)
    .await?;
    row.ok_or(Error::NotFound("auction"))?.try_into()
}

/// One page of a merchant's auctions, newest first.
pub async fn list(
    pool: &PgPool,
    merchant: MerchantId,
    limit: i64,
    starting_after: Option<AuctionId>,
) -> Result<Vec<Auction>> {
    let rows = sqlx::query_as!(
        AuctionRow,
        r#"SELECT id AS "id: AuctionId", merchant_id AS "merchant_id: MerchantId",
                  product_id AS "product_id: ProductId", status AS "status: AuctionStatus",
                  currency AS "currency: Currency", starting_price, reserve_price, current_price,
                  leader_buyer_id AS "leader_buyer_id: BuyerId", leader_max, leader_sequence, bid_count,
                  starts_at, ends_at, soft_close_seconds, extension_seconds, max_extensions, extensions,
                  payment_window_seconds, increments AS "increments: Json<IncrementTable>", version,
                  created_at, ended_at
           FROM auctions
           WHERE merchant_id = $1 AND ($2::uuid IS NULL OR id < $2)
           ORDER BY id DESC LIMIT $3"#,
        merchant as MerchantId,
        starting_after as Option<AuctionId>,
        limit,
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Auction::try_from).collect()
}

/// Where an auction stands, read without a lock: what its lifecycle jobs
/// look at before they wait for their instant and take the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub status: AuctionStatus,
    pub version: i32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// The auction's [`Window`]; `None` for an unknown auction.
pub async fn window(pool: &PgPool, id: AuctionId) -> Result<Option<Window>> {
    Ok(sqlx::query_as!(
        Window,
        r#"SELECT status AS "status: AuctionStatus", version, starts_at, ends_at FROM auctions WHERE id = $1"#,
        id as AuctionId,
    )
    .fetch_optional(pool)
    .await?)
}

/// The one statement that changes an auction's status: `from → to` if the
/// auction is still in `from` at `version` (`None` otherwise: a late or
/// repeated job, or a racing cancel, finds nothing to do). Every transition
/// bumps the version; closing stamps `ended_at`.
async fn transition(
    conn: &mut PgConnection,
    id: AuctionId,
    (from, to): (AuctionStatus, AuctionStatus),
    version: i32,
) -> Result<Option<Auction>> {
    if !from.can_become(to) {
        return Err(Error::Internal(format!("auction {id}: no transition {} -> {}", from.as_str(), to.as_str())));
    }
    let row = sqlx::query_as!(
        AuctionRow,
        r#"UPDATE auctions SET status = $4, version = version + 1,
                               ended_at = CASE WHEN $5 THEN now() ELSE ended_at END
           WHERE id = $1 AND status = $2 AND version = $3
           RETURNING id AS "id: AuctionId", merchant_id AS "merchant_id: MerchantId",
                     product_id AS "product_id: ProductId", status AS "status: AuctionStatus",
                     currency AS "currency: Currency", starting_price, reserve_price, current_price,
                     leader_buyer_id AS "leader_buyer_id: BuyerId", leader_max, leader_sequence, bid_count,
                     starts_at, ends_at, soft_close_seconds, extension_seconds, max_extensions, extensions,
                     payment_window_seconds, increments AS "increments: Json<IncrementTable>", version,
                     created_at, ended_at"#,
        id as AuctionId,
        from as AuctionStatus,
        version,
        to as AuctionStatus,
        to.is_final(),
    )
    .fetch_optional(conn)
    .await?;
    row.map(Auction::try_from).transpose()
}

/// `Scheduled → Active` with its `auction.started` event, in the caller's
/// transaction; `None` (and no event) if the auction has moved on from
/// `version`.
pub async fn start(conn: &mut PgConnection, id: AuctionId, version: i32) -> Result<Option<Auction>> {
    let Some(active) = transition(&mut *conn, id, (AuctionStatus::Scheduled, AuctionStatus::Active), version).await?
    else {
        return Ok(None);
    };
    let event = DomainEvent::AuctionStarted(AuctionStarted {
        auction_id: id,
        product_id: active.product_id,
        starting_price: active.starting_price(),
        starts_at: active.starts_at,
        ends_at: active.ends_at,
    });
    events::record(conn, active.merchant_id, &event).await?;
    Ok(Some(active))
}

/// What a close reports beside the auction's own state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closing {
    /// The winner (none when cancelled, without bids, or below the reserve).
    pub winner: Option<BuyerId>,
    /// The winner's order, created in the same transaction.
    pub order: Option<OrderId>,
    /// The head of the bid trail (hex).
    pub trail_hash: String,
}

/// Closes `auction` (locked by the caller) to `Ended` or `Cancelled`, with
/// its event (`auction.ended`, `auction.cancelled`) carrying `closing`;
/// `None` (and nothing changed) if it has moved on from the state and version
/// the caller read.
pub async fn close(
    conn: &mut PgConnection,
    auction: &Auction,
    to: AuctionStatus,
    closing: &Closing,
) -> Result<Option<Auction>> {
    if !auction.status.can_become(to) || !to.is_final() {
        return Err(Error::Internal(format!("auction {}: cannot close to {}", auction.id, to.as_str())));
    }
    let Some(closed) = transition(&mut *conn, auction.id, (auction.status, to), auction.version).await? else {
        return Ok(None);
    };
    let payload = AuctionClosed {
        auction_id: closed.id,
        price: closed.current_price(),
        bid_count: closed.book.bid_count(),
        ends_at: closed.ends_at,
        winner_buyer_id: closing.winner,
        order_id: closing.order,
        trail_hash: closing.trail_hash.clone(),
    };
    let event = match to {
        AuctionStatus::Cancelled => DomainEvent::AuctionCancelled(payload),
        _ => DomainEvent::AuctionEnded(payload),
    };
    events::record(conn, closed.merchant_id, &event).await?;
    Ok(Some(closed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(now: DateTime<Utc>) -> RawAuctionTerms {
        RawAuctionTerms {
            currency: Some("usd".into()),
            starting_price: Some(1000),
            reserve_price: Some(5000),
            starts_at: Some(now + Duration::minutes(5)),
            ends_at: Some(now + Duration::hours(1)),
            ..RawAuctionTerms::default()
        }
    }

    #[test]
    fn defaults_are_the_products() {
        let now = Utc::now();
        let terms = AuctionTerms::parse(raw(now), now).expect("the test terms are valid");
        assert_eq!(
            (terms.soft_close_seconds, terms.extension_seconds, terms.max_extensions, terms.payment_window_seconds),
            (30, 60, 5, 86_400)
        );
        assert_eq!(terms.increments, IncrementTable::default());
    }

    #[test]
    fn bad_terms_name_their_field() {
        let now = Utc::now();
        let bad_bands = vec![Band { from: 5, increment: 10 }];
        let cases: [(&str, RawAuctionTerms); 9] = [
            ("reserve_price", RawAuctionTerms { reserve_price: Some(999), ..raw(now) }),
            ("starting_price", RawAuctionTerms { starting_price: Some(0), ..raw(now) }),
            ("currency", RawAuctionTerms { currency: Some("abc".into()), ..raw(now) }),
            ("ends_at", RawAuctionTerms { ends_at: Some(now), ..raw(now) }),
            ("ends_at", RawAuctionTerms { ends_at: Some(now + Duration::days(30)), ..raw(now) }),
            ("starts_at", RawAuctionTerms { starts_at: Some(now - Duration::hours(1)), ..raw(now) }),
            ("soft_close_seconds", RawAuctionTerms { soft_close_seconds: Some(-1), ..raw(now) }),
            ("payment_window_seconds", RawAuctionTerms { payment_window_seconds: Some(1), ..raw(now) }),
            ("increments", RawAuctionTerms { increments: Some(bad_bands), ..raw(now) }),
        ];
        for (field, terms) in cases {
            assert_eq!(AuctionTerms::parse(terms, now).map_err(|e| e.field), Err(field));
        }
    }

    #[test]
    fn the_lifecycle_only_moves_forward() {
        use AuctionStatus::*;
        assert!(Scheduled.can_become(Active) && Active.can_become(Ended) && Scheduled.can_become(Cancelled));
        assert!(!Ended.can_become(Cancelled) && !Cancelled.can_become(Active) && !Active.can_become(Scheduled));
    }
}
