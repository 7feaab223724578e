//! Flash sales: their states, their validated shape, and the repository
//! functions that create, read and change them.
//!
//! Every state change is a guarded `UPDATE … WHERE status = … AND version = …`,
//! so a late or repeated job, or a racing merchant edit, finds nothing to do
//! instead of doing it twice.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::error::{Error, Invalid, Result};
use crate::events;
use crate::ids::{MerchantId, ProductId, SaleId};
use crate::money::{Currency, Price};
use crate::status::status_enum;

status_enum!(
    /// Where a sale is in its life. `Scheduled → Active → Ended`, and
    /// `Scheduled | Active → Cancelled`; nothing leaves `Ended` or `Cancelled`.
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
}

/// A sale as stored and as shown to its merchant.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Sale {
    pub id: SaleId,
    #[serde(skip)]
    pub merchant_id: MerchantId,
    pub product_id: ProductId,
    #[sqlx(try_from = "String")]
    pub status: SaleStatus,
    pub price: i64,
    pub currency: String,
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

macro_rules! sale_columns {
    () => {
        "id, merchant_id, product_id, status, price, currency, inventory, available, \
     held, sold, starts_at, ends_at, hold_seconds, per_buyer_limit, version, created_at"
    };
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
const MAX_DURATION_SECONDS: i64 = 7 * 24 * 3600;
const MAX_HOLD_SECONDS: i64 = 3600;
/// A start this far in the past is taken as "now" (clock skew); further is refused.
const START_GRACE_SECONDS: i64 = 60;

fn bounded(field: &'static str, value: i64, min: i64, max: i64) -> Result<i64, Invalid> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(Invalid::new(field, format!("must be between {min} and {max}")))
    }
}

fn required<T>(field: &'static str, value: Option<T>) -> Result<T, Invalid> {
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
            price: patch.price.or(Some(sale.price)),
            currency: patch.currency.or_else(|| Some(sale.currency.clone())),
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
    let sql = concat!(
        "INSERT INTO sales (id, merchant_id, product_id, status, price, currency, inventory, available,
                            starts_at, ends_at, hold_seconds, per_buyer_limit)
         VALUES ($1, $2, $3, 'scheduled', $4, $5, $6, $6, $7, $8, $9, $10)
         RETURNING ",
        sale_columns!()
    );
    let sale = sqlx::query_as(sql)
        .bind(SaleId::new())
        .bind(merchant)
        .bind(product)
        .bind(terms.price.minor())
        .bind(terms.currency.code())
        .bind(terms.inventory)
        .bind(terms.starts_at)
        .bind(terms.ends_at())
        .bind(terms.hold.num_seconds() as i32)
        .bind(terms.per_buyer_limit)
        .fetch_one(conn)
        .await?;
    Ok(sale)
}

/// A merchant's own sale; another merchant's sale is "not found".
pub async fn get(pool: &PgPool, merchant: MerchantId, id: SaleId) -> Result<Sale> {
    let sql = concat!("SELECT ", sale_columns!(), " FROM sales WHERE id = $1 AND merchant_id = $2");
    sqlx::query_as(sql).bind(id).bind(merchant).fetch_optional(pool).await?.ok_or(Error::NotFound("sale"))
}

/// Any sale by id, locked for the rest of the transaction (for jobs).
pub async fn lock(conn: &mut PgConnection, id: SaleId) -> Result<Option<Sale>> {
    let sql = concat!("SELECT ", sale_columns!(), " FROM sales WHERE id = $1 FOR NO KEY UPDATE");
    Ok(sqlx::query_as(sql).bind(id).fetch_optional(conn).await?)
}

/// A merchant's sale, locked, for an edit.
pub async fn lock_own(conn: &mut PgConnection, merchant: MerchantId, id: SaleId) -> Result<Sale> {
    let sql = concat!("SELECT ", sale_columns!(), " FROM sales WHERE id = $1 AND merchant_id = $2 FOR NO KEY UPDATE");
    sqlx::query_as(sql).bind(id).bind(merchant).fetch_optional(conn).await?.ok_or(Error::NotFound("sale"))
}

/// One page of a merchant's sales, newest first.
pub async fn list(
    pool: &PgPool,
    merchant: MerchantId,
    limit: i64,
    starting_after: Option<SaleId>,
) -> Result<Vec<Sale>> {
    let sql = concat!(
        "SELECT ",
        sale_columns!(),
        " FROM sales
         WHERE merchant_id = $1 AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    );
    Ok(sqlx::query_as(sql).bind(merchant).bind(starting_after).bind(limit).fetch_all(pool).await?)
}

