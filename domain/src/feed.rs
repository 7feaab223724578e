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
