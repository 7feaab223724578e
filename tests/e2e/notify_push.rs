//! Push end to end through the notifier role: an outbox event is fanned out,
//! delivered by the delivery loop through the real APNs and FCM channels
//! (HTTP/2 to the stand-ins over TCP) with the providers' headers; a token the
//! stand-in reports dead is retired by the live delivery and never used
//! again; preferences switch kinds and channels off (critical kinds pass a
//! kind switch, never a channel switch).

use std::time::Duration;

use gavel::Role;
use gavel::config::Config;
use gavel_domain::events::{self, BidOutbid, DomainEvent, OrderSettled};
use gavel_domain::ids::{AuctionId, BuyerId, MerchantId, OrderId, PaymentId};
use gavel_domain::money::Money;
use gavel_notifier::apns::ApnsConfig;
use gavel_notifier::fcm::FcmConfig;
use gavel_standins::apns::{ApnsFaults, ApnsStandIn, ApnsStandInConfig};
use gavel_standins::fcm::{FcmStandIn, FcmStandInConfig};
use gavel_standins::keys;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{TestApp, eventually, fresh_database};

pub const TOPIC: &str = "dev.gavel.app";

/// The two push stand-ins and the settings that point Gavel at them.
pub struct Push {
    pub apns: ApnsStandIn,
    pub fcm: FcmStandIn,
    apns_config: ApnsConfig,
    fcm_config: FcmConfig,
}

fn scratch_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("gavel-e2e-{}-{name}", Uuid::new_v4().simple()));
    std::fs::write(&path, text).expect("write a scratch file");
    path
}

impl Push {
    pub async fn start() -> Self {
        let p8 = keys::new_apns_p8().expect("a P-256 key");
        let apns = ApnsStandIn::start(
            ([127, 0, 0, 1], 0).into(),
            ApnsStandInConfig {
                public_key: keys::apns_public_key(&p8).expect("its public key"),
                key_id: "KEY1234567".into(),
                team_id: "TEAM123456".into(),
                topic: TOPIC.into(),
            },
        )
        .await
        .expect("the APNs stand-in starts");
        let fcm = FcmStandIn::start(
            ([127, 0, 0, 1], 0).into(),
            FcmStandInConfig::test_account("gavel-e2e").expect("the test service account"),
        )
        .await
        .expect("the FCM stand-in starts");
        let apns_config = ApnsConfig {
            key_file: Some(scratch_file("apns.p8", &p8)),
            key_id: "KEY1234567".into(),
            team_id: "TEAM123456".into(),
            topic: TOPIC.into(),
            endpoint: apns.endpoint(),
            ..ApnsConfig::default()
        };
        let fcm_config = FcmConfig {
            project_id: "gavel-e2e".into(),
            service_account_file: Some(scratch_file("fcm.json", &fcm.service_account_json())),
            api_base: fcm.api_base(),
            ..FcmConfig::default()
        };
        Self { apns, fcm, apns_config, fcm_config }
    }

    /// Points a configuration's push channels at the stand-ins.
    pub fn configure(&self, c: &mut Config) {
        c.apns = self.apns_config.clone();
        c.fcm = self.fcm_config.clone();
    }
}

