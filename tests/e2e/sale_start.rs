//! The sale-start fan-out at scale, over a real PostgreSQL and real SMTP and
//! HTTP/2 to the stand-ins: 20,000 recipients (watchers and deal
//! subscribers overlapping, some opted out, some with two devices) are
//! prepared before the start, nothing goes out until the sale starts, then
//! every opted-in buyer gets exactly one message per enabled channel and
//! device — across a SIGKILL of the notifier in the middle of it.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use gavel::Role;
use gavel_standins::apns::{ApnsStandIn, ApnsStandInConfig};
use gavel_standins::fcm::{FcmStandIn, FcmStandInConfig};
use gavel_standins::keys;
use gavel_standins::smtp::SmtpStandIn;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::child::ChildServer;
use crate::helpers::{Merchant, TestApp, eventually, fresh_database, uuid_of};

/// The audience: watchers (i % 3 != 1) ∪ deal subscribers (i % 3 != 0).
const AUDIENCE: usize = 20_000;
/// Buyers with devices who neither watch nor subscribe: they hear nothing.
const OUTSIDERS: usize = 500;

/// The stand-ins, and the environment that points a notifier at them.
struct Providers {
    smtp: SmtpStandIn,
    apns: ApnsStandIn,
    fcm: FcmStandIn,
    env: Vec<(&'static str, String)>,
}

async fn providers() -> Providers {
    let local = ([127, 0, 0, 1], 0).into();
    let smtp = SmtpStandIn::start(local, local).await.expect("smtp stand-in");
    let p8 = keys::new_apns_p8().expect("a P-256 key");
    let (key_id, team_id, topic) = ("KEY1234567", "TEAM123456", "com.gavel.app");
    let apns = ApnsStandIn::start(
        local,
        ApnsStandInConfig {
            public_key: keys::apns_public_key(&p8).expect("the public half"),
            key_id: key_id.into(),
            team_id: team_id.into(),
            topic: topic.into(),
        },
    )
    .await
    .expect("apns stand-in");
    let fcm = FcmStandIn::start(local, FcmStandInConfig::test_account("gavel-test").expect("test account"))
        .await
        .expect("fcm stand-in");
    let dir = std::env::temp_dir().join(format!("gavel-sale-start-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let (key_file, account_file) = (dir.join("apns.p8"), dir.join("fcm.json"));
    std::fs::write(&key_file, &p8).expect("write the key");
    std::fs::write(&account_file, fcm.service_account_json()).expect("write the account");
    let env = vec![
        ("SMTP_URL", smtp.url()),
        ("APNS_KEY_FILE", key_file.display().to_string()),
        ("APNS_KEY_ID", key_id.into()),
        ("APNS_TEAM_ID", team_id.into()),
        ("APNS_TOPIC", topic.into()),
        ("APNS_ENDPOINT", apns.endpoint()),
        ("FCM_PROJECT_ID", "gavel-test".into()),
        ("FCM_SERVICE_ACCOUNT_FILE", account_file.display().to_string()),
        ("FCM_API_BASE", fcm.api_base()),
        ("GAVEL_NOTIFIER__DELIVERY_BATCH", "200".into()),
        ("GAVEL_NOTIFIER__CONCURRENCY", "64".into()),
        ("GAVEL_NOTIFIER__DELIVERY_WORKERS", "2".into()),
        ("GAVEL_NOTIFIER__POOL_SIZE", "8".into()),
    ];
    Providers { smtp, apns, fcm, env }
}

fn apns_token(i: usize) -> String {
    format!("{i:064x}")
}

fn fcm_token(i: usize) -> String {
    format!("fcm-token-{i}")
}

fn email(i: usize) -> String {
    format!("b{i}@sale-start.test")
}

/// What buyer `i` should get: (email, apns token, fcm token), each if due.
fn expected(i: usize) -> (Option<String>, Option<String>, Option<String>) {
    if i >= AUDIENCE || i % 10 == 7 {
        return (None, None, None); // outsider, or `sale_starting` switched off
    }
    let (email_on, push_on) = (i % 10 != 8, i % 10 != 9);
    (
        email_on.then(|| email(i)),
        (push_on && i.is_multiple_of(2)).then(|| apns_token(i)),
        (push_on && i.is_multiple_of(5)).then(|| fcm_token(i)),
    )
}

/// Seeds the buyers, their preferences, devices and watches with bulk SQL.
async fn seed(pool: &PgPool, product: Uuid) {
    let n = AUDIENCE + OUTSIDERS;
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let emails: Vec<String> = (0..n).map(email).collect();
    let names: Vec<String> = (0..n).map(|i| format!("Buyer {i}")).collect();
    sqlx::query(
        "INSERT INTO buyers (id, email, password_hash, name)
         SELECT id, email, 'not-a-login', name FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS u(id, email, name)",
    )
    .bind(&ids)
    .bind(&emails)
    .bind(&names)
    .execute(pool)
    .await
    .expect("buyers");
    let watchers: Vec<Uuid> = (0..AUDIENCE).filter(|i| i % 3 != 1).map(|i| ids[i]).collect();
    sqlx::query("INSERT INTO watches (buyer_id, product_id) SELECT unnest($1::uuid[]), $2")
        .bind(&watchers)
        .bind(product)
        .execute(pool)
        .await
        .expect("watches");
    let (mut p_ids, mut p_email, mut p_push, mut p_deals, mut p_kinds) = (vec![], vec![], vec![], vec![], vec![]);
    for (i, id) in ids.iter().enumerate() {
        let deals = i < AUDIENCE && i % 3 != 0;
        p_ids.push(*id);
        p_deals.push(deals);
        p_email.push(i % 10 != 8);
        p_push.push(i % 10 != 9);
        p_kinds.push(if i % 10 == 7 { json!({ "sale_starting": false }) } else { json!({}) });
    }
    sqlx::query(
        "INSERT INTO notification_preferences (buyer_id, email, push, deals, kinds)
         SELECT * FROM UNNEST($1::uuid[], $2::bool[], $3::bool[], $4::bool[], $5::jsonb[])",
    )
    .bind(&p_ids)
    .bind(&p_email)
    .bind(&p_push)
    .bind(&p_deals)
    .bind(&p_kinds)
    .execute(pool)
    .await
    .expect("preferences");
    let (mut d_buyer, mut d_platform, mut d_token) = (vec![], vec![], vec![]);
    for (i, id) in ids.iter().enumerate() {
        if i.is_multiple_of(2) || i >= AUDIENCE {
            d_buyer.push(*id);
            d_platform.push("apns".to_owned());
            d_token.push(apns_token(i));
        }
        if i.is_multiple_of(5) {
            d_buyer.push(*id);
            d_platform.push("fcm".to_owned());
            d_token.push(fcm_token(i));
        }
    }
    let d_ids: Vec<Uuid> = d_buyer.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO devices (id, buyer_id, platform, token)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[])",
    )
    .bind(&d_ids)
    .bind(&d_buyer)
    .bind(&d_platform)
    .bind(&d_token)
    .execute(pool)
    .await
    .expect("devices");
}

/// Deliveries of the sale by status.
async fn statuses(pool: &PgPool, sale: Uuid) -> HashMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>("SELECT status, count(*) FROM deliveries WHERE sale_id = $1 GROUP BY status")
        .bind(sale)
        .fetch_all(pool)
        .await
        .expect("statuses")
        .into_iter()
        .collect()
}

