//! Bidding over real HTTP: a race of 200 bidders over two processes replayed
//! through a plain reference of PRODUCT.md's rule, eBay's proxy cases, soft
//! close, the velocity limit, bad input, the trail's masking, idempotent
//! replays and a tampered trail.

use std::time::Duration;

use futures::StreamExt;
use gavel::Role;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{Merchant, Response, TestApp, client, eventually, fresh_database, in_secs, send, uuid_of};

/// A buyer signed up over the API.
#[derive(Debug, Clone)]
pub(crate) struct Bidder {
    pub(crate) id: String,
    pub(crate) token: String,
}

pub(crate) async fn bidders(app: &TestApp, n: usize) -> Vec<Bidder> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let email = format!("bidder{i}-{}@example.com", uuid::Uuid::new_v4().simple());
            let r = app.post("/v1/buyers", None, json!({"email": email, "password": "correct horse"})).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
            Bidder {
                id: r.body["id"].as_str().expect("an id").to_owned(),
                token: r.body["token"].as_str().expect("a token").to_owned(),
            }
        })
        .buffer_unordered(32)
        .collect()
        .await
}

/// An auction open for bids now (the first bid starts it), with `overrides`.
pub(crate) async fn open_auction(app: &TestApp, merchant: &Merchant, overrides: Value) -> String {
    let product = app.product(merchant).await;
    let mut body = json!({
        "product_id": product, "currency": "usd", "starting_price": 1000,
        "starts_at": in_secs(0), "ends_at": in_secs(3600),
    });
    if let (Some(b), Some(o)) = (body.as_object_mut(), overrides.as_object()) {
        b.extend(o.clone());
    }
    let r = app.post("/v1/auctions", Some(&merchant.key), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    r.body["id"].as_str().expect("an auction id").to_owned()
}

pub(crate) async fn bid(app: &TestApp, auction: &str, bidder: &Bidder, body: Value) -> Response {
    app.post(&format!("/v1/auctions/{auction}/bids"), Some(&bidder.token), body).await
}

async fn attempts(pool: &PgPool, auction: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM auction_bids WHERE auction_id = $1")
        .bind(uuid_of(auction))
        .fetch_one(pool)
        .await
        .expect("the test's SQL runs")
}

async fn events_of(pool: &PgPool, kind: &str, auction: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE type = $1 AND payload::text LIKE '%' || $2 || '%'")
        .bind(kind)
        .bind(auction)
        .fetch_one(pool)
        .await
        .expect("the test's SQL runs")
}

/// eBay's default increments (PRODUCT.md), in cents, written apart from the code.
fn inc(price: i64) -> i64 {
    match price {
        ..100 => 5,
        100..500 => 25,
        500..2_500 => 50,
        2_500..10_000 => 100,
        10_000..25_000 => 250,
        25_000..50_000 => 500,
        50_000..100_000 => 1_000,
        100_000..250_000 => 2_500,
        250_000..500_000 => 5_000,
        _ => 10_000,
    }
}

/// PRODUCT.md's rule as plain code, without a reserve: the reference the stored trail is replayed through.
#[derive(Debug, Default)]
struct Reference {
    price: i64,
    leader: Option<(uuid::Uuid, i64)>,
}

impl Reference {
    fn min_next(&self) -> i64 {
        if self.leader.is_some() { self.price + inc(self.price) } else { self.price }
    }

    /// `Some(leading)` if accepted.
    fn bid(&mut self, bidder: uuid::Uuid, amount: i64, max: i64) -> Option<bool> {
        if amount < self.min_next() || max < amount {
            return None;
        }
        match self.leader {
            None => {
                self.leader = Some((bidder, max));
                self.price = amount;
                Some(true)
            }
            Some((l, lmax)) if l == bidder => {
                if max <= lmax {
                    return None;
                }
                self.leader = Some((l, max));
                Some(true)
            }
            Some((_, lmax)) if max > lmax => {
                self.price = amount.max(max.min(lmax + inc(lmax)));
                self.leader = Some((bidder, max));
                Some(true)
            }
            Some((_, lmax)) => {
                self.price = amount.max(lmax.min(max + inc(max)));
                Some(false)
            }
        }
    }
}

#[derive(sqlx::FromRow, Debug)]
struct Row {
    sequence: i64,
    bidder_id: uuid::Uuid,
    amount: i64,
    max_amount: i64,
    status: String,
    reason: Option<String>,
    current_price: i64,
    min_next_bid: i64,
    is_leading: bool,
}

#[tokio::test]
async fn two_hundred_bidders_on_two_processes_match_a_sequential_replay() {
    let db = fresh_database().await;
    let a = TestApp::spawn_on(&db, &[Role::Api], |_| {}).await;
    let b = TestApp::spawn_on(&db, &[Role::Api], |_| {}).await;
    let merchant = a.merchant().await;
    let auction = open_auction(&a, &merchant, json!({})).await;
    let people = bidders(&a, 200).await;
    // Each bidder bids 1–3 times with random amounts and maxima, half on each process.
    let mut plan = Vec::new();
    let mut rng = rand::rng();
    for (i, p) in people.iter().enumerate() {
        for _ in 0..rng.random_range(1..=3) {
            let amount: i64 = rng.random_range(900..40_000);
            let body = if rng.random_bool(0.5) {
                json!({"amount": amount, "max_amount": amount + rng.random_range(0..20_000)})
            } else {
                json!({"amount": amount})
            };
            plan.push((i % 2 == 0, p.clone(), body));
        }
    }
    let sent = plan.len() as i64;
    let answers: Vec<Response> = futures::stream::iter(plan)
        .map(|(on_a, p, body)| {
            let (a, b, auction) = (&a, &b, &auction);
            async move { bid(if on_a { a } else { b }, auction, &p, body).await }
        })
        .buffer_unordered(200)
        .collect()
        .await;
    for r in &answers {
        assert!(
            r.status == StatusCode::CREATED || (r.is_problem() && r.code() == "bid_too_low"),
            "every answer is an acceptance or bid_too_low: {} {}",
            r.status,
            r.raw
        );
        assert!(r.body["id"].is_string() || r.body["bid_id"].is_string(), "every answer names its attempt");
    }
    assert_eq!(attempts(&a.pool, &auction).await, sent, "attempts stored = requests sent");

    let rows: Vec<Row> = sqlx::query_as(
        "SELECT sequence, bidder_id, amount, max_amount, status, reason, current_price, min_next_bid, is_leading
         FROM auction_bids WHERE auction_id = $1 ORDER BY sequence",
    )
    .bind(uuid_of(&auction))
    .fetch_all(&a.pool)
    .await
    .expect("read the trail");
    let mut reference = Reference { price: 1000, leader: None };
    for (n, row) in rows.iter().enumerate() {
        assert_eq!(row.sequence, n as i64 + 1, "sequences start at 1 without gaps");
        let min_next = reference.min_next();
        match reference.bid(row.bidder_id, row.amount, row.max_amount) {
            Some(leading) => {
                assert_eq!(row.status, "accepted", "{row:?}");
                assert!(row.amount >= min_next, "no accepted bid below its min_next_bid: {row:?}");
                assert_eq!((row.current_price, row.is_leading), (reference.price, leading), "{row:?}");
                assert_eq!(row.min_next_bid, reference.min_next(), "{row:?}");
            }
            None => {
                assert_eq!((row.status.as_str(), row.reason.as_deref()), ("rejected", Some("bid_too_low")), "{row:?}")
            }
        }
    }
    let (price, leader, bid_count): (i64, Option<uuid::Uuid>, i32) =
        sqlx::query_as("SELECT current_price, leader_buyer_id, bid_count FROM auctions WHERE id = $1")
            .bind(uuid_of(&auction))
            .fetch_one(&a.pool)
            .await
            .expect("read the auction");
    assert_eq!((price, leader), (reference.price, reference.leader.map(|l| l.0)), "the final state is the replay's");
    assert_eq!(i64::from(bid_count), rows.iter().filter(|r| r.status == "accepted").count() as i64);
    assert!(bid_count > 1, "the race had several accepted bids");
    let verified = gavel_domain::auctions::bids::verify(&a.pool, auction.parse().expect("an auction id"))
        .await
        .expect("verify runs");
    assert!(verified.ok, "the trail verifies: {verified:?}");
    assert_eq!(verified.attempts as i64, sent);
    let public = a.get(&format!("/v1/auctions/{auction}"), None).await;
    assert_eq!(public.body["current_price"], json!(price));
    let leader_id = format!("byr_{}", leader.expect("a leader").simple());
    let masked = format!("b***{}", leader_id.chars().last().expect("a last character"));
    assert_eq!(public.body["leader"], json!(masked), "the public sees the leader masked");
}

#[tokio::test]
async fn ebay_proxy_cases_hold() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let auction = open_auction(&app, &merchant, json!({})).await;
    let people = bidders(&app, 4).await;
    let (a, b, c, d) = (&people[0], &people[1], &people[2], &people[3]);

    // A maximum beats a later smaller bid, at one increment above it.
    let r = bid(&app, &auction, a, json!({"amount": 1000, "max_amount": 2000})).await;
    assert_eq!(
        (r.status, r.body["leading"].clone(), r.body["current_price"].clone()),
        (StatusCode::CREATED, json!(true), json!(1000))
    );
    let r = bid(&app, &auction, b, json!({"amount": 1500})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    assert_eq!((r.body["leading"].clone(), r.body["current_price"].clone()), (json!(false), json!(1550)), "{}", r.raw);

    // Equal maxima: the earlier wins, at the maximum.
    let r = bid(&app, &auction, c, json!({"amount": 2000, "max_amount": 2000})).await;
    assert_eq!((r.body["leading"].clone(), r.body["current_price"].clone()), (json!(false), json!(2000)), "{}", r.raw);

    // A new maximum above the leader's takes the lead at the old maximum plus one increment.
    let r = bid(&app, &auction, d, json!({"amount": 2050, "max_amount": 3000})).await;
    assert_eq!((r.body["leading"].clone(), r.body["current_price"].clone()), (json!(true), json!(2050)), "{}", r.raw);
    assert_eq!(events_of(&app.pool, "bid.outbid", &a.id).await, 1, "A hears once that it lost the lead");

    // Raising one's own maximum moves nothing visible.
    let before = app.get(&format!("/v1/auctions/{auction}"), None).await.body;
    let r = bid(&app, &auction, d, json!({"amount": 2100, "max_amount": 5000})).await;
    assert_eq!(
        (r.status, r.body["leading"].clone(), r.body["current_price"].clone()),
        (StatusCode::CREATED, json!(true), json!(2050))
    );
    let after = app.get(&format!("/v1/auctions/{auction}"), None).await.body;
    assert_eq!(
        (after["current_price"].clone(), after["leader"].clone()),
        (before["current_price"].clone(), before["leader"].clone())
    );
    // A leader's bid that does not raise their maximum is too low.
    let r = bid(&app, &auction, d, json!({"amount": 2100, "max_amount": 4000})).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "bid_too_low"), "{}", r.raw);
    assert_eq!((r.body["current_price"].clone(), r.body["min_next_bid"].clone()), (json!(2050), json!(2100)));
    // B at 4000 (below D's 5000) is outbid at once at 4000 + 100.
    let r = bid(&app, &auction, b, json!({"amount": 4000})).await;
    assert_eq!((r.body["leading"].clone(), r.body["current_price"].clone()), (json!(false), json!(4100)), "{}", r.raw);
}

