//! The live feed's stored events: what `GET /v1/auctions/{id}/events` and
//! `GET /v1/sales/{id}/events` stream, kept so a watcher that reconnects with
//! `Last-Event-ID` resumes without a gap.
//!
//! A writer appends in the same transaction as the change it reports, while
//! holding the subject's row lock (the auction or sale row): that lock is what
//! numbers one topic's events 1, 2, 3… without gaps or duplicates. Each append
//! also `NOTIFY`s [`CHANNEL`] with `"<topic> <last seq>"`, delivered at commit
//! (never for a rolled-back change); a process listens once and reads the rows
//! after the last one each of its watchers has seen.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::error::{Error, Result};
use crate::ids::{AuctionId, OrderId, SaleId};
use crate::sales::SaleStatus;

/// The `LISTEN` channel every append notifies.
pub const CHANNEL: &str = "gavel_feed";

/// Whose feed an event is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Auction(AuctionId),
    Sale(SaleId),
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auction(id) => id.fmt(f),
            Self::Sale(id) => id.fmt(f),
        }
    }
}

impl std::str::FromStr for Topic {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if let Ok(id) = s.parse::<AuctionId>() {
            return Ok(Self::Auction(id));
        }
        s.parse::<SaleId>().map(Self::Sale).map_err(|_| Error::Internal(format!("not a feed topic: {s:?}")))
    }
}

/// An auction's feed events (API.md, "Live feed"). Prices are minor units in
/// the auction's currency; `leader` is masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum AuctionFeed {
    /// An accepted bid changed the visible state.
    Bid {
        sequence: u64,
        current_price: i64,
        min_next_bid: i64,
        leader: Option<String>,
        bid_count: u32,
        ends_at: DateTime<Utc>,
    },
    /// Soft close moved the end.
    Extended {
        ends_at: DateTime<Utc>,
        extensions: i32,
    },
    /// The auction closed with this result.
    Ended {
        result: AuctionResult,
    },
    Cancelled {},
}

/// How an auction closed, as its resource and its feed show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuctionResult {
    /// The winner, masked; null without one (no bids, or reserve not met).
    pub winner: Option<String>,
    pub final_price: i64,
    pub order_id: Option<OrderId>,
    pub ended_at: DateTime<Utc>,
    /// The head of the bid trail's hash chain (hex).
    pub trail_hash: String,
}

/// A sale's feed events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum SaleFeed {
    /// Stock after a change (coalesced: at most about ten a second).
    Stock {
        available: i64,
        held: i64,
        sold: i64,
    },
    SoldOut {},
    Started {},
    Ended {},
    Cancelled {},
}

/// One event ready to store: its SSE `event:` name and JSON `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub event: String,
    pub data: serde_json::Value,
}

fn entry(value: impl Serialize) -> Entry {
    let mut whole = serde_json::to_value(value).unwrap_or_default();
    let event = whole["event"].as_str().unwrap_or_default().to_owned();
    let data = whole.get_mut("data").map(serde_json::Value::take).unwrap_or_default();
    Entry { event, data }
}

impl From<&AuctionFeed> for Entry {
    fn from(event: &AuctionFeed) -> Self {
        entry(event)
    }
}

impl From<&SaleFeed> for Entry {
    fn from(event: &SaleFeed) -> Self {
        entry(event)
    }
}

/// A stored event as a watcher gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub seq: i64,
    pub event: String,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Appends `entries` to `topic`'s feed in order and notifies at commit;
/// returns the last one's `seq` (`None` when `entries` is empty). The caller
/// holds the subject's row lock in this transaction.
pub async fn append(conn: &mut PgConnection, topic: Topic, entries: &[Entry]) -> Result<Option<i64>> {
    if entries.is_empty() {
        return Ok(None);
    }
    let topic = topic.to_string();
    let names: Vec<String> = entries.iter().map(|e| e.event.clone()).collect();
    let data: Vec<serde_json::Value> = entries.iter().map(|e| e.data.clone()).collect();
    let last = sqlx::query_scalar!(
        r#"WITH base AS (SELECT coalesce(max(seq), 0) AS seq FROM feed_events WHERE topic = $1),
           appended AS (
               INSERT INTO feed_events (topic, seq, event, data)
               SELECT $1, base.seq + e.ord, e.event, e.data
               FROM base, unnest($2::text[], $3::jsonb[]) WITH ORDINALITY AS e (event, data, ord)
               RETURNING seq
           ),
           last AS (SELECT max(seq) AS seq FROM appended)
           SELECT last.seq AS "seq!" FROM last, LATERAL (SELECT pg_notify($4, $1 || ' ' || last.seq)::text) AS n"#,
        topic,
        &names,
        &data,
        CHANNEL,
    )
    .fetch_one(conn)
    .await?;
    Ok(Some(last))
}

