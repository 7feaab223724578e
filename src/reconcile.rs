//! `gavel reconcile` (finance without HTTP: the run of a period, worked in
//! this process, its report printed and optionally written as CSV) and `gavel
//! dev seed-payments N` (the benchmark's data: Gavel's ledger and the Stripe
//! stand-in filled consistently, in bulk).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use gavel_domain::ids::{MerchantId, OrderId, PaymentId};
use gavel_domain::reconciliation::seed::{self, SeedPayment};
use gavel_domain::reconciliation::{self as recon, Period, Scope};
use gavel_workflows::checkout::Checkout;
use gavel_workflows::reconciliation::Reconciler;
use gavel_workflows::stripe::{Gateway, MERCHANT_KEY, ORDER_KEY, PAYMENT_KEY};
use sqlx::PgPool;

use crate::Config;

/// Works the run of `scope` over `from..to` to its end (continuing it if it
/// was left unfinished) and returns its report as the API shows it; with
/// `csv`, writes every discrepancy there, a page at a time.
pub async fn reconcile(
    config: &Config,
    pool: PgPool,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    merchant: Option<MerchantId>,
    csv: Option<&Path>,
) -> anyhow::Result<serde_json::Value> {
    let period = Period::new(from, to).map_err(|e| anyhow::anyhow!("the period: {e}"))?;
    let scope = merchant.map_or(Scope::Platform, Scope::Merchant);
    let gateway = Gateway::new(&config.gateway_config()).map_err(anyhow::Error::msg)?;
    let checkout = Checkout::new(pool.clone(), gateway, config.checkout_config().map_err(anyhow::Error::msg)?);
    let reconciler = Reconciler::new(pool.clone(), checkout, config.reconciliation_config());
    let (run, _) = reconciler.request(scope, period).await?;
    let mut run = reconciler.work(run.id).await?;
    if !matches!(run.status, recon::RunStatus::Completed | recon::RunStatus::Failed) {
        // Another process holds it: wait for it to finish.
        run = reconciler.wait(scope, run.id, std::time::Duration::from_secs(24 * 3600)).await?;
    }
    let mut conn = pool.acquire().await?;
    if let Some(path) = csv {
        write_csv(&mut conn, run.id, path).await?;
    }
    let body = gavel_api::routes::reconciliation_runs::run_body(&mut conn, run).await?;
    Ok(serde_json::to_value(body)?)
}

async fn write_csv(
    conn: &mut sqlx::PgConnection,
    run: gavel_domain::ids::ReconciliationRunId,
    path: &Path,
) -> anyhow::Result<()> {
    use gavel_api::routes::reconciliation_runs::{CSV_HEADER, csv_line};
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    out.write_all(CSV_HEADER.as_bytes())?;
    let mut after = 0;
    loop {
        let page = recon::page(conn, run, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for row in &page {
            out.write_all(csv_line(run, &row.found).as_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Rows per ledger statement and per stand-in request.
const SEED_BATCH: usize = 10_000;

/// Seeds `n` paid orders with succeeded payments, created evenly over the
/// UTC day `day`, in Gavel's ledger and (the same ids, amounts and metadata)
/// in the Stripe stand-in at `stripe_base`. Returns what it made.
pub async fn seed_payments(
    pool: PgPool,
    n: u64,
    day: chrono::NaiveDate,
    stripe_base: &str,
) -> anyhow::Result<serde_json::Value> {
    let merchant = gavel_domain::merchants::create(&pool, "seed-payments", None).await?;
    let merchant_id = merchant.id;
    let buyer = seed::seed_buyer(&mut *pool.acquire().await?).await?;
    let start = day.and_time(chrono::NaiveTime::MIN).and_utc();
    let tag: String = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(120)).build()?;
    let url = format!("{}/_control/seed", stripe_base.trim_end_matches('/'));
    let step_ms = (86_400_000 / n.max(1)).max(1) as i64;
    let mut i = 0u64;
    while i < n {
        let batch: Vec<SeedPayment> = (i..n.min(i + SEED_BATCH as u64))
            .map(|k| SeedPayment {
                order_id: OrderId::new().uuid(),
                payment_id: PaymentId::new().uuid(),
                provider_id: format!("pi_seed{tag}{k}"),
                amount: 500 + (k % 9500) as i64,
                currency: "usd".into(),
                created_at: start + chrono::Duration::milliseconds(k as i64 * step_ms),
            })
            .collect();
        let intents: Vec<serde_json::Value> = batch
            .iter()
            .map(|p| {
                serde_json::json!({
                    "id": p.provider_id, "amount": p.amount, "currency": p.currency, "status": "succeeded",
                    "created": p.created_at.timestamp(),
                    "metadata": {
                        PAYMENT_KEY: PaymentId::from_uuid(p.payment_id).to_string(),
                        ORDER_KEY: OrderId::from_uuid(p.order_id).to_string(),
                        MERCHANT_KEY: merchant_id.to_string(),
                    },
                })
            })
            .collect();
        let mut tx = pool.begin().await?;
        seed::seed_batch(&mut tx, merchant_id, buyer, &batch).await?;
        let answer = http.post(&url).json(&serde_json::json!({ "payment_intents": intents })).send().await?;
        if !answer.status().is_success() {
            anyhow::bail!(
                "the stand-in refused the seed: {} {}",
                answer.status(),
                answer.text().await.unwrap_or_default()
            );
        }
        tx.commit().await?;
        i += batch.len() as u64;
    }
    Ok(serde_json::json!({
        "merchant": merchant_id.to_string(), "payments": n,
        "from": start, "to": start + chrono::Duration::days(1),
    }))
}