pub fn apns_token(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// API and notifier over `db` with push through `push`, `tweak` on top.
pub async fn app_on(db: &str, roles: &[Role], push: &Push, tweak: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_on(db, roles, |c| {
        push.configure(c);
        tweak(c);
    })
    .await
}

/// A merchant and one signed-up buyer: (merchant, buyer id, buyer's token).
pub async fn parties(app: &TestApp) -> (MerchantId, BuyerId, String) {
    app.merchant().await;
    let token = app.buyers(1).await.remove(0);
    let merchant = sqlx::query_scalar("SELECT id FROM merchants").fetch_one(&app.pool).await.expect("merchant");
    let buyer = sqlx::query_scalar("SELECT id FROM buyers").fetch_one(&app.pool).await.expect("the buyer");
    (merchant, buyer, token)
}

/// Registers one device; returns its id.
pub async fn device(app: &TestApp, buyer: &str, platform: &str, token: &str) -> String {
    let r = app.post("/v1/buyers/me/devices", Some(buyer), json!({ "platform": platform, "token": token })).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    r.body["id"].as_str().expect("a device id").to_owned()
}

fn usd(minor: i64) -> Money {
    Money::new(minor, "usd".parse().expect("usd"))
}

pub fn paid(buyer: BuyerId) -> DomainEvent {
    DomainEvent::OrderPaid(OrderSettled {
        order_id: OrderId::new(),
        sale_id: None,
        claim_id: None,
        buyer_id: buyer,
        payment_id: PaymentId::new(),
        amount: usd(4250),
    })
}

pub fn refunded(buyer: BuyerId) -> DomainEvent {
    DomainEvent::OrderRefunded(OrderSettled {
        order_id: OrderId::new(),
        sale_id: None,
        claim_id: None,
        buyer_id: buyer,
        payment_id: PaymentId::new(),
        amount: usd(1999),
    })
}

pub fn outbid(buyer: BuyerId, auction: AuctionId, sequence: u64, price: i64) -> DomainEvent {
    DomainEvent::BidOutbid(BidOutbid {
        auction_id: auction,
        buyer_id: buyer,
        sequence,
        current_price: usd(price),
        min_next_bid: usd(price + 100),
        ends_at: chrono::Utc::now() + chrono::Duration::hours(1),
    })
}

/// Records `event` in a committed transaction; returns the event row's id.
pub async fn record(pool: &PgPool, merchant: MerchantId, event: &DomainEvent) -> Uuid {
    let mut tx = pool.begin().await.expect("begin");
    assert!(events::record(&mut tx, merchant, event).await.expect("record"), "a new event");
    tx.commit().await.expect("commit");
    sqlx::query_scalar("SELECT id FROM events WHERE dedupe_key = $1")
        .bind(event.dedupe_key())
        .fetch_one(pool)
        .await
        .expect("the event row")
}

/// Waits until no delivery is pending or sending, then a little longer.
pub async fn settle(pool: &PgPool) {
    eventually("every delivery settles", Duration::from_secs(30), || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending'))
                  + (SELECT count(*) FROM events WHERE notified_at IS NULL)",
        )
        .fetch_one(pool)
        .await
        .expect("count");
        (open == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// (kind, channel, status) of every delivery, oldest first.
pub async fn deliveries(pool: &PgPool) -> Vec<(String, String, String)> {
    sqlx::query_as("SELECT kind, channel, status FROM deliveries ORDER BY created_at, channel")
        .fetch_all(pool)
        .await
        .expect("deliveries")
}

#[tokio::test]
async fn an_order_paid_and_an_outbid_reach_apns_and_fcm_with_the_providers_headers() {
    let push = Push::start().await;
    let app = app_on(&fresh_database().await, &[Role::Api, Role::Notifier], &push, |_| {}).await;
    let (merchant, buyer, token) = parties(&app).await;
    device(&app, &token, "apns", &apns_token(1)).await;
    device(&app, &token, "fcm", "fcm-token-1").await;

    let order_event = paid(buyer);
    record(&app.pool, merchant, &order_event).await;
    let auction = AuctionId::new();
    record(&app.pool, merchant, &outbid(buyer, auction, 2, 12_500)).await;
    settle(&app.pool).await;

    let apns = push.apns.deliveries();
    assert_eq!(apns.len(), 2, "{apns:?}");
    let now = chrono::Utc::now().timestamp();
    let critical = apns.iter().find(|d| d.priority == "10").expect("the order's push at priority 10");
    assert_eq!((critical.token.as_str(), critical.topic.as_str()), (apns_token(1).as_str(), TOPIC));
    assert_eq!(critical.push_type, "alert");
    // The delivery's id is the push's identity: apns-id, and its collapse id
    // (it has no collapse key), so a repeat after a crash replaces it.
    let apns_ids: Vec<String> = sqlx::query_scalar("SELECT id::text FROM deliveries WHERE channel = 'apns'")
        .fetch_all(&app.pool)
        .await
        .expect("the apns deliveries");
    let delivery = critical.apns_id.to_lowercase();
    assert!(apns_ids.contains(&delivery), "apns-id {delivery} is a delivery's id: {apns_ids:?}");
    assert_eq!(critical.collapse_id, Some(format!("dlv_{}", delivery.replace('-', ""))));
    let expires: i64 = critical.expiration.as_deref().expect("apns-expiration").parse().expect("a number");
    assert!((now + 86_000..=now + 86_500).contains(&expires), "a critical push is kept a day: {expires}");
    assert_eq!(critical.payload["aps"]["alert"]["title"].as_str().map(|t| !t.is_empty()), Some(true));
    let OrderSettled { order_id, .. } = match &order_event {
        DomainEvent::OrderPaid(s) => s.clone(),
        _ => unreachable!("an order.paid event"),
    };
    assert_eq!(critical.payload["order_id"], order_id.to_string());

    let outbid_push = apns.iter().find(|d| d.priority == "5").expect("the outbid at priority 5");
    assert_eq!(outbid_push.collapse_id.as_deref(), Some(format!("outbid:{auction}").as_str()));
    let expires: i64 = outbid_push.expiration.as_deref().expect("apns-expiration").parse().expect("a number");
    assert!((now + 3_400..=now + 3_700).contains(&expires), "a non-critical push is kept an hour: {expires}");
    let body = outbid_push.payload["aps"]["alert"]["body"].as_str().unwrap_or_default();
    assert!(body.contains("125.00 USD") && body.contains("126.00 USD"), "{body}");
    assert!(push.apns.requests().iter().all(|r| r.http_version == "HTTP/2.0"));

    let fcm = push.fcm.messages();
    assert_eq!(fcm.len(), 2, "{fcm:?}");
    assert!(fcm.iter().all(|m| m.token == "fcm-token-1"));
    let high = fcm.iter().find(|m| m.message["android"]["priority"] == "HIGH").expect("the order's push, HIGH");
    assert_eq!(high.message["android"].get("collapse_key"), None);
    let tag = high.message["android"]["notification"]["tag"].as_str().unwrap_or_default();
    assert!(tag.starts_with("dlv_") && tag.len() == 36, "the delivery's own tag: {tag}");
    assert_eq!(high.message["data"]["order_id"], order_id.to_string());
    let normal = fcm.iter().find(|m| m.message["android"]["priority"] == "NORMAL").expect("the outbid, NORMAL");
    assert_eq!(normal.message["android"]["collapse_key"], format!("outbid:{auction}"));
    assert_eq!(normal.message["android"]["notification"]["tag"], format!("outbid:{auction}"));
    assert_eq!(normal.message["data"]["kind"], "bid.outbid");

    let rows = deliveries(&app.pool).await;
    assert_eq!(rows.iter().filter(|r| r.2 == "sent").count(), 4, "{rows:?}");
}

#[tokio::test]
async fn a_token_apns_reports_dead_is_retired_by_the_live_delivery_and_never_used_again() {
    let push = Push::start().await;
    let app = app_on(&fresh_database().await, &[Role::Api, Role::Notifier], &push, |_| {}).await;
    let (merchant, buyer, token) = parties(&app).await;
    let dead = apns_token(7);
    push.apns.set_faults(ApnsFaults {
        dead_tokens: [(dead.clone(), "Unregistered".to_owned())].into_iter().collect(),
        ..ApnsFaults::default()
    });
    let dead_id = device(&app, &token, "apns", &dead).await;
    device(&app, &token, "fcm", "fcm-token-alive").await;

    record(&app.pool, merchant, &paid(buyer)).await;
    settle(&app.pool).await;
    let list = app.get("/v1/buyers/me/devices", Some(&token)).await;
    let listed: Vec<&Value> = list.body["data"].as_array().map(|d| d.iter().collect()).unwrap_or_default();
    let retired = listed.iter().find(|d| d["id"] == dead_id.as_str()).expect("the dead device is listed");
    assert_eq!(retired["status"], "retired", "{}", list.raw);
    assert!(retired["retired_at"].is_string(), "{}", list.raw);
    let skipped: (String, Value) = sqlx::query_as("SELECT status, attempt_log FROM deliveries WHERE channel = 'apns'")
        .fetch_one(&app.pool)
        .await
        .expect("the APNs delivery");
    assert_eq!(skipped.0, "skipped");
    assert!(skipped.1.to_string().contains("Unregistered"), "{}", skipped.1);

    // A later message goes to the live device only.
    record(&app.pool, merchant, &paid(buyer)).await;
    settle(&app.pool).await;
    let to_dead = push.apns.requests().iter().filter(|r| r.token == dead).count();
    assert_eq!(to_dead, 1, "the dead token is asked once, never again");
    assert!(push.apns.deliveries().is_empty());
    assert_eq!(push.fcm.messages().len(), 2, "the live FCM device gets both");
    let apns_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE channel = 'apns'")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(apns_rows, 1, "no delivery is made for a retired device");
}

#[tokio::test]
async fn a_kind_switched_off_is_not_pushed_while_a_critical_kind_is_and_a_channel_off_gets_nothing() {
    let push = Push::start().await;
    let app = app_on(&fresh_database().await, &[Role::Api, Role::Notifier], &push, |_| {}).await;
    let (merchant, buyer, token) = parties(&app).await;
    device(&app, &token, "apns", &apns_token(3)).await;
    let put = |body: Value| {
        let (app, token) = (&app, &token);
        async move {
            let r = app.request(Method::PUT, "/v1/buyers/me/preferences", Some(token), Some(body)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
        }
    };
    put(json!({ "email": true, "push": true, "deals": false, "kinds": { "outbid": false, "order_paid": false } }))
        .await;
    record(&app.pool, merchant, &outbid(buyer, AuctionId::new(), 1, 5_000)).await;
    record(&app.pool, merchant, &paid(buyer)).await;
    settle(&app.pool).await;
    let sent = push.apns.deliveries();
    assert_eq!(sent.len(), 1, "only the critical order.paid: {sent:?}");
    assert_eq!(sent[0].priority, "10");
    assert_eq!(deliveries(&app.pool).await.len(), 1, "no outbid delivery is made");

    // Push switched off: nothing, critical included.
    put(json!({ "email": true, "push": false, "deals": false })).await;
    record(&app.pool, merchant, &paid(buyer)).await;
    record(&app.pool, merchant, &outbid(buyer, AuctionId::new(), 1, 6_000)).await;
    settle(&app.pool).await;
    assert_eq!(push.apns.deliveries().len(), 1, "nothing more");
    assert_eq!(deliveries(&app.pool).await.len(), 1);
}