#[tokio::test]
async fn soft_close_extends_up_to_max_extensions_then_a_late_bid_is_auction_closed_and_it_closes_once() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let people = bidders(&app, 3).await;
    let auction = open_auction(
        &app,
        &merchant,
        json!({"ends_at": in_secs(3), "soft_close_seconds": 3600, "extension_seconds": 1, "max_extensions": 2}),
    )
    .await;
    let first_end = app.get(&format!("/v1/auctions/{auction}"), None).await.body["ends_at"].clone();
    let first_end: chrono::DateTime<chrono::Utc> = serde_json::from_value(first_end).expect("a time");
    let mut ends = Vec::new();
    for (i, p) in people.iter().enumerate() {
        let r = bid(&app, &auction, p, json!({"amount": 1000 + 50 * i as i64})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
        ends.push(serde_json::from_value::<chrono::DateTime<chrono::Utc>>(r.body["ends_at"].clone()).expect("a time"));
    }
    assert_eq!(
        ends,
        vec![
            first_end + chrono::Duration::seconds(1),
            first_end + chrono::Duration::seconds(2),
            first_end + chrono::Duration::seconds(2)
        ],
        "two extensions, then the cap"
    );
    let shown = app.get(&format!("/v1/auctions/{auction}"), None).await.body;
    assert_eq!(shown["extensions"], json!(2));
    assert_eq!(events_of(&app.pool, "auction.extended", &auction).await, 2);
    let feed: i64 = sqlx::query_scalar("SELECT count(*) FROM feed_events WHERE topic = $1 AND event = 'extended'")
        .bind(&auction)
        .fetch_one(&app.pool)
        .await
        .expect("count the feed's entries");
    assert_eq!(feed, 2, "two extended entries on the feed");

    // After the final end: 409 auction_closed, stored, and the auction closes exactly once.
    let wait = (ends[2] - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(200);
    tokio::time::sleep(wait).await;
    for p in &people {
        let r = bid(&app, &auction, p, json!({"amount": 9000})).await;
        assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "auction_closed"), "{}", r.raw);
        assert!(r.is_problem() && r.body["bid_id"].is_string(), "{}", r.raw);
    }
    eventually("the auction has ended", Duration::from_secs(15), || async {
        let s = app.get(&format!("/v1/auctions/{auction}"), None).await.body;
        (s["status"] == json!("ended")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events_of(&app.pool, "auction.ended", &auction).await, 1, "closed exactly once");
    assert_eq!(attempts(&app.pool, &auction).await, 6);
}

#[tokio::test]
async fn more_than_bids_per_minute_is_429_with_retry_after_and_stored() {
    let db = fresh_database().await;
    let app = TestApp::spawn_on(&db, &[Role::Api, Role::Workers], |c| c.auctions.bids_per_minute = 3).await;
    let merchant = app.merchant().await;
    let auction = open_auction(&app, &merchant, json!({})).await;
    let people = bidders(&app, 2).await;
    for amount in [1000, 500, 2000] {
        let r = bid(&app, &auction, &people[0], json!({"amount": amount})).await;
        assert_ne!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.raw);
    }
    let r = bid(&app, &auction, &people[0], json!({"amount": 5000})).await;
    assert_eq!((r.status, r.code()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"), "{}", r.raw);
    let retry: u64 =
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(r.body["bid_id"].is_string());
    let r = bid(&app, &auction, &people[1], json!({"amount": 5000})).await;
    assert_eq!(r.status, StatusCode::CREATED, "another bidder is not limited: {}", r.raw);
    assert_eq!(attempts(&app.pool, &auction).await, 5);
    let price = app.get(&format!("/v1/auctions/{auction}"), None).await.body["current_price"].clone();
    assert_ne!(price, json!(2000), "B's bid moved the price; the limited one did not lead");
}

#[tokio::test]
async fn bad_bids_are_problems_that_store_only_the_rejected_attempt() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let auction = open_auction(&app, &merchant, json!({})).await;
    let people = bidders(&app, 2).await;
    let ok = bid(&app, &auction, &people[1], json!({"amount": 1000})).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.raw);
    let state = || async { app.get(&format!("/v1/auctions/{auction}"), None).await.body };
    let before = state().await;

    let stored_cases = [
        (json!({"amount": 0}), 422, "amount_out_of_range"),
        (json!({"amount": -5}), 422, "amount_out_of_range"),
        (json!({"amount": 100_000_000}), 422, "amount_out_of_range"),
        (json!({"amount": 2000, "max_amount": 1500}), 422, "invalid_max_amount"),
        (json!({"amount": 2000, "currency": "eur"}), 422, "currency_mismatch"),
        (json!({"amount": 1020}), 409, "bid_too_low"),
    ];
    for (body, status, code) in stored_cases {
        let n = attempts(&app.pool, &auction).await;
        let r = bid(&app, &auction, &people[0], body.clone()).await;
        assert_eq!((r.status.as_u16(), r.code()), (status, code), "{body}: {}", r.raw);
        assert!(r.is_problem() && r.body["bid_id"].is_string(), "{}", r.raw);
        assert_eq!(attempts(&app.pool, &auction).await, n + 1, "{body}: exactly the rejected attempt is stored");
    }
    let r = bid(&app, &auction, &people[0], json!({"amount": 10})).await;
    assert_eq!((r.body["current_price"].clone(), r.body["min_next_bid"].clone()), (json!(1000), json!(1050)));

    // Not numbers of the right kind: refused before judging, nothing stored.
    for body in [json!({"amount": 10.5}), json!({"amount": 1e20}), json!({"amount": "1000"}), json!({})] {
        let n = attempts(&app.pool, &auction).await;
        let r = bid(&app, &auction, &people[0], body.clone()).await;
        assert_eq!((r.status.as_u16(), r.code()), (422, "invalid_request"), "{body}: {}", r.raw);
        assert_eq!(attempts(&app.pool, &auction).await, n, "{body}: nothing stored");
    }
    assert_eq!(state().await["current_price"], before["current_price"], "nothing moved the price");
    assert_eq!(state().await["bid_count"], json!(1));

    // The merchant's own buyer account.
    let m_id: String =
        sqlx::query_scalar("SELECT 'mch_' || replace(merchant_id::text, '-', '') FROM auctions WHERE id = $1")
            .bind(uuid_of(&auction))
            .fetch_one(&app.pool)
            .await
            .expect("the merchant");
    gavel_domain::merchants::link_buyer(&app.pool, m_id.parse().expect("an id"), people[0].id.parse().expect("an id"))
        .await
        .expect("link the buyer");
    let r = bid(&app, &auction, &people[0], json!({"amount": 5000})).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "own_auction"), "{}", r.raw);

    // Scheduled, cancelled, ended auctions.
    let later = open_auction(&app, &merchant, json!({"starts_at": in_secs(600), "ends_at": in_secs(3600)})).await;
    let r = bid(&app, &later, &people[1], json!({"amount": 5000})).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, "auction_not_started"), "{}", r.raw);
    let c = app.post(&format!("/v1/auctions/{later}/cancel"), Some(&merchant.key), json!({})).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.raw);
    let r = bid(&app, &later, &people[1], json!({"amount": 5000})).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, "auction_closed"), "{}", r.raw);
    assert_eq!(attempts(&app.pool, &later).await, 2);
    let short = open_auction(&app, &merchant, json!({"ends_at": in_secs(2)})).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = bid(&app, &short, &people[1], json!({"amount": 5000})).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, "auction_closed"), "{}", r.raw);
    let r = app
        .post(
            &format!("/v1/auctions/{}/bids", "auc_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b"),
            Some(&people[1].token),
            json!({"amount": 5000}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (404, "not_found"), "{}", r.raw);
}

