//! Flash sales: their states, their validated shape, and the repository
//! functions that create, read and change them.
//!
//! Every state change goes through one guarded `UPDATE … WHERE status = $from
//! AND version = $v` ([`transition`], checked against
//! [`SaleStatus::can_become`]), so a late or repeated job, or a racing
//! merchant edit, finds nothing to do instead of doing it twice.

use chrono::{DateTime, Duration, Utc};
use sqlx::{PgConnection, PgPool};

use crate::claims;
use crate::error::{Error, Invalid, Result};
use crate::events::{self, DomainEvent, SaleClosed, SaleFigures, SaleStarted};
use crate::feed::{self, Entry, SaleFeed, Topic};
use crate::ids::{MerchantId, ProductId, SaleId};
use crate::money::{Currency, Money, Price};
use crate::status::status_enum;

status_enum!(
    /// Where a sale is in its life; [`SaleStatus::can_become`] is the whole
    /// state machine.
    pub enum SaleStatus ("sale status") {
        Scheduled => "scheduled",
        Active => "active",
        Ended => "ended",
        Cancelled => "cancelled",
    }
);

impl SaleStatus {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Ended | Self::Cancelled)
    }

    /// The allowed transitions: `Scheduled → Active`, `Scheduled | Active →
    /// Ended | Cancelled` (a start job that runs after the whole window ends
    /// the sale unstarted); nothing leaves `Ended` or `Cancelled`.
    pub const fn can_become(self, to: Self) -> bool {
        use SaleStatus::{Active, Cancelled, Ended, Scheduled};
        matches!((self, to), (Scheduled, Active) | (Scheduled | Active, Ended | Cancelled))
    }
}

/// A sale as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Sale {
    pub id: SaleId,
    pub merchant_id: MerchantId,
    pub product_id: ProductId,
    pub status: SaleStatus,
    /// The price of one unit.
    pub price: Money,
    pub inventory: i32,
    pub available: i32,
    pub held: i32,
    pub sold: i32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub hold_seconds: i32,
    pub per_buyer_limit: i32,
    pub version: i32,
    pub created_at: DateTime<Utc>,
}

/// A `sales` row as the queries read it; [`Sale`] pairs its price with its
/// currency.
struct SaleRow {
    id: SaleId,
    merchant_id: MerchantId,
    product_id: ProductId,
    status: SaleStatus,
    price: i64,
    currency: Currency,
    inventory: i32,
    available: i32,
    held: i32,
    sold: i32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    hold_seconds: i32,
    per_buyer_limit: i32,
    version: i32,
    created_at: DateTime<Utc>,
}

impl From<SaleRow> for Sale {
    fn from(r: SaleRow) -> Self {
        Self {
            id: r.id,
            merchant_id: r.merchant_id,
            product_id: r.product_id,
            status: r.status,
            price: Money::new(r.price, r.currency),
            inventory: r.inventory,
            available: r.available,
            held: r.held,
            sold: r.sold,
            starts_at: r.starts_at,
            ends_at: r.ends_at,
            hold_seconds: r.hold_seconds,
            per_buyer_limit: r.per_buyer_limit,
            version: r.version,
            created_at: r.created_at,
        }
    }
}

/// The merchant-settable terms of a sale, validated as a whole: a value of this
/// type always has a positive bounded price, a known currency, sane inventory
/// and an end after its start.
#[derive(Debug, Clone, PartialEq)]
pub struct SaleTerms {
    pub price: Price,
    pub currency: Currency,
    pub inventory: i32,
    pub starts_at: DateTime<Utc>,
    pub duration: Duration,
    pub hold: Duration,
    pub per_buyer_limit: i32,
}

/// Raw terms as they arrive, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawTerms {
    pub price: Option<i64>,
    pub currency: Option<String>,
    pub inventory: Option<i64>,
    pub starts_at: Option<DateTime<Utc>>,
    /// An alternative to `duration_seconds`: the end instant itself.
    pub ends_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i64>,
    pub hold_seconds: Option<i64>,
    pub per_buyer_limit: Option<i64>,
}

pub const MAX_INVENTORY: i64 = 1_000_000;
pub(crate) const MAX_DURATION_SECONDS: i64 = 7 * 24 * 3600;
const MAX_HOLD_SECONDS: i64 = 3600;
/// A start this far in the past is taken as "now" (clock skew); further is refused.
pub(crate) const START_GRACE_SECONDS: i64 = 60;

