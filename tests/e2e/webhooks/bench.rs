//! The webhook benchmark (ignored in the suite; README "Merchant webhooks"):
//!
//!     GAVEL_BENCH_WEBHOOKS=20000 cargo test --release --test e2e webhooks::bench -- --ignored --nocapture
//!
//! 1. Throughput: ten merchants with one endpoint each on one local receiver
//!    stand-in; N events are committed into the outbox at once; deliveries/s
//!    from the commit to the last delivery recorded (each attempt a committed
//!    `webhook_attempts` row).
//! 2. Isolation: the same with the first merchant's endpoint hanging (never
//!    answering; the attempt times out after the full 15 s): the other nine's
//!    delivery delay (the event's commit to the delivery's record), p50 / p99.

use std::time::{Duration, Instant};

use gavel_standins::webhook_receiver::ReceiverFaults;
use serde_json::Value;

use super::{app, endpoint, receiver};
use crate::helpers::{TestApp, eventually};

fn events() -> i64 {
    std::env::var("GAVEL_BENCH_WEBHOOKS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

/// Commits `per_merchant` `order.paid` events for each merchant, in one statement.
async fn flood(app: &TestApp, per_merchant: i64) {
    sqlx::query(
        "INSERT INTO events (id, merchant_id, type, subject_id, dedupe_key, payload)
         SELECT gen_random_uuid(), m.id, 'order.paid', 'ord_' || g, 'bench:' || m.id || ':' || g,
                jsonb_build_object('order_id', 'ord_' || g, 'amount', 1999, 'currency', 'usd')
         FROM merchants m, generate_series(1, $1) g",
    )
    .bind(per_merchant)
    .execute(&app.pool)
    .await
    .expect("the events are written");
}

async fn delivered(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark; see the module's docs"]
async fn bench_webhook_deliveries() {
    let n = events();
    let tune = |c: &mut gavel::Config| {
        c.webhooks.poll_interval_ms = 5;
        c.webhooks.pool_size = 24;
        c.webhooks.concurrency = 512;
        c.webhooks.per_endpoint_concurrency = 32;
        c.webhooks.fanout_batch = 1000;
        c.webhooks.timeout_ms = 15_000;
    };

    // 1. Throughput.
    let fast = receiver().await;
    let app = app(tune).await;
    for i in 0..10 {
        let merchant = app.merchant().await;
        endpoint(&app, &merchant, &fast.url(&format!("/m{i}")), Value::Null).await;
    }
    let started = Instant::now();
    flood(&app, n / 10).await;
    let total = (n / 10) * 10;
    eventually("every delivery is made", Duration::from_secs(600), || async {
        (delivered(&app).await >= total).then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    let attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_attempts").fetch_one(&app.pool).await.expect("count");
    println!(
        "webhooks throughput: {total} deliveries in {:.2} s = {:.0}/s ({attempts} attempts logged)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    drop(app);

    // 2. One of ten endpoints hanging for the full timeout.
    let hanging = receiver().await;
    hanging.set_faults(ReceiverFaults { hang: true, ..ReceiverFaults::default() });
    let app = super::app(tune).await;
    for i in 0..10 {
        let merchant = app.merchant().await;
        let target = if i == 0 { hanging.url("/slow") } else { fast.url(&format!("/m{i}")) };
        endpoint(&app, &merchant, &target, Value::Null).await;
    }
    let per = (n / 10).min(2_000);
    flood(&app, per).await;
    eventually("the nine healthy endpoints' deliveries are made", Duration::from_secs(600), || async {
        (delivered(&app).await >= per * 9).then_some(())
    })
    .await;
    let (p50, p99, max): (f64, f64, f64) = sqlx::query_as(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms),
                max(ms)
         FROM (SELECT (extract(epoch FROM d.delivered_at - e.created_at) * 1000)::float8 AS ms
               FROM webhook_deliveries d JOIN events e ON e.id = d.event_id WHERE d.status = 'delivered') t",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the delays");
    println!(
        "webhooks isolation: {} deliveries to 9 healthy endpoints beside 1 hanging (15 s timeout): \
         delay p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms; the hanging one has {} requests open",
        per * 9,
        hanging.received().len()
    );
}