#[tokio::test]
async fn the_trail_is_masked_except_for_the_merchant_and_the_bidder_and_pages_in_sequence() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let auction = open_auction(&app, &merchant, json!({})).await;
    let people = bidders(&app, 2).await;
    bid(&app, &auction, &people[0], json!({"amount": 1000, "max_amount": 3000})).await;
    bid(&app, &auction, &people[1], json!({"amount": 1200})).await;
    bid(&app, &auction, &people[1], json!({"amount": 10})).await;
    let path = format!("/v1/auctions/{auction}/bids");
    let public = app.get(&path, None).await;
    assert_eq!(public.status, StatusCode::OK, "{}", public.raw);
    let data = public.body["data"].as_array().expect("a list");
    assert_eq!(data.iter().map(|b| b["sequence"].as_i64().unwrap_or(0)).collect::<Vec<_>>(), vec![1, 2, 3]);
    for b in data {
        let bidder = b["bidder"].as_str().unwrap_or("");
        assert!(bidder.starts_with("b***") && bidder.len() == 5, "masked: {bidder}");
        assert!(b.get("max_amount").is_none(), "no maximum for the public");
        assert_eq!(b["hash"].as_str().map(str::len), Some(64));
    }
    assert_eq!(data[2]["status"], json!("rejected"));
    assert_eq!(data[2]["reason"], json!("bid_too_low"));
    let full = app.get(&path, Some(&merchant.key)).await;
    let data = full.body["data"].as_array().expect("a list");
    assert_eq!(data[0]["bidder"], json!(people[0].id));
    assert_eq!(data[0]["max_amount"], json!(3000));
    let own = app.get(&path, Some(&people[1].token)).await;
    let data = own.body["data"].as_array().expect("a list");
    assert!(data[0]["bidder"].as_str().unwrap_or("").starts_with("b***") && data[0].get("max_amount").is_none());
    assert_eq!((data[1]["bidder"].clone(), data[1]["max_amount"].clone()), (json!(people[1].id), json!(1200)));
    // Another merchant sees the public view.
    let other = app.merchant().await;
    let seen = app.get(&path, Some(&other.key)).await;
    assert!(seen.body["data"][0].get("max_amount").is_none());
    // Pages.
    let page = app.get(&format!("{path}?limit=2"), None).await;
    assert_eq!((page.body["data"].as_array().map(Vec::len), page.body["has_more"].clone()), (Some(2), json!(true)));
    let last = page.body["data"][1]["id"].as_str().expect("an id");
    let rest = app.get(&format!("{path}?limit=2&starting_after={last}"), None).await;
    assert_eq!(rest.body["data"][0]["sequence"], json!(3));
    assert_eq!(rest.body["has_more"], json!(false));
    let bad = app.get(&path, Some("not-a-token")).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let list = app.get("/v1/auctions", Some(&merchant.key)).await;
    assert_eq!(list.body["data"][0]["leader_buyer_id"], json!(people[0].id), "the merchant sees the leader");
}

