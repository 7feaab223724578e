//! A sale's life as durable jobs: it starts at `starts_at` and ends at
//! `ends_at` exactly once, however many workers run and however late a job is.
//!
//! Exactly once comes from the guard, not from the queue: each job re-reads
//! the sale under a row lock and changes it only if the sale is still in the
//! state and at the version the job was scheduled for. The change, its
//! event (`sale.started`, `sale.ended`) and any follow-up job commit together,
//! so a process killed before the commit leaves nothing half-done, and the
//! job's retry (or another worker) does the work once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gavel_domain::ids::{MerchantId, ProductId, SaleId};
use gavel_domain::jobs::{self, SaleJob, queues};
use gavel_domain::sales::{self, RawTerms, Sale, SaleStatus, SaleTerms};
use gavel_domain::{Error, Result, claims, products};
use sqlx::{PgConnection, PgPool};

/// Creates a sale and schedules its start and end, in one transaction.
pub async fn create_sale(pool: &PgPool, merchant: MerchantId, product: ProductId, raw: RawTerms) -> Result<Sale> {
    let mut tx = pool.begin().await?;
    let sale = create_sale_in(&mut tx, merchant, product, raw).await?;
    tx.commit().await?;
    Ok(sale)
}

/// [`create_sale`] inside the caller's transaction (the API's idempotency
/// layer stores the answer in it, so the sale and its key commit together).
pub async fn create_sale_in(
    tx: &mut PgConnection,
    merchant: MerchantId,
    product: ProductId,
    raw: RawTerms,
) -> Result<Sale> {
    let terms = SaleTerms::parse(raw, Utc::now())?;
    if products::get(&mut *tx, merchant, product).await?.is_none() {
        return Err(gavel_domain::Invalid::new("product_id", "no such product").into());
    }
    let sale = sales::insert(&mut *tx, merchant, product, &terms).await?;
    schedule(tx, &sale).await?;
    Ok(sale)
}

/// Changes a scheduled sale's terms if `if_match` is its current version; the
/// jobs of the old version become no-ops and new ones are scheduled.
pub async fn update_sale(
    pool: &PgPool,
    merchant: MerchantId,
    id: SaleId,
    if_match: i32,
    patch: RawTerms,
) -> Result<Sale> {
    let mut tx = pool.begin().await?;
    let sale = sales::lock_own(&mut tx, merchant, id).await?;
    if sale.version != if_match {
        return Err(Error::VersionMismatch { expected: if_match, current: sale.version });
    }
    if sale.status != SaleStatus::Scheduled {
        return Err(Error::SaleLocked { status: sale.status.as_str() });
    }
    let terms = SaleTerms::patched(&sale, patch, Utc::now())?;
    let sale = sales::update_terms(&mut tx, &sale, &terms).await?;
    schedule(&mut tx, &sale).await?;
    tx.commit().await?;
    Ok(sale)
}

/// Cancels a scheduled or active sale, releasing its holds. Cancelling a
/// cancelled sale returns it unchanged; an ended sale cannot be cancelled.
pub async fn cancel_sale(pool: &PgPool, merchant: MerchantId, id: SaleId) -> Result<Sale> {
    let mut tx = pool.begin().await?;
    let sale = sales::lock_own(&mut tx, merchant, id).await?;
    match sale.status {
        SaleStatus::Cancelled => return Ok(sale),
        SaleStatus::Ended => {
            return Err(Error::SaleLocked { status: sale.status.as_str() });
        }
        SaleStatus::Scheduled | SaleStatus::Active => {}
    }
    let (closed, _) = sales::close(&mut tx, &sale, SaleStatus::Cancelled)
        .await?
        .ok_or(Error::VersionMismatch { expected: sale.version, current: sale.version + 1 })?;
    claims::notify_stock_returned(&mut tx, id).await?;
    tx.commit().await?;
    Ok(closed)
}

async fn schedule(conn: &mut PgConnection, sale: &Sale) -> Result<()> {
    let (id, v) = (sale.id, sale.version);
    let start = SaleJob::Start { sale_id: id, version: v };
    jobs::enqueue(&mut *conn, queues::SALE_LIFECYCLE, &start, sale.starts_at, &format!("start:{id}:v{v}")).await?;
    let end = SaleJob::End { sale_id: id, version: v };
    jobs::enqueue(conn, queues::SALE_LIFECYCLE, &end, sale.ends_at, &format!("end:{id}:v{v}")).await?;
    Ok(())
}

/// Runs one job of the sale-lifecycle queue.
pub async fn run(pool: &PgPool, job: SaleJob) -> Result<()> {
    match job {
        SaleJob::Start { sale_id, version } => start(pool, sale_id, version).await,
        SaleJob::End { sale_id, version } => end(pool, sale_id, version).await,
        SaleJob::SweepHolds { sale_id } => {
            let mut tx = pool.begin().await?;
            let expired = claims::sweep_expired(&mut tx, sale_id).await?;
            tx.commit().await?;
            if expired > 0 {
                tracing::info!(%sale_id, expired, "expired holds returned to stock");
            }
            Ok(())
        }
        SaleJob::RemindHolds { sale_id, expires_second } => {
            crate::reminders::claims_expiring(pool, sale_id, expires_second).await
        }
    }
}

/// The queue may hand a job over up to a second before its instant (it stores
/// whole seconds): wait out the remainder so nothing happens early.
async fn wait_until(at: DateTime<Utc>) {
    if let Ok(early) = (at - Utc::now()).to_std() {
        tokio::time::sleep(early.min(Duration::from_secs(5))).await;
    }
}

async fn start(pool: &PgPool, sale_id: SaleId, version: i32) -> Result<()> {
    let Some((starts_at, _)) = sales::window(pool, sale_id).await? else {
        return Ok(());
    };
    wait_until(starts_at).await;
    let mut tx = pool.begin().await?;
    let Some(sale) = sales::lock(&mut tx, sale_id).await? else {
        return Ok(());
    };
    if sale.version != version || sale.status != SaleStatus::Scheduled {
        return Ok(());
    }
    if Utc::now() >= sale.ends_at {
        // A start that runs after the whole window has passed closes the sale.
        close_ended(&mut tx, &sale).await?;
    } else if sales::start(&mut tx, sale_id, version).await?.is_some() {
        tracing::info!(%sale_id, late_ms = (Utc::now() - starts_at).num_milliseconds(), "sale started");
    }
    tx.commit().await?;
    Ok(())
}

async fn end(pool: &PgPool, sale_id: SaleId, version: i32) -> Result<()> {
    let Some((_, ends_at)) = sales::window(pool, sale_id).await? else {
        return Ok(());
    };
    wait_until(ends_at).await;
    let mut tx = pool.begin().await?;
    let Some(sale) = sales::lock(&mut tx, sale_id).await? else {
        return Ok(());
    };
    if sale.version != version || sale.status.is_final() {
        return Ok(());
    }
    close_ended(&mut tx, &sale).await?;
    tx.commit().await?;
    Ok(())
}

async fn close_ended(conn: &mut PgConnection, sale: &Sale) -> Result<()> {
    let Some((_, figures)) = sales::close(conn, sale, SaleStatus::Ended).await? else {
        return Ok(());
    };
    tracing::info!(sale_id = %sale.id, sold = figures.sold, "sale ended");
    Ok(())
}