pub(crate) fn bounded(field: &'static str, value: i64, min: i64, max: i64) -> Result<i64, Invalid> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Invalid::new(field, format!("must be between {min} and {max}")))
    }
}

pub(crate) fn required<T>(field: &'static str, value: Option<T>) -> Result<T, Invalid> {
    value.ok_or_else(|| Invalid::new(field, "is required"))
}

impl SaleTerms {
    pub fn ends_at(&self) -> DateTime<Utc> {
        self.starts_at + self.duration
    }

    /// Validates new terms; `now` bounds how far in the past `starts_at` may be.
    pub fn parse(raw: RawTerms, now: DateTime<Utc>) -> Result<Self, Invalid> {
        let price = Price::new("price", required("price", raw.price)?)?;
        let currency = required("currency", raw.currency)?.parse()?;
        let inventory = bounded("inventory", required("inventory", raw.inventory)?, 1, MAX_INVENTORY)? as i32;
        let starts_at = required("starts_at", raw.starts_at)?;
        if starts_at < now - Duration::seconds(START_GRACE_SECONDS) {
            return Err(Invalid::new("starts_at", "must not be in the past"));
        }
        if starts_at > now + Duration::days(366) {
            return Err(Invalid::new("starts_at", "must be within a year"));
        }
        let duration = match (raw.ends_at, raw.duration_seconds) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new("ends_at", "give either ends_at or duration_seconds, not both"));
            }
            (Some(ends_at), None) if ends_at <= starts_at => {
                return Err(Invalid::new("ends_at", "must be after starts_at"));
            }
            (Some(ends_at), None) => bounded("ends_at", (ends_at - starts_at).num_seconds(), 1, MAX_DURATION_SECONDS)?,
            (None, seconds) => bounded("duration_seconds", seconds.unwrap_or(600), 1, MAX_DURATION_SECONDS)?,
        };
        let hold = bounded("hold_seconds", raw.hold_seconds.unwrap_or(180), 1, MAX_HOLD_SECONDS)?;
        let per_buyer_limit = bounded("per_buyer_limit", raw.per_buyer_limit.unwrap_or(1), 1, 100)? as i32;
        Ok(Self {
            price,
            currency,
            inventory,
            starts_at,
            duration: Duration::seconds(duration),
            hold: Duration::seconds(hold),
            per_buyer_limit,
        })
    }

    /// The terms of `sale` with the fields of `patch` laid over them, validated.
    pub fn patched(sale: &Sale, patch: RawTerms, now: DateTime<Utc>) -> Result<Self, Invalid> {
        let merged = RawTerms {
            price: patch.price.or(Some(sale.price.minor())),
            currency: patch.currency.or_else(|| Some(sale.price.currency().code().to_owned())),
            inventory: patch.inventory.or(Some(i64::from(sale.inventory))),
            starts_at: patch.starts_at.or(Some(sale.starts_at)),
            ends_at: patch.ends_at,
            duration_seconds: match patch.ends_at {
                Some(_) => patch.duration_seconds,
                None => patch.duration_seconds.or(Some((sale.ends_at - sale.starts_at).num_seconds())),
            },
            hold_seconds: patch.hold_seconds.or(Some(i64::from(sale.hold_seconds))),
            per_buyer_limit: patch.per_buyer_limit.or(Some(i64::from(sale.per_buyer_limit))),
        };
        Self::parse(merged, now)
    }
}

pub async fn insert(
    conn: &mut PgConnection,
    merchant: MerchantId,
    product: ProductId,
    terms: &SaleTerms,
) -> Result<Sale> {
    let row = sqlx::query_as!(
        SaleRow,
        r#"INSERT INTO sales (id, merchant_id, product_id, status, price, currency, inventory, available,
                              starts_at, ends_at, hold_seconds, per_buyer_limit)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11)
           RETURNING id AS "id: SaleId", merchant_id AS "merchant_id: MerchantId",
                     product_id AS "product_id: ProductId", status AS "status: SaleStatus", price,
                     currency AS "currency: Currency", inventory, available, held, sold, starts_at, ends_at,
                     hold_seconds, per_buyer_limit, version, created_at"#,
        SaleId::new() as SaleId,
        merchant as MerchantId,
        product as ProductId,
        SaleStatus::Scheduled as SaleStatus,
        terms.price.minor(),
        terms.currency as Currency,
        terms.inventory,
        terms.starts_at,
        terms.ends_at(),
        terms.hold.num_seconds() as i32,
        terms.per_buyer_limit,
    )
    .fetch_one(conn)
    .await?;
    Ok(row.into())
}