#[tokio::test]
async fn the_same_idempotency_key_replays_the_first_answer_and_stores_one_attempt() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let auction = open_auction(&app, &merchant, json!({})).await;
    let people = bidders(&app, 1).await;
    let url = format!("{}/v1/auctions/{auction}/bids", app.base);
    let post = |key: &'static str, amount: i64| {
        send(
            client()
                .post(&url)
                .bearer_auth(&people[0].token)
                .header("Idempotency-Key", key)
                .json(&json!({"amount": amount})),
        )
    };
    let first = post("k-1", 1000).await;
    let again = post("k-1", 1000).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.raw);
    assert_eq!((again.status, again.body.clone()), (first.status, first.body.clone()));
    let other_body = post("k-1", 2000).await;
    assert_eq!(other_body.code(), "idempotency_key_reused");
    let low = post("k-2", 10).await;
    let low_again = post("k-2", 10).await;
    assert_eq!((low.code(), low_again.body.clone()), ("bid_too_low", low.body.clone()));
    assert_eq!(attempts(&app.pool, &auction).await, 2);
    let key: Option<String> =
        sqlx::query_scalar("SELECT idempotency_key FROM auction_bids WHERE sequence = 1 AND auction_id = $1")
            .bind(uuid_of(&auction))
            .fetch_one(&app.pool)
            .await
            .expect("the attempt");
    assert_eq!(key.as_deref(), Some("k-1"), "the key is stored on the attempt");
}

