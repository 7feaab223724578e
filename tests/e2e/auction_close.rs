//! An auction's close and what follows it: the winner's order with its
//! payment window, reminders and lapse, the second-chance offer to the
//! runner-up, and a close that happens exactly once — with two worker
//! processes, with one SIGKILLed at the end instant, and raced from many
//! tasks (those two in `auction_close_once.rs`). Bids are written by [`bid`] (the price rule and the trail's hash
//! chain applied to the stored rows, as the bid engine does), so these tests
//! do not depend on the bid endpoint.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gavel::Role;
use gavel_domain::auctions::price::{Bid, Decision};
use gavel_domain::auctions::{self, trail};
use gavel_domain::ids::{AuctionId, BuyerId};
use gavel_domain::jobs::{self, AuctionJob, queues};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::checkout::Shop;
use crate::helpers::{
    Killed, Response, TestApp, client, eventually, fresh_database, in_secs, send, uuid_of, worker_process,
};

pub(crate) const QUEUE: &str = queues::AUCTION_LIFECYCLE;

/// A buyer signed up over the API: (id, token).
pub(crate) async fn buyer(app: &TestApp) -> (BuyerId, String) {
    let email = format!("bidder-{}@example.com", uuid::Uuid::new_v4().simple());
    let r = app.post("/v1/buyers", None, json!({ "email": email, "password": "correct horse" })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    let id = r.body["id"].as_str().expect("an id").parse().expect("a buyer id");
    (id, r.body["token"].as_str().expect("a token").to_owned())
}

/// An auction of `shop`'s merchant that is active (its start job has run),
/// ending in an hour until [`end_in`] moves the end.
pub(crate) async fn active_auction(shop: &Shop, overrides: Value) -> String {
    let app = &shop.app;
    let product = app.product(&shop.merchant).await;
    let mut body = json!({
        "product_id": product, "currency": "usd", "starting_price": 1000,
        "starts_at": in_secs(1), "ends_at": in_secs(3600),
    });
    if let (Some(b), Some(o)) = (body.as_object_mut(), overrides.as_object()) {
        b.extend(o.clone());
    }
    let created = app.post("/v1/auctions", Some(&shop.merchant.key), body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let id = created.body["id"].as_str().expect("an id").to_owned();
    let path = format!("/v1/auctions/{id}");
    eventually("the auction is active", Duration::from_secs(20), || async {
        (app.get(&path, None).await.body["status"] == "active").then_some(())
    })
    .await;
    id
}

/// One bid attempt as the bid engine stores it: judged by the price rule
/// against the stored state, chained into the trail, the auction row
/// updated. Returns the decision.
pub(crate) async fn bid(pool: &PgPool, auction: &str, bidder: BuyerId, amount: i64, max: Option<i64>) -> Decision {
    let id: AuctionId = auction.parse().expect("an auction id");
    let mut tx = pool.begin().await.expect("a transaction");
    let a = auctions::lock(&mut tx, id).await.expect("read the auction").expect("the auction exists");
    let (last, previous): (i64, Vec<u8>) =
        sqlx::query_as("SELECT last_sequence, trail_hash FROM auctions WHERE id = $1")
            .bind(id.uuid())
            .fetch_one(&mut *tx)
            .await
            .expect("the trail's head");
    let sequence = u64::try_from(last + 1).expect("a sequence");
    let (book, decision) = a.book.judge(&a.increments, sequence, Bid::new(bidder, amount, max));
    let created_at = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("a time");
    let (status, reason, current_price, min_next_bid, leading) = match decision {
        Decision::Accepted { leading, current_price, min_next_bid } => {
            (trail::AttemptStatus::Accepted, None, current_price, min_next_bid, leading)
        }
        Decision::Rejected { reason, current_price, min_next_bid } => {
            (trail::AttemptStatus::Rejected, Some(reason.code().to_owned()), current_price, min_next_bid, false)
        }
    };
    let fields = trail::AttemptFields {
        sequence,
        bidder,
        amount,
        max_amount: max.unwrap_or(amount),
        status,
        reason: reason.clone(),
        created_at_micros: created_at.timestamp_micros(),
        idempotency_key: None,
    };
    let previous: [u8; 32] = previous.as_slice().try_into().expect("32 bytes");
    let hash = trail::attempt_hash(&previous, &fields);
    sqlx::query(
        "INSERT INTO auction_bids (id, auction_id, sequence, bidder_id, amount, max_amount, status, reason,
                                   current_price, min_next_bid, is_leading, created_at, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(id.uuid())
    .bind(last + 1)
    .bind(bidder.uuid())
    .bind(amount)
    .bind(fields.max_amount)
    .bind(status.as_str())
    .bind(reason)
    .bind(current_price)
    .bind(min_next_bid)
    .bind(leading)
    .bind(created_at)
    .bind(hash.as_slice())
    .execute(&mut *tx)
    .await
    .expect("store the attempt");
    let leader = book.leader();
    sqlx::query(
        "UPDATE auctions SET current_price = $2, leader_buyer_id = $3, leader_max = $4, leader_sequence = $5,
                             bid_count = $6, last_sequence = $7, trail_hash = $8, version = version + 1
         WHERE id = $1",
    )
    .bind(id.uuid())
    .bind(book.current_price())
    .bind(leader.map(|l| l.bidder.uuid()))
    .bind(leader.map(|l| l.max))
    .bind(leader.map(|l| i64::try_from(l.since).expect("a sequence")))
    .bind(i32::try_from(book.bid_count()).expect("a count"))
    .bind(last + 1)
    .bind(hash.as_slice())
    .execute(&mut *tx)
    .await
    .expect("update the auction");
    tx.commit().await.expect("commit the bid");
    decision
}

/// Moves the auction's end to `secs` from now and queues its End job, as soft
/// close does; returns the new end.
pub(crate) async fn end_in(pool: &PgPool, auction: &str, secs: f64) -> DateTime<Utc> {
    let id: AuctionId = auction.parse().expect("an auction id");
    let micros = Utc::now().timestamp_micros() + (secs * 1e6) as i64;
    let ends_at = DateTime::from_timestamp_micros(micros).expect("a time");
    let mut tx = pool.begin().await.expect("a transaction");
    sqlx::query("UPDATE auctions SET ends_at = $2, version = version + 1 WHERE id = $1")
        .bind(id.uuid())
        .bind(ends_at)
        .execute(&mut *tx)
        .await
        .expect("move the end");
    let job = AuctionJob::End { auction_id: id, ends_at };
    jobs::enqueue(&mut tx, QUEUE, &job, ends_at, &format!("end:{id}:{micros}")).await.expect("queue the end");
    tx.commit().await.expect("commit");
    ends_at
}

pub(crate) async fn ended(app: &TestApp, auction: &str) -> Value {
    let path = format!("/v1/auctions/{auction}");
    eventually("the auction has ended", Duration::from_secs(30), || async {
        let r = app.get(&path, None).await;
        (r.body["status"] == "ended").then_some(r.body)
    })
    .await
}

pub(crate) async fn count(pool: &PgPool, sql: &'static str, arg: &str) -> i64 {
    sqlx::query_scalar(sql).bind(arg).fetch_one(pool).await.expect("the test's SQL runs")
}

pub(crate) async fn events_of(pool: &PgPool, kind: &str, subject: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE type = $1 AND subject_id = $2")
        .bind(kind)
        .bind(subject)
        .fetch_one(pool)
        .await
        .expect("the test's SQL runs")
}

async fn event_data(pool: &PgPool, kind: &str, subject: &str) -> Vec<Value> {
    sqlx::query_scalar("SELECT payload FROM events WHERE type = $1 AND subject_id = $2 ORDER BY created_at")
        .bind(kind)
        .bind(subject)
        .fetch_all(pool)
        .await
        .expect("the test's SQL runs")
}

pub(crate) async fn orders_of(pool: &PgPool, auction: &str) -> i64 {
    count(pool, "SELECT count(*) FROM orders WHERE auction_id = $1::uuid", &uuid_of(auction).to_string()).await
}

/// The jobs of an order, by kind: (kind, lead_seconds, run_at).
pub(crate) async fn jobs_of_order(pool: &PgPool, order: &str) -> Vec<(String, Option<i64>, DateTime<Utc>)> {
    sqlx::query_as(
        "SELECT j ->> 'kind', (j ->> 'lead_seconds')::bigint, run_at
         FROM (SELECT convert_from(job, 'UTF8')::jsonb AS j, run_at FROM apalis.jobs WHERE job_type = $1) q
         WHERE j ->> 'order_id' = $2 AND j ->> 'kind' IN ('remind', 'lapse')
         ORDER BY run_at",
    )
    .bind(QUEUE)
    .bind(order)
    .fetch_all(pool)
    .await
    .expect("the test's SQL runs")
}

/// Makes the order's jobs of `kind` due now, each queued a second time under
/// another key (so each runs twice), and waits until they are done.
pub(crate) async fn run_twice(pool: &PgPool, order: &str, kind: &str) {
    macro_rules! filter {
        () => {
            "job_type = $1 AND convert_from(job, 'UTF8')::jsonb ->> 'order_id' = $2
             AND convert_from(job, 'UTF8')::jsonb ->> 'kind' = $3"
        };
    }
    let copied = sqlx::query(concat!(
        "INSERT INTO apalis.jobs
             (id, job_type, job, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key)
         SELECT apalis.generate_ulid(), job_type, job, 'Pending', 0, max_attempts, now(), priority,
                ''::hstore, idempotency_key || ':again'
         FROM apalis.jobs WHERE ",
        filter!()
    ))
    .bind(QUEUE)
    .bind(order)
    .bind(kind)
    .execute(pool)
    .await
    .expect("copy the jobs")
    .rows_affected();
    assert!(copied >= 1, "the order's {kind} jobs are queued");
    sqlx::query(concat!("UPDATE apalis.jobs SET run_at = now() WHERE status = 'Pending' AND ", filter!()))
        .bind(QUEUE)
        .bind(order)
        .bind(kind)
        .execute(pool)
        .await
        .expect("make the jobs due");
    eventually(&format!("the order's {kind} jobs have run"), Duration::from_secs(30), || async {
        let open: i64 =
            sqlx::query_scalar(concat!("SELECT count(*) FROM apalis.jobs WHERE status <> 'Done' AND ", filter!()))
                .bind(QUEUE)
                .bind(order)
                .bind(kind)
                .fetch_one(pool)
                .await
                .expect("count the open jobs");
        (open == 0).then_some(())
    })
    .await;
}

/// Moves the order's deadline into the past (the window has run out).
pub(crate) async fn deadline_passes(pool: &PgPool, order: &str) {
    sqlx::query("UPDATE orders SET payment_due_at = now() - interval '1 second' WHERE id = $1")
        .bind(uuid_of(order))
        .execute(pool)
        .await
        .expect("move the deadline");
}

pub(crate) async fn pay(app: &TestApp, token: &str, order: &str) -> Response {
    send(
        client()
            .post(format!("{}/v1/orders/{order}/pay", app.base))
            .bearer_auth(token)
            .json(&json!({ "payment_method": "pm_card_visa" })),
    )
    .await
}

pub(crate) async fn second_chance(app: &TestApp, key: &str, idempotency_key: Option<&str>, auction: &str) -> Response {
    let mut req = client().post(format!("{}/v1/auctions/{auction}/second_chance", app.base)).bearer_auth(key);
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    send(req).await
}

async fn failed_jobs(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM apalis.jobs WHERE status IN ('Failed', 'Killed')")
        .fetch_one(pool)
        .await
        .expect("the test's SQL runs")
}

pub(crate) async fn feed_ended(pool: &PgPool, auction: &str) -> Vec<Value> {
    sqlx::query_scalar("SELECT data FROM feed_events WHERE topic = $1 AND event = 'ended'")
        .bind(auction)
        .fetch_all(pool)
        .await
        .expect("the test's SQL runs")
}

pub(crate) fn masked(id: BuyerId) -> String {
    let s = id.to_string();
    format!("{}***{}", &s[..1], &s[s.len() - 1..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_below_the_reserve_ends_with_no_winner_and_no_order() {
    let shop = Shop::open(|_| {}).await;
    let app = &shop.app;
    let (a, _) = buyer(app).await;
    let (b, _) = buyer(app).await;
    let auction = active_auction(&shop, json!({ "reserve_price": 5000 })).await;
    assert!(bid(&app.pool, &auction, a, 1000, Some(3000)).await.is_accepted());
    assert!(bid(&app.pool, &auction, b, 2000, Some(2500)).await.is_accepted());
    end_in(&app.pool, &auction, 0.5).await;
    let body = ended(app, &auction).await;

    let result = &body["result"];
    assert_eq!(result["winner"], Value::Null, "{body}");
    assert_eq!(result["order_id"], Value::Null, "{body}");
    assert_eq!(result["final_price"], 2600, "a leads at b's maximum plus one increment: {body}");
    let stored: Vec<u8> = sqlx::query_scalar("SELECT trail_hash FROM auctions WHERE id = $1")
        .bind(uuid_of(&auction))
        .fetch_one(&app.pool)
        .await
        .expect("the test's SQL runs");
    assert_eq!(result["trail_hash"], hex_of(&stored), "the result carries the trail's head");
    assert_ne!(result["trail_hash"], "0".repeat(64));
    assert_eq!(orders_of(&app.pool, &auction).await, 0, "no order below the reserve");
    assert_eq!(events_of(&app.pool, "auction.won", &auction).await, 0);
    let ended_events = event_data(&app.pool, "auction.ended", &auction).await;
    assert_eq!(ended_events.len(), 1);
    assert_eq!(
        (ended_events[0]["winner_buyer_id"].clone(), ended_events[0]["order_id"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(ended_events[0]["trail_hash"], result["trail_hash"]);
    let feed = feed_ended(&app.pool, &auction).await;
    assert_eq!(feed.len(), 1, "one `ended` on the live feed");
    assert_eq!(feed[0]["result"], *result, "the feed's result is the resource's");

    let list = app.get("/v1/auctions", Some(&shop.merchant.key)).await;
    assert_eq!(list.body["data"][0]["winner_buyer_id"], Value::Null, "{}", list.raw);
    let r = second_chance(app, &shop.merchant.key, None, &auction).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "second_chance_unavailable"), "{}", r.raw);
    assert!(r.is_problem(), "{}", r.raw);
    assert_eq!(orders_of(&app.pool, &auction).await, 0);
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_winner_pays_inside_the_window_once_and_no_reminder_or_lapse_follows() {
    let shop = Shop::open(|_| {}).await;
    let app = &shop.app;
    let (a, a_token) = buyer(app).await;
    let (b, b_token) = buyer(app).await;
    let auction = active_auction(&shop, json!({ "reserve_price": 3000 })).await;
    assert!(bid(&app.pool, &auction, a, 1000, Some(5000)).await.is_accepted());
    let last = bid(&app.pool, &auction, b, 3100, Some(3500)).await;
    let Decision::Accepted { leading: false, current_price, .. } = last else {
        panic!("b is outbid at once by a's maximum: {last:?}");
    };
    assert_eq!(current_price, 3600, "b's maximum plus one increment");
    end_in(&app.pool, &auction, 0.5).await;
    let body = ended(app, &auction).await;

    let result = &body["result"];
    assert_eq!(result["winner"], masked(a), "{body}");
    assert_eq!(result["final_price"], current_price, "{body}");
    let order = result["order_id"].as_str().expect("the winner's order").to_owned();
    let own = app.get(&format!("/v1/auctions/{auction}"), Some(&shop.merchant.key)).await;
    assert_eq!(own.body["winner_buyer_id"], a.to_string(), "its merchant sees the winner unmasked: {}", own.raw);
    assert_eq!(own.body["result"], *result);
    let list = app.get("/v1/auctions", Some(&shop.merchant.key)).await;
    assert_eq!(list.body["data"][0]["winner_buyer_id"], a.to_string(), "{}", list.raw);
    let other = app.merchant().await;
    for key in [None, Some(other.key.as_str()), Some(a_token.as_str())] {
        let seen = app.get(&format!("/v1/auctions/{auction}"), key).await;
        assert_eq!(seen.status, StatusCode::OK, "{}", seen.raw);
        assert!(seen.body.get("winner_buyer_id").is_none(), "only its merchant sees the winner: {}", seen.raw);
        assert_eq!(seen.body["result"]["winner"], masked(a));
    }

    let theirs = pay(app, &b_token, &order).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "only the winner may pay: {}", theirs.raw);
    let o = app.get(&format!("/v1/orders/{order}"), Some(&a_token)).await;
    assert_eq!((o.body["status"].clone(), o.body["amount"].clone()), (json!("awaiting_payment"), json!(current_price)));
    let due: DateTime<Utc> = o.body["payment_due_at"].as_str().expect("a deadline").parse().expect("a time");
    let ended_at: DateTime<Utc> = result["ended_at"].as_str().expect("a time").parse().expect("a time");
    let window = (due - ended_at).num_seconds();
    assert!((86_399..=86_401).contains(&window), "the default 24 h window, from the close: {window}");

    let paid = pay(app, &a_token, &order).await;
    assert_eq!((paid.status, paid.body["status"].clone()), (StatusCode::OK, json!("paid")), "{}", paid.raw);
    let again = pay(app, &a_token, &order).await;
    assert_eq!((again.status, again.code()), (StatusCode::CONFLICT, "order_not_payable"), "{}", again.raw);
    assert_eq!(shop.stripe.payment_intents().len(), 1, "charged once");

    // The reminders and the lapse, run past the deadline, find it paid.
    deadline_passes(&app.pool, &order).await;
    run_twice(&app.pool, &order, "remind").await;
    run_twice(&app.pool, &order, "lapse").await;
    let o = app.get(&format!("/v1/orders/{order}"), Some(&a_token)).await;
    assert_eq!(o.body["status"], "paid");
    assert_eq!(events_of(&app.pool, "order.payment_due", &order).await, 0);
    assert_eq!(events_of(&app.pool, "order.lapsed", &order).await, 0);
    assert_eq!(events_of(&app.pool, "order.paid", &order).await, 1);
    let won = event_data(&app.pool, "auction.won", &order).await;
    assert_eq!(won.len(), 1);
    assert_eq!((won[0]["buyer_id"].clone(), won[0]["second_chance"].clone()), (json!(a.to_string()), json!(false)));
    let ended_event = &event_data(&app.pool, "auction.ended", &auction).await[0];
    assert_eq!(
        (ended_event["winner_buyer_id"].as_str(), ended_event["order_id"].as_str()),
        (Some(a.to_string().as_str()), Some(order.as_str()))
    );
    assert_eq!(failed_jobs(&app.pool).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_winner_is_reminded_lapses_once_with_two_workers_and_the_runner_up_gets_a_second_chance() {
    let db = fresh_database().await;
    let shop = Shop::open_on(&db, &[Role::Api], |_| {}).await;
    let _w1 = Killed(worker_process(&db));
    let _w2 = Killed(worker_process(&db));
    let app = &shop.app;
    let (a, a_token) = buyer(app).await;
    let (b, b_token) = buyer(app).await;
    let (c, _) = buyer(app).await;
    let (d, _) = buyer(app).await;
    let auction = active_auction(&shop, json!({})).await;
    assert!(bid(&app.pool, &auction, a, 1000, Some(5000)).await.is_accepted());
    assert!(bid(&app.pool, &auction, b, 2000, Some(3000)).await.is_accepted());
    assert!(bid(&app.pool, &auction, c, 3200, Some(3200)).await.is_accepted());
    assert!(bid(&app.pool, &auction, b, 3400, Some(3400)).await.is_accepted(), "b raises: now the runner-up");
    assert!(!bid(&app.pool, &auction, d, 100, Some(9000)).await.is_accepted(), "a rejected attempt is no runner-up");
    end_in(&app.pool, &auction, 0.5).await;
    let body = ended(app, &auction).await;
    let result = &body["result"];
    assert_eq!((result["winner"].clone(), result["final_price"].clone()), (json!(masked(a)), json!(3500)), "{body}");
    let order = result["order_id"].as_str().expect("the winner's order").to_owned();

    // Reminders 12 h and 1 h before the deadline, and the lapse at it.
    let o = app.get(&format!("/v1/orders/{order}"), Some(&a_token)).await;
    let due: DateTime<Utc> = o.body["payment_due_at"].as_str().expect("a deadline").parse().expect("a time");
    let queued = jobs_of_order(&app.pool, &order).await;
    let kinds: Vec<_> = queued.iter().map(|(k, lead, _)| (k.as_str(), *lead)).collect();
    assert_eq!(kinds, vec![("remind", Some(43_200)), ("remind", Some(3_600)), ("lapse", None)]);
    for (_, lead, at) in &queued {
        let expected = due - chrono::Duration::seconds(lead.unwrap_or(0));
        assert!((*at - expected).num_milliseconds().abs() < 1000, "job at {at}, expected {expected}");
    }
    let early = second_chance(app, &shop.merchant.key, None, &auction).await;
    assert_eq!((early.status, early.code()), (StatusCode::CONFLICT, "second_chance_unavailable"), "{}", early.raw);

    run_twice(&app.pool, &order, "remind").await;
    let reminders = event_data(&app.pool, "order.payment_due", &order).await;
    let mut leads: Vec<_> = reminders.iter().filter_map(|r| r["lead_seconds"].as_i64()).collect();
    leads.sort_unstable();
    assert_eq!(leads, vec![3_600, 43_200], "one order.payment_due per lead, each job run twice");

    deadline_passes(&app.pool, &order).await;
    run_twice(&app.pool, &order, "lapse").await;
    let o = app.get(&format!("/v1/orders/{order}"), Some(&a_token)).await;
    assert_eq!(o.body["status"], "lapsed", "{}", o.raw);
    assert_eq!(events_of(&app.pool, "order.lapsed", &order).await, 1, "lapsed exactly once by two workers");
    let late = pay(app, &a_token, &order).await;
    assert_eq!((late.status, late.code()), (StatusCode::CONFLICT, "order_not_payable"), "{}", late.raw);
    assert_eq!(late.body["order_status"], "lapsed");
    assert!(shop.stripe.payment_intents().is_empty(), "nothing charged");

    // The runner-up is b (highest maximum, 3400, among accepted attempts), at that maximum.
    let offer = second_chance(app, &shop.merchant.key, Some("sc-1"), &auction).await;
    assert_eq!(offer.status, StatusCode::CREATED, "{}", offer.raw);
    assert_eq!((offer.body["status"].clone(), offer.body["amount"].clone()), (json!("awaiting_payment"), json!(3400)));
    let second = offer.body["id"].as_str().expect("an order").to_owned();
    assert_ne!(second, order);
    let replay = second_chance(app, &shop.merchant.key, Some("sc-1"), &auction).await;
    assert_eq!(
        (replay.status, replay.body.clone()),
        (StatusCode::CREATED, offer.body.clone()),
        "the key's first answer"
    );
    let repeat = second_chance(app, &shop.merchant.key, None, &auction).await;
    assert_eq!((repeat.status, repeat.body["id"].as_str()), (StatusCode::OK, Some(second.as_str())), "{}", repeat.raw);
    assert_eq!(orders_of(&app.pool, &auction).await, 2, "one offer per auction");
    let won = event_data(&app.pool, "auction.won", &second).await;
    assert_eq!(won.len(), 1);
    assert_eq!((won[0]["buyer_id"].clone(), won[0]["second_chance"].clone()), (json!(b.to_string()), json!(true)));
    let second_jobs = jobs_of_order(&app.pool, &second).await;
    assert_eq!(second_jobs.len(), 3, "its own reminders and lapse: {second_jobs:?}");
    let list = app.get("/v1/auctions", Some(&shop.merchant.key)).await;
    assert_eq!(list.body["data"][0]["second_chance_order_id"], second);

    let paid = pay(app, &b_token, &second).await;
    assert_eq!((paid.status, paid.body["status"].clone()), (StatusCode::OK, json!("paid")), "{}", paid.raw);
    assert_eq!(shop.stripe.payment_intents().len(), 1);
    assert_eq!(events_of(&app.pool, "auction.ended", &auction).await, 1);
    assert_eq!(failed_jobs(&app.pool).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_bidder_who_does_not_pay_leaves_no_runner_up() {
    let shop = Shop::open(|_| {}).await;
    let app = &shop.app;
    let (a, _) = buyer(app).await;
    let auction = active_auction(&shop, json!({})).await;
    assert!(bid(&app.pool, &auction, a, 1000, None).await.is_accepted());
    assert!(bid(&app.pool, &auction, a, 1100, Some(4000)).await.is_accepted(), "a raises their own maximum");
    end_in(&app.pool, &auction, 0.5).await;
    let body = ended(app, &auction).await;
    assert_eq!(body["result"]["final_price"], 1000, "a raise of one's own maximum moves nothing: {body}");
    let order = body["result"]["order_id"].as_str().expect("the winner's order").to_owned();
    deadline_passes(&app.pool, &order).await;
    run_twice(&app.pool, &order, "lapse").await;
    let r = second_chance(app, &shop.merchant.key, None, &auction).await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "no_runner_up"), "{}", r.raw);
    assert!(r.is_problem(), "{}", r.raw);
    assert_eq!(orders_of(&app.pool, &auction).await, 1);
    let other = app.merchant().await;
    let theirs = second_chance(app, &other.key, None, &auction).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "another merchant's auction is not found");
}