/// A merchant's own sale; another merchant's sale is "not found".
pub async fn get(pool: &PgPool, merchant: MerchantId, id: SaleId) -> Result<Sale> {
    let row = sqlx::query_as!(
        SaleRow,
        r#"SELECT id AS "id: SaleId", merchant_id AS "merchant_id: MerchantId",
                  product_id AS "product_id: ProductId", status AS "status: SaleStatus", price,
                  currency AS "currency: Currency", inventory, available, held, sold, starts_at, ends_at,
                  hold_seconds, per_buyer_limit, version, created_at
           FROM sales WHERE id = $1 AND merchant_id = $2"#,
        id as SaleId,
        merchant as MerchantId,
    )
    .fetch_optional(pool)
    .await?;
    row.map(Sale::from).ok_or(Error::NotFound("sale"))
}

/// Any sale by id, locked for the rest of the transaction (for jobs).
pub async fn lock(conn: &mut PgConnection, id: SaleId) -> Result<Option<Sale>> {
    let row = sqlx::query_as!(
        SaleRow,
        r#"SELECT id AS "id: SaleId", merchant_id AS "merchant_id: MerchantId",
                  product_id AS "product_id: ProductId", status AS "status: SaleStatus", price,
                  currency AS "currency: Currency", inventory, available, held, sold, starts_at, ends_at,
                  hold_seconds, per_buyer_limit, version, created_at
           FROM sales WHERE id = $1 FOR NO KEY UPDATE"#,
        id as SaleId,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Sale::from))
}

/// A merchant's sale, locked, for an edit.
pub async fn lock_own(conn: &mut PgConnection, merchant: MerchantId, id: SaleId) -> Result<Sale> {
    let row = sqlx::query_as!(
        SaleRow,
        r#"SELECT id AS "id: SaleId", merchant_id AS "merchant_id: MerchantId",
                  product_id AS "product_id: ProductId", status AS "status: SaleStatus", price,
                  currency AS "currency: Currency", inventory, available, held, sold, starts_at, ends_at,
                  hold_seconds, per_buyer_limit, version, created_at
           FROM sales WHERE id = $1 AND merchant_id = $2 FOR NO KEY UPDATE"#,
        id as SaleId,
        merchant as MerchantId,
    )
    .fetch_optional(conn)
    .await?;
    row.map(Sale::from).ok_or(Error::NotFound("sale"))
}

/// One page of a merchant's sales, newest first.
pub async fn list(
    pool: &PgPool,
    merchant: MerchantId,
    limit: i64,
    starting_after: Option<SaleId>,
) -> Result<Vec<Sale>> {
    let rows = sqlx::query_as!(
        SaleRow,
        r#"SELECT id AS "id: SaleId", merchant_id AS "merchant_id: MerchantId",
                  product_id AS "product_id: ProductId", status AS "status: SaleStatus", price,
                  currency AS "currency: Currency", inventory, available, held, sold, starts_at, ends_at,
                  hold_seconds, per_buyer_limit, version, created_at
           FROM sales
           WHERE merchant_id = $1 AND ($2::uuid IS NULL OR id < $2)
           ORDER BY id DESC LIMIT $3"#,
        merchant as MerchantId,
        starting_after as Option<SaleId>,
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Sale::from).collect())
}

/// When a sale starts and ends, unlocked: what its lifecycle jobs wait for
/// before they take the lock. `None` for an unknown sale.
pub async fn window(pool: &PgPool, id: SaleId) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>> {
    let row =
        sqlx::query!("SELECT starts_at, ends_at FROM sales WHERE id = $1", id as SaleId).fetch_optional(pool).await?;
    Ok(row.map(|r| (r.starts_at, r.ends_at)))
}