#[tokio::test]
async fn tampering_with_a_stored_attempt_makes_verify_fail() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let auction = open_auction(&app, &merchant, json!({})).await;
    let people = bidders(&app, 2).await;
    for (i, amount) in [1000, 1200, 10, 2000].into_iter().enumerate() {
        bid(&app, &auction, &people[i % 2], json!({"amount": amount})).await;
    }
    let db_url = app.pool.connect_options().get_database().map(str::to_owned).expect("a database name");
    let url = format!("{}/{db_url}", crate::helpers::server_url());
    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
            .args(["auctions", "verify", &auction])
            .env("DATABASE_URL", &url)
            .env("GAVEL_ENV", "test")
            .env("GAVEL_LOG", "error")
            .output()
            .expect("run gavel auctions verify")
    };
    let good = verify();
    let report: Value = serde_json::from_slice(&good.stdout).expect("JSON on stdout");
    assert!(good.status.success(), "{report}");
    assert_eq!((report["ok"].clone(), report["attempts"].clone()), (json!(true), json!(4)));
    assert_eq!(report["computed_hash"], report["stored_hash"]);
    sqlx::query("UPDATE auction_bids SET amount = amount + 1 WHERE auction_id = $1 AND sequence = 2")
        .bind(uuid_of(&auction))
        .execute(&app.pool)
        .await
        .expect("tamper");
    let bad = verify();
    let report: Value = serde_json::from_slice(&bad.stdout).expect("JSON on stdout");
    assert_eq!(bad.status.code(), Some(2), "{report}");
    assert_eq!(report["ok"], json!(false));
    assert!(report["error"].as_str().unwrap_or("").contains("sequence 2"), "{report}");
}

/// The buyer id as the public sees it (`b***7`), written apart from the code.
pub(crate) fn masked(id: &str) -> String {
    format!("{}***{}", &id[..1], &id[id.len() - 1..])
}