/// Replaces the terms of a scheduled sale and bumps its version, which voids
/// the lifecycle jobs scheduled for the old version.
pub async fn update_terms(conn: &mut PgConnection, sale: &Sale, terms: &SaleTerms) -> Result<Sale> {
    if sale.status != SaleStatus::Scheduled {
        return Err(Error::SaleLocked { status: sale.status.as_str() });
    }
    let sql = concat!(
        "UPDATE sales SET price = $3, currency = $4, inventory = $5, available = $5, starts_at = $6,
                          ends_at = $7, hold_seconds = $8, per_buyer_limit = $9,
                          version = version + 1, updated_at = now()
         WHERE id = $1 AND version = $2 AND status = 'scheduled'
         RETURNING ",
        sale_columns!()
    );
    sqlx::query_as(sql)
        .bind(sale.id)
        .bind(sale.version)
        .bind(terms.price.minor())
        .bind(terms.currency.code())
        .bind(terms.inventory)
        .bind(terms.starts_at)
        .bind(terms.ends_at())
        .bind(terms.hold.num_seconds() as i32)
        .bind(terms.per_buyer_limit)
        .fetch_optional(conn)
        .await?
        .ok_or(Error::VersionMismatch { expected: sale.version, current: sale.version + 1 })
}

/// `Scheduled → Active`, if the sale is still scheduled at `version`.
pub async fn activate(conn: &mut PgConnection, id: SaleId, version: i32) -> Result<Option<Sale>> {
    let sql = concat!(
        "UPDATE sales SET status = 'active', started_at = now(), updated_at = now()
         WHERE id = $1 AND version = $2 AND status = 'scheduled'
         RETURNING ",
        sale_columns!()
    );
    Ok(sqlx::query_as(sql).bind(id).bind(version).fetch_optional(conn).await?)
}

/// `Scheduled → Active` with its `sale.started` event, in the caller's
/// transaction; `None` (and no event) if the guard no longer holds. Both the
/// start job and a claim that finds the start overdue come through here.
pub async fn start(conn: &mut PgConnection, id: SaleId, version: i32) -> Result<Option<Sale>> {
    let Some(active) = activate(&mut *conn, id, version).await? else { return Ok(None) };
    events::record(
        conn,
        active.merchant_id,
        events::kinds::SALE_STARTED,
        &id.to_string(),
        &format!("{}:{id}", events::kinds::SALE_STARTED),
        serde_json::json!({
            "sale_id": id, "product_id": active.product_id, "inventory": active.inventory,
            "price": active.price, "currency": active.currency, "starts_at": active.starts_at,
            "ends_at": active.ends_at,
        }),
    )
    .await?;
    Ok(Some(active))
}

/// Closes a sale (to `Ended` or `Cancelled`) and releases its open holds in the
/// same statement pair; `None` if the guard no longer holds.
pub async fn close(
    conn: &mut PgConnection,
    id: SaleId,
    guard_version: Option<i32>,
    to: SaleStatus,
) -> Result<Option<Sale>> {
    let released: i64 = sqlx::query_scalar(
        "WITH released AS (
             UPDATE claims SET status = 'released', closed_at = now()
             WHERE sale_id = $1 AND status = 'held'
               AND EXISTS (SELECT 1 FROM sales s WHERE s.id = $1 AND s.status IN ('scheduled', 'active')
                           AND ($2::int IS NULL OR s.version = $2))
             RETURNING 1)
         SELECT count(*) FROM released",
    )
    .bind(id)
    .bind(guard_version)
    .fetch_one(&mut *conn)
    .await?;
    let sql = concat!(
        "UPDATE sales SET status = $3, ended_at = now(), updated_at = now(), version = version + 1,
                          available = available + $4, held = held - $4
         WHERE id = $1 AND status IN ('scheduled', 'active') AND ($2::int IS NULL OR version = $2)
         RETURNING ",
        sale_columns!()
    );
    Ok(sqlx::query_as(sql)
        .bind(id)
        .bind(guard_version)
        .bind(to.as_str())
        .bind(released as i32)
        .fetch_optional(conn)
        .await?)
}

/// The closing figures of a sale, for `sale.ended`.
#[derive(Debug, Clone, Serialize)]
pub struct SaleFigures {
    pub sold: i64,
    pub expired: i64,
    pub released: i64,
    pub revenue: i64,
    pub currency: String,
}

pub async fn figures(conn: &mut PgConnection, sale: &Sale) -> Result<SaleFigures> {
    let (expired, released): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'expired'), count(*) FILTER (WHERE status = 'released')
         FROM claims WHERE sale_id = $1",
    )
    .bind(sale.id)
    .fetch_one(conn)
    .await?;
    Ok(SaleFigures {
        sold: i64::from(sale.sold),
        expired,
        released,
        revenue: i64::from(sale.sold) * sale.price,
        currency: sale.currency.clone(),
    })
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
        let terms = SaleTerms::parse(raw(now), now).unwrap_or_else(|e| panic!("{e}"));
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