/// Replaces the terms of a scheduled sale and bumps its version, which voids
/// the lifecycle jobs scheduled for the old version.
pub async fn update_terms(conn: &mut PgConnection, sale: &Sale, terms: &SaleTerms) -> Result<Sale> {
    if sale.status != SaleStatus::Scheduled {
        return Err(Error::SaleLocked { status: sale.status.as_str() });
    }
    let row = sqlx::query_as!(
        SaleRow,
        r#"UPDATE sales SET price = $4, currency = $5, inventory = $6, available = $6, starts_at = $7,
                            ends_at = $8, hold_seconds = $9, per_buyer_limit = $10,
                            version = version + 1, updated_at = now()
           WHERE id = $1 AND version = $2 AND status = $3
           RETURNING id AS "id: SaleId", merchant_id AS "merchant_id: MerchantId",
                     product_id AS "product_id: ProductId", status AS "status: SaleStatus", price,
                     currency AS "currency: Currency", inventory, available, held, sold, starts_at, ends_at,
                     hold_seconds, per_buyer_limit, version, created_at"#,
        sale.id as SaleId,
        sale.version,
        SaleStatus::Scheduled as SaleStatus,
        terms.price.minor(),
        terms.currency as Currency,
        terms.inventory,
        terms.starts_at,
        terms.ends_at(),
        terms.hold.num_seconds() as i32,
        terms.per_buyer_limit,
    )
    .fetch_optional(conn)
    .await?;
    row.map(Sale::from).ok_or(Error::VersionMismatch { expected: sale.version, current: sale.version + 1 })
}

/// The one statement that changes a sale's status: `from → to` if the sale
/// is still in `from` at `version` (`None` otherwise: a late or repeated job,
/// or a racing edit, finds nothing to do). Closing (`Ended`, `Cancelled`)
/// stamps `ended_at`, bumps the version (voiding the sale's other scheduled
/// jobs) and moves the `released` units of its holds back to stock;
/// starting stamps `started_at` and keeps the version, so the end job
/// scheduled for it still applies.
async fn transition(
    conn: &mut PgConnection,
    id: SaleId,
    (from, to): (SaleStatus, SaleStatus),
    version: i32,
    released: i32,
) -> Result<Option<Sale>> {
    if !from.can_become(to) {
        return Err(Error::Internal(format!("sale {id}: no transition {} -> {}", from.as_str(), to.as_str())));
    }
    let closing = to.is_final();
    let row = sqlx::query_as!(
        SaleRow,
        r#"UPDATE sales SET status = $4,
                            started_at = CASE WHEN $5 THEN started_at ELSE now() END,
                            ended_at = CASE WHEN $5 THEN now() ELSE ended_at END,
                            version = version + CASE WHEN $5 THEN 1 ELSE 0 END,
                            available = available + $6, held = held - $6, updated_at = now()
           WHERE id = $1 AND status = $2 AND version = $3
           RETURNING id AS "id: SaleId", merchant_id AS "merchant_id: MerchantId",
                     product_id AS "product_id: ProductId", status AS "status: SaleStatus", price,
                     currency AS "currency: Currency", inventory, available, held, sold, starts_at, ends_at,
                     hold_seconds, per_buyer_limit, version, created_at"#,
        id as SaleId,
        from as SaleStatus,
        version,
        to as SaleStatus,
        closing,
        released,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Sale::from))
}

/// `Scheduled → Active` with its `sale.started` event, in the caller's
/// transaction; `None` (and no event) if the sale is no longer scheduled at
/// `version`. Both the start job and a claim that finds the start overdue
/// come through here.
pub async fn start(conn: &mut PgConnection, id: SaleId, version: i32) -> Result<Option<Sale>> {
    let Some(active) = transition(&mut *conn, id, (SaleStatus::Scheduled, SaleStatus::Active), version, 0).await?
    else {
        return Ok(None);
    };
    let event = DomainEvent::SaleStarted(SaleStarted {
        sale_id: id,
        product_id: active.product_id,
        inventory: active.inventory,
        price: active.price,
        starts_at: active.starts_at,
        ends_at: active.ends_at,
    });
    events::record(&mut *conn, active.merchant_id, &event).await?;
    feed::append(conn, Topic::Sale(id), &[Entry::from(&SaleFeed::Started {})]).await?;
    Ok(Some(active))
}

