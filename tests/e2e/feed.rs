//! The live feed over real HTTP and real PostgreSQL: events appended on one
//! process reach watchers of another in order; `Last-Event-ID` resumes with
//! no gap and no repeat; a client that never reads is cut off while appends
//! go on at full speed; claims publish coalesced stock and a final
//! `sold_out`; a sale's start and end are on its feed; heartbeats; problems.

use std::time::{Duration, Instant};

use gavel::Role;
use gavel_domain::feed::{self, Entry, Topic};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::AsyncWriteExt;

use crate::helpers::{TestApp, fresh_database, in_secs, uuid_of};
use crate::sse::{SseClient, SseEvent};

const WAIT: Duration = Duration::from_secs(10);

/// An auction (scheduled; the feed does not care) of a new product.
async fn auction(app: &TestApp) -> String {
    let merchant = app.merchant().await;
    let product = app.product(&merchant).await;
    let body = json!({
        "product_id": product, "currency": "usd", "starting_price": 1000,
        "starts_at": in_secs(60), "ends_at": in_secs(3600),
    });
    let r = app.post("/v1/auctions", Some(&merchant.key), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    r.body["id"].as_str().expect("an auction id").to_owned()
}

/// Appends `n` `bid` events (numbered from `from`, `pad` bytes of padding
/// each) to an auction's feed in `per_tx`-event transactions that lock the
/// auction row, as the bidding code does.
async fn append_bids(pool: &PgPool, auction: &str, from: u64, n: u64, per_tx: u64, pad: usize) {
    let topic = Topic::Auction(auction.parse().expect("an auction id"));
    let padding = "x".repeat(pad);
    let mut next = from;
    while next < from + n {
        let upto = (next + per_tx).min(from + n);
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("SELECT 1 FROM auctions WHERE id = $1 FOR UPDATE")
            .bind(uuid_of(auction))
            .execute(&mut *tx)
            .await
            .expect("lock the auction");
        let entries: Vec<Entry> = (next..upto)
            .map(|i| Entry {
                event: "bid".into(),
                data: json!({ "sequence": i, "current_price": 1000 + i, "pad": padding }),
            })
            .collect();
        feed::append(&mut tx, topic, &entries).await.expect("append");
        tx.commit().await.expect("commit");
        next = upto;
    }
}

fn seqs(events: &[SseEvent]) -> Vec<i64> {
    events.iter().map(SseEvent::seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_one_process_sees_events_appended_on_another_in_order_and_resumes_without_gap_or_repeat() {
    let db = fresh_database().await;
    let a = TestApp::spawn_on(&db, &[Role::Api, Role::Workers], |_| {}).await;
    let b = TestApp::spawn_on(&db, &[Role::Api], |_| {}).await;
    let auction = auction(&a).await;
    let url = format!("{}/v1/auctions/{auction}/events", b.base);

    let mut watcher = SseClient::connect(&url, None).await;
    assert_eq!(watcher.status, StatusCode::OK);
    assert_eq!(watcher.headers["content-type"], "text/event-stream");
    let snapshot = watcher.next_event(WAIT).await.expect("a snapshot");
    assert_eq!((snapshot.event.as_str(), snapshot.id.as_deref()), ("snapshot", None));
    let state = snapshot.json();
    assert_eq!(state["status"], "scheduled");
    assert_eq!((state["current_price"].as_i64(), state["min_next_bid"].as_i64()), (Some(1000), Some(1000)));
    assert_eq!((state["leader"].clone(), state["bid_count"].as_i64()), (Value::Null, Some(0)));

    // Appended through process A's pool, one event per transaction.
    append_bids(&a.pool, &auction, 1, 20, 1, 0).await;
    let got = watcher.events(20, WAIT).await;
    assert_eq!(seqs(&got), (1..=20).collect::<Vec<_>>(), "every event, in order");
    assert!(got.iter().all(|e| e.event == "bid"));
    assert_eq!(got[4].json()["sequence"], 5);

    // Gone for a while; ten more land meanwhile.
    drop(watcher);
    append_bids(&a.pool, &auction, 21, 10, 3, 0).await;
    let mut back = SseClient::connect(&url, Some("15")).await;
    assert_eq!(back.status, StatusCode::OK);
    let replayed = back.events(15, WAIT).await;
    assert_eq!(seqs(&replayed), (16..=30).collect::<Vec<_>>(), "no snapshot, no gap, no repeat");
    append_bids(&a.pool, &auction, 31, 5, 5, 0).await;
    let live = back.events(5, WAIT).await;
    assert_eq!(seqs(&live), (31..=35).collect::<Vec<_>>());
    assert!(back.next_event(Duration::from_millis(500)).await.is_none(), "nothing repeated");

    // Browsers that cannot set the header give it in the query.
    let mut query = SseClient::connect(&format!("{url}?last_event_id=33"), None).await;
    assert_eq!(seqs(&query.events(2, WAIT).await), vec![34, 35]);
}

/// `gavel_feed_watchers_dropped_total`, summed over its labels.
fn dropped(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("gavel_feed_watchers_dropped_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_never_reads_is_cut_off_while_appends_go_on_at_full_speed() {
    let db = fresh_database().await;
    let app = TestApp::spawn_on(&db, &[Role::Api, Role::Workers], |c| c.feed.buffer = 600).await;
    let auction = auction(&app).await;
    let path = format!("/v1/auctions/{auction}/events");
    let dropped_before = dropped(&app.metrics().await);
    const PAD: usize = 8 * 1024;

    // The rate with nobody watching.
    let started = Instant::now();
    append_bids(&app.pool, &auction, 1, 300, 10, PAD).await;
    let alone = 300.0 / started.elapsed().as_secs_f64();

    // A reader, and a client that sends its request and never reads a byte
    // (a small receive buffer, so the server's writes stall soon).
    let mut reader = SseClient::connect(&format!("{}{path}", app.base), Some("300")).await;
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small receive buffer");
    let addr = app.base.trim_start_matches("http://").parse().expect("the app's address");
    let mut stuck = socket.connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nLast-Event-ID: 300\r\n\r\n");
    stuck.write_all(request.as_bytes()).await.expect("send the request");

    // 16 MiB of events, far more than the socket buffers (~4 MiB) and the
    // queue (600 events, ~5 MiB) hold.
    let reading = tokio::spawn(async move {
        let got = reader.events(2000, WAIT).await;
        seqs(&got)
    });
    let started = Instant::now();
    append_bids(&app.pool, &auction, 301, 2000, 10, PAD).await;
    let watched = 2000.0 / started.elapsed().as_secs_f64();
    eprintln!("appends/s: {alone:.0} unwatched, {watched:.0} with a reader and a stuck client");
    assert!(watched > alone * 0.4, "appending slowed down: {watched:.0}/s against {alone:.0}/s");
    assert_eq!(reading.await.expect("the reader"), (301..=2300).collect::<Vec<_>>(), "the reader got everything");

    // The stuck client's connection is closed by the server: reading now
    // drains what was buffered and then meets the end.
    let closed = tokio::time::timeout(WAIT, async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            stuck.readable().await.expect("readable");
            match stuck.try_read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closed the stuck client's connection");
    let dropped_after = dropped(&app.metrics().await);
    assert!(dropped_after >= dropped_before + 1.0, "the drop is counted: {dropped_before} -> {dropped_after}");
}

async fn stock_of(pool: &PgPool, sale: &str) -> (i64, i64, i64) {
    sqlx::query_as("SELECT available::int8, held::int8, sold::int8 FROM sales WHERE id = $1")
        .bind(uuid_of(sale))
        .fetch_one(pool)
        .await
        .expect("the test's SQL runs")
}

fn stock(e: &SseEvent) -> (i64, i64, i64) {
    let d = e.json();
    (d["available"].as_i64().unwrap_or(-1), d["held"].as_i64().unwrap_or(-1), d["sold"].as_i64().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_publish_coalesced_stock_the_trailing_state_and_a_final_sold_out() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.active_sale(&merchant, json!({ "inventory": 60 })).await;
    let mut watcher = SseClient::connect(&format!("{}/v1/sales/{sale}/events", app.base), None).await;
    let snapshot = watcher.next_event(WAIT).await.expect("a snapshot");
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.json(), json!({ "status": "active", "available": 60, "held": 0, "sold": 0 }));

    // Five claims one after another, faster than ten a second: the first
    // publishes, the rest are held back, and the trailing state follows.
    let buyers = app.buyers(60).await;
    let started = Instant::now();
    for token in &buyers[..5] {
        let r = app.post(&format!("/v1/sales/{sale}/claims"), Some(token), json!({})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    }
    let mut events = Vec::new();
    while stock(events.last().unwrap_or(&snapshot)) != (55, 5, 0) {
        events.push(watcher.next_event(WAIT).await.expect("the trailing stock arrives"));
    }
    let elapsed = started.elapsed();
    assert!(
        events.len() as u128 <= elapsed.as_millis() / 100 + 2,
        "coalesced: {} stock events for 5 claims in {elapsed:?}",
        events.len()
    );

    // The rest, all at once, sell out.
    let started = Instant::now();
    let claim_path = format!("/v1/sales/{sale}/claims");
    let claims = buyers[5..].iter().map(|token| app.post(&claim_path, Some(token), json!({})));
    for r in futures::future::join_all(claims).await {
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    }
    let mut rest = Vec::new();
    while rest.last().is_none_or(|e: &SseEvent| e.event != "sold_out") {
        rest.push(watcher.next_event(WAIT).await.expect("sold_out arrives"));
    }
    let elapsed = started.elapsed();
    let stocks: Vec<&SseEvent> = rest.iter().filter(|e| e.event == "stock").collect();
    assert!(
        stocks.len() as u128 <= elapsed.as_millis() / 100 + 2,
        "at most about ten a second: {} in {elapsed:?}",
        stocks.len()
    );
    let last = stocks.last().expect("a stock event before sold_out");
    assert_eq!(stock(last), (0, 60, 0));
    assert_eq!(stock(last), stock_of(&app.pool, &sale).await, "the last stock is the database's");
    let all: Vec<i64> = events.iter().chain(&rest).map(SseEvent::seq).collect();
    assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "ids count up without gaps: {all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sales_start_and_end_are_on_its_feed() {
    let app = TestApp::spawn().await;
    let merchant = app.merchant().await;
    let sale = app.sale(&merchant, json!({ "inventory": 3, "starts_at": in_secs(1), "duration_seconds": 2 })).await;
    let mut watcher = SseClient::connect(&format!("{}/v1/sales/{}/events", app.base, sale.id), None).await;
    let snapshot = watcher.next_event(WAIT).await.expect("a snapshot");
    assert_eq!(snapshot.json()["status"], "scheduled");
    let events = watcher.events(3, WAIT).await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, vec!["started", "stock", "ended"], "{events:?}");
    assert_eq!(stock(&events[1]), (3, 0, 0));
    assert_eq!(seqs(&events), vec![1, 2, 3]);

    // A cancelled sale says so.
    let other = app.sale(&merchant, json!({ "starts_at": in_secs(600) })).await;
    let mut watcher = SseClient::connect(&format!("{}/v1/sales/{}/events", app.base, other.id), Some("0")).await;
    let r = app.post(&format!("/v1/sales/{}/cancel", other.id), Some(&merchant.key), json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let names: Vec<String> = watcher.events(2, WAIT).await.into_iter().map(|e| e.event).collect();
    assert_eq!(names, vec!["stock", "cancelled"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_come_as_comments_and_bad_requests_are_problems() {
    let db = fresh_database().await;
    let app = TestApp::spawn_on(&db, &[Role::Api, Role::Workers], |c| {
        c.feed.heartbeat_ms = 200;
        c.feed.max_watchers = 1;
    })
    .await;
    let merchant = app.merchant().await;
    let sale = app.sale(&merchant, json!({ "starts_at": in_secs(600) })).await;
    let url = format!("{}/v1/sales/{}/events", app.base, sale.id);
    let mut watcher = SseClient::connect(&url, Some("0")).await;
    let beat = watcher.next_block(Duration::from_secs(3)).await.expect("a heartbeat");
    assert_eq!(beat.comment.as_deref(), Some("heartbeat"), "{beat:?}");

    // One watcher is this process's most: the next is told to come back.
    let full = SseClient::connect(&url, None).await;
    assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(full.headers.contains_key("retry-after"));
    let body: Value = serde_json::from_str(&full.text().await).expect("a problem");
    assert_eq!(body["code"], "too_many_watchers");
    drop(watcher);

    let problem = |path: String, id: Option<&'static str>| {
        let base = app.base.clone();
        async move {
            let c = SseClient::connect(&format!("{base}{path}"), id).await;
            let (status, ctype) = (c.status, c.headers["content-type"].to_str().unwrap_or("").to_owned());
            let body: Value = serde_json::from_str(&c.text().await).expect("a problem body");
            assert_eq!(ctype, "application/problem+json");
            (status, body)
        }
    };
    // Give the dropped watcher's slot a moment to come back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let unknown_sale = format!("/v1/sales/sale_{}/events", uuid::Uuid::now_v7().simple());
    let (status, body) = problem(unknown_sale, None).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let unknown_auction = format!("/v1/auctions/auc_{}/events", uuid::Uuid::now_v7().simple());
    let (status, _) = problem(unknown_auction, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = problem("/v1/sales/nonsense/events".into(), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = problem(format!("/v1/sales/{}/events", sale.id), Some("yesterday")).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_request")));
    assert_eq!(body["field"], "Last-Event-ID");
    let (status, body) = problem(format!("/v1/sales/{}/events?last_event_id=-4", sale.id), None).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("last_event_id")));
}