/// The events of `topic` after `after` (oldest first, at most `limit`).
pub async fn read_after(pool: &PgPool, topic: Topic, after: i64, limit: i64) -> Result<Vec<Stored>> {
    let rows = sqlx::query_as!(
        Stored,
        "SELECT seq, event, data, created_at FROM feed_events
         WHERE topic = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        topic.to_string(),
        after,
        limit,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// The newest `seq` of `topic` (0 when it has none).
pub async fn last_seq(pool: &PgPool, topic: Topic) -> Result<i64> {
    let last = sqlx::query_scalar!(
        r#"SELECT coalesce(max(seq), 0) AS "seq!" FROM feed_events WHERE topic = $1"#,
        topic.to_string()
    )
    .fetch_one(pool)
    .await?;
    Ok(last)
}

/// The shortest interval between two `stock` events of one sale: stock is
/// published at most about ten times a second.
pub const STOCK_EVERY_MS: i64 = 100;

/// A sale's stock changed in the caller's transaction, which holds the sale's
/// row lock and has already written the counters. Appends a `stock` event if
/// the last one is at least [`STOCK_EVERY_MS`] old (or `force`); otherwise
/// marks the sale (`feed_stock_dirty`) so the workers' feed tick publishes
/// the trailing state ([`flush_stock`]). The claim hot path does the same
/// inside its own counter update instead (no extra statement per batch).
pub async fn sale_stock_changed(conn: &mut PgConnection, sale: SaleId, force: bool) -> Result<()> {
    let row = sqlx::query!(
        r#"UPDATE sales s
           SET feed_stock_at = CASE WHEN p.publish THEN now() ELSE s.feed_stock_at END,
               feed_stock_dirty = NOT p.publish
           FROM (SELECT $2 OR feed_stock_at IS NULL
                        OR feed_stock_at <= now() - make_interval(secs => $3::float8 / 1000) AS publish
                 FROM sales WHERE id = $1) AS p
           WHERE s.id = $1
           RETURNING p.publish AS "publish!", s.available, s.held, s.sold"#,
        sale as SaleId,
        force,
        STOCK_EVERY_MS as f64,
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = row.filter(|r| r.publish) {
        let stock = SaleFeed::Stock {
            available: i64::from(row.available),
            held: i64::from(row.held),
            sold: i64::from(row.sold),
        };
        append(conn, Topic::Sale(sale), &[Entry::from(&stock)]).await?;
    }
    Ok(())
}

/// Publishes the trailing stock of sales whose last change was held back by
/// the 100 ms rule, once that time has passed; returns how many. Each sale
/// is its own short transaction (the row lock is taken by the `UPDATE`).
pub async fn flush_stock(pool: &PgPool, limit: i64) -> Result<usize> {
    let due = sqlx::query_scalar!(
        r#"SELECT id AS "id: SaleId" FROM sales
           WHERE feed_stock_dirty AND feed_stock_at <= now() - make_interval(secs => $1::float8 / 1000)
           LIMIT $2"#,
        STOCK_EVERY_MS as f64,
        limit,
    )
    .fetch_all(pool)
    .await?;
    let mut flushed = 0;
    for sale in due {
        let mut tx = pool.begin().await?;
        let row = sqlx::query!(
            "UPDATE sales SET feed_stock_dirty = false, feed_stock_at = now()
             WHERE id = $1 AND feed_stock_dirty RETURNING available, held, sold",
            sale as SaleId,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let stock = SaleFeed::Stock {
                available: i64::from(row.available),
                held: i64::from(row.held),
                sold: i64::from(row.sold),
            };
            append(&mut tx, Topic::Sale(sale), &[Entry::from(&stock)]).await?;
            flushed += 1;
        }
        tx.commit().await?;
    }
    Ok(flushed)
}

/// Deletes the feeds of subjects that closed (an `ended` or `cancelled`
/// event) more than `days` ago, at most `topics` feeds per call; returns how
/// many events went. A watcher resuming after that gets a fresh snapshot
/// instead (its `Last-Event-ID` is past the end of an empty feed).
pub async fn prune(pool: &PgPool, days: i32, topics: i64) -> Result<u64> {
    let deleted = sqlx::query!(
        "DELETE FROM feed_events f
         USING (SELECT DISTINCT topic FROM feed_events
                WHERE event IN ('ended', 'cancelled') AND created_at < now() - make_interval(days => $1)
                LIMIT $2) AS closed
         WHERE f.topic = closed.topic",
        days,
        topics,
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(deleted)
}

/// A sale as its feed's `snapshot` shows it, with the feed's last `seq` read
/// in the same statement (so the snapshot is exactly the events up to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleSnapshot {
    pub status: SaleStatus,
    pub available: i32,
    pub held: i32,
    pub sold: i32,
    pub seq: i64,
}

/// `None` for an unknown sale.
pub async fn sale_snapshot(pool: &PgPool, sale: SaleId) -> Result<Option<SaleSnapshot>> {
    Ok(sqlx::query_as!(
        SaleSnapshot,
        r#"SELECT status AS "status: SaleStatus", available, held, sold,
                  (SELECT coalesce(max(seq), 0) FROM feed_events WHERE topic = $2) AS "seq!"
           FROM sales WHERE id = $1"#,
        sale as SaleId,
        Topic::Sale(sale).to_string(),
    )
    .fetch_optional(pool)
    .await?)
}

/// Parses a `NOTIFY` payload (`"<topic> <seq>"`).
pub fn parse_notification(payload: &str) -> Option<(Topic, i64)> {
    let (topic, seq) = payload.split_once(' ')?;
    Some((topic.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_the_event_name_and_its_data() {
        let e = Entry::from(&AuctionFeed::Extended { ends_at: DateTime::UNIX_EPOCH, extensions: 2 });
        assert_eq!(e.event, "extended");
        assert_eq!(e.data["extensions"], 2);
        let e = Entry::from(&SaleFeed::SoldOut {});
        assert_eq!((e.event.as_str(), e.data.clone()), ("sold_out", serde_json::json!({})));
    }

    #[test]
    fn a_notification_names_its_topic_and_seq() {
        let sale = SaleId::new();
        assert_eq!(parse_notification(&format!("{sale} 7")), Some((Topic::Sale(sale), 7)));
        let auction = AuctionId::new();
        assert_eq!(parse_notification(&format!("{auction} 12")), Some((Topic::Auction(auction), 12)));
        assert_eq!(parse_notification("nonsense"), None);
        assert_eq!(parse_notification(&format!("{sale} x")), None);
    }
}