/// Closes `sale` (locked by the caller, to `Ended` or `Cancelled`) and
/// releases its open holds, with the closing event (`sale.ended`,
/// `sale.cancelled`); `None` (and nothing changed) if the sale has moved on
/// from the state and version the caller read.
pub async fn close(conn: &mut PgConnection, sale: &Sale, to: SaleStatus) -> Result<Option<(Sale, SaleFigures)>> {
    if !sale.status.can_become(to) || !to.is_final() {
        return Err(Error::Internal(format!("sale {}: cannot close to {}", sale.id, to.as_str())));
    }
    let released = claims::release_holds(&mut *conn, sale.id, sale.status, sale.version).await?;
    let Some(closed) = transition(&mut *conn, sale.id, (sale.status, to), sale.version, released).await? else {
        return Ok(None);
    };
    let figures = figures(&mut *conn, &closed).await?;
    let payload = SaleClosed { sale_id: closed.id, figures: figures.clone() };
    let event = match to {
        SaleStatus::Cancelled => DomainEvent::SaleCancelled(payload),
        _ => DomainEvent::SaleEnded(payload),
    };
    events::record(&mut *conn, closed.merchant_id, &event).await?;
    // The feed: the stock after the released holds, then the closing event.
    feed::sale_stock_changed(&mut *conn, closed.id, true).await?;
    let last = match to {
        SaleStatus::Cancelled => SaleFeed::Cancelled {},
        _ => SaleFeed::Ended {},
    };
    feed::append(conn, Topic::Sale(closed.id), &[Entry::from(&last)]).await?;
    Ok(Some((closed, figures)))
}

/// The closing figures of a sale.
async fn figures(conn: &mut PgConnection, sale: &Sale) -> Result<SaleFigures> {
    let counts = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE status = 'expired') AS "expired!",
                  count(*) FILTER (WHERE status = 'released') AS "released!"
           FROM claims WHERE sale_id = $1"#,
        sale.id as SaleId,
    )
    .fetch_one(conn)
    .await?;
    Ok(SaleFigures {
        sold: i64::from(sale.sold),
        expired: counts.expired,
        released: counts.released,
        revenue: Money::new(i64::from(sale.sold) * sale.price.minor(), sale.price.currency()),
    })
}

/// One active sale's stock, for the metrics scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stock {
    pub sale_id: SaleId,
    pub available: i32,
    pub held: i32,
    pub sold: i32,
}

/// The stock of the active sales (at most `limit`, by id).
pub async fn active_stock(pool: &PgPool, limit: i64) -> Result<Vec<Stock>> {
    Ok(sqlx::query_as!(
        Stock,
        r#"SELECT id AS "sale_id: SaleId", available, held, sold FROM sales
           WHERE status = $1 ORDER BY id LIMIT $2"#,
        SaleStatus::Active as SaleStatus,
        limit,
    )
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(now: DateTime<Utc>) -> RawTerms {
        RawTerms {
            price: Some(1999),
            currency: Some("usd".into()),
            inventory: Some(500),
            starts_at: Some(now + Duration::minutes(5)),
            ..RawTerms::default()
        }
    }

    #[test]
    fn defaults_are_the_products_ten_minutes_and_three_minute_holds() {
        let now = Utc::now();
        let terms = SaleTerms::parse(raw(now), now).expect("the test terms are valid");
        assert_eq!(terms.duration, Duration::minutes(10));
        assert_eq!(terms.hold, Duration::minutes(3));
        assert_eq!(terms.per_buyer_limit, 1);
    }

    #[test]
    fn bad_terms_name_their_field() {
        let now = Utc::now();
        let cases: [(&str, RawTerms); 7] = [
            ("ends_at", RawTerms { ends_at: Some(now), ..raw(now) }),
            ("inventory", RawTerms { inventory: Some(0), ..raw(now) }),
            ("inventory", RawTerms { inventory: Some(MAX_INVENTORY + 1), ..raw(now) }),
            ("price", RawTerms { price: Some(-1), ..raw(now) }),
            ("currency", RawTerms { currency: Some("abc".into()), ..raw(now) }),
            ("duration_seconds", RawTerms { duration_seconds: Some(0), ..raw(now) }),
            ("starts_at", RawTerms { starts_at: Some(now - Duration::hours(1)), ..raw(now) }),
        ];
        for (field, terms) in cases {
            assert_eq!(SaleTerms::parse(terms, now).map_err(|e| e.field), Err(field));
        }
    }
}