/// What the stand-ins received, counted per address (per dedupe key: one
/// sale, so one key per buyer's email and per device).
fn received(p: &Providers) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for m in p.smtp.messages() {
        for to in m.to {
            *counts.entry(to).or_insert(0) += 1;
        }
    }
    for d in p.apns.deliveries() {
        *counts.entry(d.token).or_insert(0) += 1;
    }
    for m in p.fcm.messages() {
        *counts.entry(m.token).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_thousand_recipients_get_one_message_per_channel_and_device_across_a_sigkill() {
    let db = fresh_database().await;
    let app = TestApp::spawn_on(&db, &[Role::Api, Role::Workers], |_| {}).await;
    let providers = providers().await;
    let merchant = app.merchant().await;
    let product = app.product(&merchant).await;
    seed(&app.pool, uuid_of(&product)).await;
    let want: HashSet<String> = (0..AUDIENCE + OUTSIDERS)
        .flat_map(|i| {
            let (e, a, f) = expected(i);
            [e, a, f].into_iter().flatten()
        })
        .collect();

    let notifier = ChildServer::start_roles(&db, &["notifier"], &providers.env).await;
    let starts_at = Utc::now() + chrono::Duration::seconds(40);
    let sale = app
        .as_(&merchant.key)
        .create_sale(json!({
            "product_id": product, "price": 1999, "currency": "usd", "inventory": 10,
            "starts_at": starts_at.to_rfc3339(),
        }))
        .await
        .expect("create a sale");
    let sale_id = uuid_of(&sale.id);

    // Prepared ahead: every row held, nothing sent before the start.
    let held = eventually("the recipients are prepared", Duration::from_secs(35), || async {
        let s = statuses(&app.pool, sale_id).await;
        let held = s.get("held").copied().unwrap_or(0);
        (held as usize == want.len()).then_some(held)
    })
    .await;
    assert!(Utc::now() < starts_at, "prepared before the start");
    assert!(received(&providers).is_empty(), "nothing is sent before the sale starts");
    assert_eq!(statuses(&app.pool, sale_id).await.len(), 1, "only held rows: {held}");

    // The start releases them; the notifier is killed mid-delivery.
    let kill_after = want.len() / 5;
    eventually("deliveries are under way", Duration::from_secs(90), || async {
        let n: usize = received(&providers).values().sum();
        (n >= kill_after).then_some(())
    })
    .await;
    notifier.kill();
    let in_flight: HashSet<String> = sqlx::query_scalar(
        "SELECT coalesce(dv.token, b.email) FROM deliveries d JOIN buyers b ON b.id = d.buyer_id
         LEFT JOIN devices dv ON dv.id = d.device_id
         WHERE d.sale_id = $1 AND (d.status = 'sending' OR (d.status = 'held' AND EXISTS (
               SELECT 1 FROM sale_notice_chunks k
               WHERE k.sale_id = d.sale_id AND k.chunk = d.chunk AND k.lease_owner IS NOT NULL)))",
    )
    .bind(sale_id)
    .fetch_all(&app.pool)
    .await
    .expect("the rows in flight at the kill")
    .into_iter()
    .collect();
    let at_kill: usize = received(&providers).values().sum();
    assert!(at_kill < want.len(), "the kill came mid-delivery ({at_kill} of {})", want.len());

    let _notifier = ChildServer::start_roles(&db, &["notifier"], &providers.env).await;
    eventually("every due message arrives", Duration::from_secs(180), || async {
        let got = received(&providers);
        want.iter().all(|k| got.contains_key(k)).then_some(())
    })
    .await;
    eventually("every delivery is recorded sent", Duration::from_secs(30), || async {
        let s = statuses(&app.pool, sale_id).await;
        (s.get("sent").copied().unwrap_or(0) as usize == want.len() && s.len() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let got = received(&providers);
    let strangers: Vec<&String> = got.keys().filter(|k| !want.contains(*k)).take(5).collect();
    assert!(strangers.is_empty(), "opted-out buyers and outsiders got nothing: {strangers:?}");
    let twice: Vec<(&String, &usize)> = got.iter().filter(|(_, n)| **n > 1).collect();
    for (key, n) in &twice {
        assert!(
            in_flight.contains(*key) && **n == 2,
            "{key} received {n} times; only a send in flight at the kill may repeat, once"
        );
    }
    // A repeat carries the first one's identity (apns-id and collapse id,
    // FCM tag, Message-ID), so each device and mailbox shows one message.
    let mut shown = providers.smtp.shown();
    shown.extend(providers.apns.shown());
    shown.extend(providers.fcm.shown());
    let shown_twice: Vec<(&String, &usize)> = shown.iter().filter(|(_, n)| **n != 1).take(5).collect();
    assert!(shown_twice.is_empty(), "every recipient is shown one message: {shown_twice:?}");
    assert_eq!(shown.len(), want.len(), "every recipient is shown the message");
    let emails = want.iter().filter(|k| k.contains('@')).count();
    assert!(emails > 10_000 && want.len() > 20_000, "the scale is as meant: {emails} emails, {} in all", want.len());
    eprintln!(
        "sale start: {} deliveries ({emails} emails), {} in flight at the kill, {} repeated",
        want.len(),
        in_flight.len(),
        twice.len()
    );
}

/// Three deal subscribers (one also a watcher), email only.
async fn subscribers(pool: &PgPool, product: Uuid) -> Vec<String> {
    let emails = email_buyers(pool, "deal", 3).await;
    let ids = buyer_ids(pool, &emails).await;
    sqlx::query("INSERT INTO notification_preferences (buyer_id, deals) SELECT unnest($1::uuid[]), true")
        .bind(&ids)
        .execute(pool)
        .await
        .expect("deals on");
    watch(pool, ids[0], product).await;
    emails
}

/// `n` buyers (no devices, default preferences: email on); their emails.
async fn email_buyers(pool: &PgPool, tag: &str, n: usize) -> Vec<String> {
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let emails: Vec<String> = (0..n).map(|i| format!("{tag}{i}-{}@sale-start.test", Uuid::new_v4().simple())).collect();
    sqlx::query(
        "INSERT INTO buyers (id, email, password_hash) SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[])",
    )
    .bind(&ids)
    .bind(&emails)
    .bind(vec!["not-a-login".to_owned(); n])
    .execute(pool)
    .await
    .expect("buyers");
    emails
}

async fn buyer_ids(pool: &PgPool, emails: &[String]) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for email in emails {
        ids.push(
            sqlx::query_scalar("SELECT id FROM buyers WHERE email = $1")
                .bind(email)
                .fetch_one(pool)
                .await
                .expect("the buyer"),
        );
    }
    ids
}

async fn watch(pool: &PgPool, buyer: Uuid, product: Uuid) {
    sqlx::query("INSERT INTO watches (buyer_id, product_id) VALUES ($1, $2)")
        .bind(buyer)
        .bind(product)
        .execute(pool)
        .await
        .expect("a watch");
}

/// An app with the notifier and an SMTP stand-in, a merchant's product and
/// its three email-only subscribers ([`subscribers`]).
struct EmailOnly {
    smtp: SmtpStandIn,
    app: TestApp,
    merchant: Merchant,
    product: String,
    emails: Vec<String>,
}

impl EmailOnly {
    async fn start() -> Self {
        let smtp = SmtpStandIn::start(([127, 0, 0, 1], 0).into(), ([127, 0, 0, 1], 0).into()).await.expect("smtp");
        let url = smtp.url();
        let app = TestApp::spawn_on(&fresh_database().await, &[Role::Api, Role::Workers, Role::Notifier], |c| {
            c.notifier.smtp_url = Some(url)
        })
        .await;
        let merchant = app.merchant().await;
        let product = app.product(&merchant).await;
        let emails = subscribers(&app.pool, uuid_of(&product)).await;
        Self { smtp, app, merchant, product, emails }
    }
}

/// Waits for the subscribers' emails, then checks that each got exactly one
/// (the watcher who is also a subscriber included once).
async fn one_email_each(smtp: &SmtpStandIn, emails: &[String], within: Duration) {
    eventually("one email per subscriber", within, || async { (smtp.messages().len() >= emails.len()).then_some(()) })
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut to: Vec<String> = smtp.messages().into_iter().flat_map(|m| m.to).collect();
    to.sort();
    let mut want = emails.to_vec();
    want.sort();
    assert_eq!(to, want, "one email each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_sale_sends_nothing_and_a_rescheduled_one_waits_for_its_new_start() {
    let EmailOnly { smtp, app, merchant, product, emails } = EmailOnly::start().await;
    let api = app.as_(&merchant.key);
    let sale_at = |secs: i64| {
        json!({ "product_id": product, "price": 500, "currency": "usd", "inventory": 5,
                "starts_at": (Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339() })
    };
    let prepared = |sale: Uuid| {
        let pool = app.pool.clone();
        async move {
            eventually("the sale is prepared", Duration::from_secs(15), || async {
                (statuses(&pool, sale).await.get("held") == Some(&3)).then_some(())
            })
            .await
        }
    };

    // Cancelled before its start: its prepared rows are skipped, nothing is sent.
    let cancelled = api.create_sale(sale_at(6)).await.expect("a sale");
    prepared(uuid_of(&cancelled.id)).await;
    api.cancel_sale(&cancelled.id).await.expect("cancelled");
    eventually("the cancelled sale's rows are skipped", Duration::from_secs(15), || async {
        (statuses(&app.pool, uuid_of(&cancelled.id)).await.get("skipped") == Some(&3)).then_some(())
    })
    .await;

    // Rescheduled later: nothing at the old start, one email each at the new one.
    let moved = api.create_sale(sale_at(6)).await.expect("a sale");
    prepared(uuid_of(&moved.id)).await;
    let new_start = Utc::now() + chrono::Duration::seconds(14);
    api.patch_sale(&moved.id, Some("\"1\""), json!({ "starts_at": new_start.to_rfc3339() }))
        .await
        .expect("rescheduled");
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(smtp.messages().is_empty(), "nothing at the old start, nor for the cancelled sale");
    assert_eq!(statuses(&app.pool, uuid_of(&moved.id)).await.get("held"), Some(&3), "still held");
    app.wait_for_status(&merchant, &moved.id, "active", Duration::from_secs(20)).await;
    one_email_each(&smtp, &emails, Duration::from_secs(20)).await;
    assert!(Utc::now() >= new_start, "sent at the new start, not the old one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_who_opts_out_and_back_in_before_the_start_is_sent_the_notice_once() {
    let EmailOnly { smtp, app, merchant, product, emails } = EmailOnly::start().await;
    let starts_at = Utc::now() + chrono::Duration::seconds(20);
    let sale = app
        .as_(&merchant.key)
        .create_sale(json!({ "product_id": product, "price": 500, "currency": "usd", "inventory": 5,
                             "starts_at": starts_at.to_rfc3339() }))
        .await
        .expect("a sale");
    let sale_id = uuid_of(&sale.id);
    // The subscriber who does not watch the product (subscribers()[1]).
    let buyer = buyer_ids(&app.pool, &emails[1..2]).await[0];
    let held_now = |n: i64| {
        let pool = app.pool.clone();
        async move {
            eventually(&format!("{n} rows held"), Duration::from_secs(10), || async {
                (statuses(&pool, sale_id).await.get("held") == Some(&n)).then_some(())
            })
            .await
        }
    };
    // Deals off, then on again, each seen by a refresh of the preparation.
    let deals_then_refresh = |on: bool| {
        let pool = app.pool.clone();
        async move {
            sqlx::query("UPDATE notification_preferences SET deals = $2 WHERE buyer_id = $1")
                .bind(buyer)
                .bind(on)
                .execute(&pool)
                .await
                .expect("deals");
            sqlx::query(
                "UPDATE sale_notice_preparations SET prepared_at = now() - interval '1 hour' WHERE sale_id = $1",
            )
            .bind(sale_id)
            .execute(&pool)
            .await
            .expect("due for a refresh");
        }
    };
    held_now(3).await;
    deals_then_refresh(false).await;
    held_now(2).await;
    deals_then_refresh(true).await;
    held_now(3).await;
    let kind: String = sqlx::query_scalar(
        "SELECT k.kind FROM deliveries d JOIN sale_notice_chunks k ON k.sale_id = d.sale_id AND k.chunk = d.chunk
         WHERE d.sale_id = $1 AND d.buyer_id = $2",
    )
    .bind(sale_id)
    .bind(buyer)
    .fetch_one(&app.pool)
    .await
    .expect("the revived row's chunk");
    assert_eq!(kind, "email", "a revived email is in an email chunk");
    assert!(Utc::now() < starts_at, "all before the start");

    // The subscriber who came back is sent it once, as everyone else.
    one_email_each(&smtp, &emails, Duration::from_secs(40)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyers_who_join_the_audience_after_the_last_preparation_are_caught_up_at_the_start() {
    let EmailOnly { smtp, app, merchant, product, emails } = EmailOnly::start().await;
    let sale = app
        .as_(&merchant.key)
        .create_sale(json!({ "product_id": product, "price": 500, "currency": "usd", "inventory": 5,
                             "starts_at": (Utc::now() + chrono::Duration::seconds(6)).to_rfc3339() }))
        .await
        .expect("a sale");
    let sale_id = uuid_of(&sale.id);
    eventually("the sale is prepared", Duration::from_secs(10), || async {
        (statuses(&app.pool, sale_id).await.get("held") == Some(&3)).then_some(())
    })
    .await;
    // After that preparation, well within a refresh period of the start: a
    // new watcher and a new deal subscriber.
    let late = email_buyers(&app.pool, "late", 2).await;
    let ids = buyer_ids(&app.pool, &late).await;
    watch(&app.pool, ids[0], uuid_of(&product)).await;
    sqlx::query("INSERT INTO notification_preferences (buyer_id, deals) VALUES ($1, true)")
        .bind(ids[1])
        .execute(&app.pool)
        .await
        .expect("deals on");
    assert_eq!(statuses(&app.pool, sale_id).await.get("held"), Some(&3), "not prepared for them before the start");

    app.wait_for_status(&merchant, &sale.id, "active", Duration::from_secs(20)).await;
    let everyone: Vec<String> = emails.iter().chain(&late).cloned().collect();
    one_email_each(&smtp, &everyone, Duration::from_secs(20)).await;
    let pending: Option<bool> =
        sqlx::query_scalar("SELECT prepared_at < released_at FROM sale_notice_preparations WHERE sale_id = $1")
            .bind(sale_id)
            .fetch_one(&app.pool)
            .await
            .expect("the preparation");
    assert_eq!(pending, Some(false), "caught up once");
}
