//! A batch's two statements: the [`Snapshot`] it is judged against (one
//! read) and everything it leaves behind (one write, guarded by the
//! auction's version).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use super::judge::{Judgement, Snapshot};
use super::{Attempt, Limits, Placed, WINDOW_SECONDS, refusal_from_code};
use crate::auctions::increments::IncrementTable;
use crate::auctions::{Auction, AuctionRow, AuctionStatus};
use crate::error::Result;
use crate::events;
use crate::feed::{self, Topic};
use crate::ids::{AuctionId, BidId, BuyerId, MerchantId, ProductId};
use crate::money::Currency;

#[derive(Debug, Deserialize)]
struct Account {
    id: Uuid,
    merchant_id: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
struct Recent {
    bidder: Uuid,
    count: i64,
    oldest: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
struct Earlier {
    id: Uuid,
    sequence: i64,
    bidder_id: Uuid,
    amount: i64,
    status: String,
    reason: Option<String>,
    current_price: i64,
    min_next_bid: i64,
    is_leading: bool,
    idempotency_key: String,
    created_at: DateTime<Utc>,
}

/// The auction, its trail's head, the database clock and what the rules read
/// about the batch's bidders, in ONE statement (one snapshot). Each bidder's
/// window is read by its own index range (`auction_bids_by_bidder`), newest
/// first and at most `bids_per_minute` rows: enough to refuse, and its last
/// row is the one whose leaving the window lifts the limit. `None` for an
/// unknown auction. Under the auction's lock (taken earlier in the same
/// transaction) the clock is read after the lock; without it, the write's
/// version guard makes the snapshot good or the batch is judged again.
pub async fn snapshot(
    conn: &mut PgConnection,
    auction_id: AuctionId,
    attempts: &[Attempt],
    limits: Limits,
) -> Result<Option<Snapshot>> {
    let bidders: Vec<Uuid> = {
        let mut seen = HashSet::new();
        attempts.iter().map(|a| a.bidder).filter(|b| seen.insert(*b)).map(|b| b.uuid()).collect()
    };
    let (key_bidders, keys): (Vec<Uuid>, Vec<String>) =
        attempts.iter().filter_map(|a| Some((a.bidder.uuid(), a.idempotency_key.clone()?))).unzip();
    let Some(row) = sqlx::query!(
        r#"WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS now)
           SELECT a.id AS "id: AuctionId", a.merchant_id AS "merchant_id: MerchantId",
                  a.product_id AS "product_id: ProductId", a.status AS "status: AuctionStatus",
                  a.currency AS "currency: Currency", a.starting_price, a.reserve_price, a.current_price,
                  a.leader_buyer_id AS "leader_buyer_id: BuyerId", a.leader_max, a.leader_sequence, a.bid_count,
                  a.starts_at, a.ends_at, a.soft_close_seconds, a.extension_seconds, a.max_extensions,
                  a.extensions, a.payment_window_seconds, a.increments AS "increments: Json<IncrementTable>",
                  a.version, a.created_at, a.ended_at, a.last_sequence, a.trail_hash,
                  clock.now AS "now!",
                  (SELECT coalesce(json_agg(json_build_object('id', b.id, 'merchant_id', b.merchant_id)), '[]')
                   FROM buyers b WHERE b.id = ANY($2)) AS "accounts!: Json<Vec<Account>>",
                  (SELECT coalesce(json_agg(json_build_object('bidder', b.bidder, 'count', r.count,
                                                              'oldest', r.oldest)), '[]')
                   FROM unnest($2::uuid[]) AS b (bidder),
                        LATERAL (SELECT count(*) AS count, min(w.created_at) AS oldest
                                 FROM (SELECT x.created_at FROM auction_bids x
                                       WHERE x.auction_id = a.id AND x.bidder_id = b.bidder
                                         AND x.created_at > clock.now - make_interval(secs => $4)
                                         AND x.reason IS DISTINCT FROM 'rate_limited'
                                       ORDER BY x.created_at DESC LIMIT $5) w) r
                   WHERE r.count > 0) AS "recent!: Json<Vec<Recent>>",
                  (SELECT coalesce(json_agg(json_build_object(
                              'id', e.id, 'sequence', e.sequence, 'bidder_id', e.bidder_id, 'amount', e.amount,
                              'status', e.status, 'reason', e.reason, 'current_price', e.current_price,
                              'min_next_bid', e.min_next_bid, 'is_leading', e.is_leading,
                              'idempotency_key', e.idempotency_key, 'created_at', e.created_at)), '[]')
                   FROM unnest($6::uuid[], $3::text[]) AS k (bidder, key)
                   JOIN auction_bids e ON e.auction_id = a.id AND e.bidder_id = k.bidder
                                      AND e.idempotency_key = k.key
                                      AND e.reason IS DISTINCT FROM 'rate_limited') AS "earlier!: Json<Vec<Earlier>>"
           FROM auctions a, clock WHERE a.id = $1"#,
        auction_id as AuctionId,
        &bidders[..],
        &keys[..],
        WINDOW_SECONDS as f64,
        i64::from(limits.bids_per_minute),
        &key_bidders[..],
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let auction = Auction::try_from(AuctionRow {
        id: row.id,
        merchant_id: row.merchant_id,
        product_id: row.product_id,
        status: row.status,
        currency: row.currency,
        starting_price: row.starting_price,
        reserve_price: row.reserve_price,
        current_price: row.current_price,
        leader_buyer_id: row.leader_buyer_id,
        leader_max: row.leader_max,
        leader_sequence: row.leader_sequence,
        bid_count: row.bid_count,
        starts_at: row.starts_at,
        ends_at: row.ends_at,
        soft_close_seconds: row.soft_close_seconds,
        extension_seconds: row.extension_seconds,
        max_extensions: row.max_extensions,
        extensions: row.extensions,
        payment_window_seconds: row.payment_window_seconds,
        increments: row.increments,
        version: row.version,
        created_at: row.created_at,
        ended_at: row.ended_at,
    })?;
    let accounts = row
        .accounts
        .0
        .into_iter()
        .map(|a| (BuyerId::from_uuid(a.id), a.merchant_id.map(MerchantId::from_uuid)))
        .collect();
    let recent = row
        .recent
        .0
        .into_iter()
        .map(|r| (BuyerId::from_uuid(r.bidder), (u32::try_from(r.count).unwrap_or(u32::MAX), r.oldest)))
        .collect();
    let earlier = row
        .earlier
        .0
        .into_iter()
        .filter_map(|e| {
            let outcome =
                if e.status == "accepted" { Ok(e.is_leading) } else { Err(refusal_from_code(e.reason.as_deref()?)?) };
            let placed = Placed {
                id: BidId::from_uuid(e.id),
                sequence: u64::try_from(e.sequence).unwrap_or_default(),
                amount: e.amount,
                outcome,
                current_price: e.current_price,
                min_next_bid: e.min_next_bid,
                ends_at: auction.ends_at,
                created_at: e.created_at,
                retry_after: None,
                replayed: true,
            };
            Some(((BuyerId::from_uuid(e.bidder_id), e.idempotency_key), placed))
        })
        .collect::<HashMap<_, _>>();
    Ok(Some(Snapshot {
        auction,
        last_sequence: row.last_sequence,
        trail_hash: row.trail_hash,
        now: row.now,
        accounts,
        recent,
        earlier,
    }))
}

/// Stores a judged batch in ONE statement: the auction's new state (only if
/// it is still at the snapshot's version), every attempt, the outbid and
/// extension events, the feed's entries and their notification. `false`
/// (and nothing written) if the auction moved on since the snapshot.
pub async fn write(conn: &mut PgConnection, snapshot: &Snapshot, j: &Judgement) -> Result<bool> {
    let auction = &snapshot.auction;
    let n = j.judged.len();
    let (mut ids, mut sequences, mut bidders) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut amounts, mut maxima, mut statuses) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut reasons, mut prices, mut minima) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut leading, mut keys, mut hashes) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for a in &j.judged {
        ids.push(a.id.uuid());
        sequences.push(i64::try_from(a.fields.sequence).unwrap_or(i64::MAX));
        bidders.push(a.fields.bidder.uuid());
        amounts.push(a.fields.amount);
        maxima.push(a.fields.max_amount);
        statuses.push(a.fields.status.as_str().to_owned());
        reasons.push(a.fields.reason.clone());
        prices.push(a.current_price);
        minima.push(a.min_next_bid);
        leading.push(a.outcome == Ok(true));
        keys.push(a.fields.idempotency_key.clone());
        hashes.push(a.hash.to_vec());
    }
    let domain_events: Vec<events::DomainEvent> = j
        .outbid
        .iter()
        .cloned()
        .map(events::DomainEvent::BidOutbid)
        .chain(j.extended.iter().cloned().map(events::DomainEvent::AuctionExtended))
        .collect();
    let ev = events::Rows::of(&domain_events)?;
    let feed_names: Vec<String> = j.feed.iter().map(|e| e.event.clone()).collect();
    let feed_data: Vec<serde_json::Value> = j.feed.iter().map(|e| e.data.clone()).collect();
    let leader = j.book.leader();
    let applied = sqlx::query!(
        r#"WITH upd AS (
               UPDATE auctions
               SET current_price = $3, leader_buyer_id = $4, leader_max = $5, leader_sequence = $6,
                   bid_count = $7, last_sequence = $8, trail_hash = $9, ends_at = $10, extensions = $11,
                   version = version + 1
               WHERE id = $1 AND version = $2
               RETURNING id),
           attempts AS (
               INSERT INTO auction_bids (id, auction_id, sequence, bidder_id, amount, max_amount, status, reason,
                                         current_price, min_next_bid, is_leading, idempotency_key, created_at, hash)
               SELECT t.id, upd.id, t.sequence, t.bidder, t.amount, t.max_amount, t.status, t.reason,
                      t.price, t.min_next, t.lead, t.key, $12, t.hash
               FROM upd, UNNEST($13::uuid[], $14::int8[], $15::uuid[], $16::int8[], $17::int8[], $18::text[],
                                $19::text[], $20::int8[], $21::int8[], $22::bool[], $23::text[], $24::bytea[])
                    AS t(id, sequence, bidder, amount, max_amount, status, reason, price, min_next, lead, key, hash)),
           recorded AS (
               INSERT INTO events (id, merchant_id, type, version, subject_id, dedupe_key, payload)
               SELECT e.id, $25, e.type, $26, e.subject, e.dedupe_key, e.payload
               FROM upd, UNNEST($27::uuid[], $28::text[], $29::text[], $30::text[], $31::jsonb[])
                    AS e(id, type, subject, dedupe_key, payload)
               ON CONFLICT (dedupe_key) DO NOTHING),
           base AS (SELECT coalesce(max(seq), 0) AS seq FROM feed_events WHERE topic = $32),
           fed AS (
               INSERT INTO feed_events (topic, seq, event, data)
               SELECT $32, base.seq + f.ord, f.event, f.data
               FROM upd, base, UNNEST($33::text[], $34::jsonb[]) WITH ORDINALITY AS f(event, data, ord)
               RETURNING seq)
           SELECT (SELECT count(*) FROM upd) = 1 AS "applied!",
                  (SELECT pg_notify($35, $32 || ' ' || max(seq)) FROM fed HAVING count(*) > 0) AS notified"#,
        auction.id as AuctionId,
        auction.version,
        j.book.current_price(),
        leader.map(|l| l.bidder) as Option<BuyerId>,
        leader.map(|l| l.max),
        leader.map(|l| i64::try_from(l.since).unwrap_or(i64::MAX)),
        i32::try_from(j.book.bid_count()).unwrap_or(i32::MAX),
        i64::try_from(j.last_sequence).unwrap_or(i64::MAX),
        &j.trail_hash[..],
        j.ends_at,
        j.extensions,
        snapshot.now,
        &ids[..],
        &sequences[..],
        &bidders[..],
        &amounts[..],
        &maxima[..],
        &statuses[..],
        &reasons[..] as &[Option<String>],
        &prices[..],
        &minima[..],
        &leading[..],
        &keys[..] as &[Option<String>],
        &hashes[..],
        auction.merchant_id as MerchantId,
        events::VERSION,
        &ev.ids[..],
        &ev.kinds[..],
        &ev.subjects[..],
        &ev.dedupe_keys[..],
        &ev.payloads[..],
        Topic::Auction(auction.id).to_string(),
        &feed_names[..],
        &feed_data[..],
        feed::CHANNEL,
    )
    .fetch_one(conn)
    .await?
    .applied;
    Ok(applied)
}
