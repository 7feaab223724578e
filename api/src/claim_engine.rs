//! The claim hot path: one sale, tens of thousands of attempts a second.
//! This is the API role's runtime (lanes are tasks of the serving process);
//! the SQL it runs is `gavel_domain::claims`'.
//!
//! Two strategies sit behind [`ClaimEngine::claim`]:
//!
//! - **Batched** (the default). Each process keeps one *lane* per hot sale: a
//!   task that takes every attempt queued for that sale while its previous
//!   transaction was committing and grants them together in one transaction
//!   ([`claims::grant_batch`]). The sale row is locked once per batch, not once
//!   per claim, and one commit (one WAL flush) answers up to `max_batch`
//!   buyers; every answer is sent only after that commit. This is group commit
//!   at the application level.
//! - **Naive** (kept to measure against): one `SERIALIZABLE` transaction per
//!   attempt on the one counter row, retried on 40001 within a budget.
//!
//! Once a sale is sold out, the lane remembers it together with the set of
//! buyers who hold or bought a unit. Everyone else is answered "sold out" from
//! memory, with no database round trip, until the next hold can run out, stock
//! is returned (heard over `LISTEN`), or a short TTL passes. Holders still go
//! to the database, so they always get their own claim back.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use gavel_domain::claims::{self, Attempt, BatchResult, ClaimOutcome, Refusal};
use gavel_domain::db::{RetryBudget, is_foreign_key_violation, retry_serializable};
use gavel_domain::ids::{BuyerId, SaleId};
use gavel_domain::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    Batched,
    Naive,
}

#[derive(Debug, Clone)]
pub struct ClaimConfig {
    pub strategy: Strategy,
    /// Most attempts granted in one transaction.
    pub max_batch: usize,
    /// Longest a cached "sold out" is trusted without asking the database.
    pub sold_out_ttl: Duration,
    pub retry: RetryBudget,
}

impl Default for ClaimConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Batched,
            max_batch: 512,
            sold_out_ttl: Duration::from_secs(1),
            retry: RetryBudget::default(),
        }
    }
}

/// How long an idle lane lives before its task exits.
const LANE_IDLE: Duration = Duration::from_secs(30);

struct Request {
    buyer: BuyerId,
    reply: oneshot::Sender<Result<Attempt>>,
}

struct SoldOut {
    until: Instant,
    holders: HashSet<BuyerId>,
}

struct Inner {
    pool: PgPool,
    config: ClaimConfig,
    lanes: Mutex<HashMap<SaleId, (u64, mpsc::Sender<Request>)>>,
    next_lane: AtomicU64,
    sold_out: RwLock<HashMap<SaleId, SoldOut>>,
}

/// Shared by every request handler of a process (cheap to clone).
#[derive(Clone)]
pub struct ClaimEngine {
    inner: Arc<Inner>,
}

impl ClaimEngine {
    pub fn new(pool: PgPool, config: ClaimConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                config,
                lanes: Mutex::default(),
                next_lane: AtomicU64::new(0),
                sold_out: RwLock::default(),
            }),
        }
    }

    pub fn strategy(&self) -> Strategy {
        self.inner.config.strategy
    }

    /// One claim attempt by `buyer` on `sale`, answered after its commit.
    pub async fn claim(&self, sale: SaleId, buyer: BuyerId) -> Result<ClaimOutcome> {
        let attempt = match self.inner.config.strategy {
            Strategy::Naive => self.claim_naive(sale, buyer).await?,
            Strategy::Batched => {
                if self.known_sold_out(sale, buyer) {
                    Err(Refusal::SoldOut)
                } else {
                    self.claim_batched(sale, buyer).await?
                }
            }
        };
        let outcome = match &attempt {
            Ok(o) if o.created => "held",
            Ok(_) => "existing",
            Err(Refusal::SoldOut) => "sold_out",
            Err(Refusal::SaleNotActive) => "sale_not_active",
            Err(Refusal::SaleNotFound) => "not_found",
        };
        metrics::counter!("gavel_claims_total", "outcome" => outcome).increment(1);
        attempt.map_err(Error::from)
    }

    /// Drops the cached "sold out" of a sale (its stock went up).
    pub fn stock_returned(&self, sale: SaleId) {
        if let Ok(mut map) = self.inner.sold_out.write() {
            map.remove(&sale);
        }
    }

    /// Drops every cached "sold out" (stock notifications may have been missed).
    pub fn forget_sold_out(&self) {
        if let Ok(mut map) = self.inner.sold_out.write() {
            map.clear();
        }
    }

    fn known_sold_out(&self, sale: SaleId, buyer: BuyerId) -> bool {
        let Ok(map) = self.inner.sold_out.read() else {
            return false;
        };
        map.get(&sale).is_some_and(|s| Instant::now() < s.until && !s.holders.contains(&buyer))
    }

    async fn claim_batched(&self, sale: SaleId, buyer: BuyerId) -> Result<Attempt> {
        loop {
            let sender = self.lane(sale);
            let (reply, answer) = oneshot::channel();
            if sender.send(Request { buyer, reply }).await.is_err() {
                // The lane exited between lookup and send; the next lookup makes a new one.
                continue;
            }
            return answer.await.map_err(|_| Error::Internal("claim lane stopped before answering".into()))?;
        }
    }

    fn lane(&self, sale: SaleId) -> mpsc::Sender<Request> {
        let mut lanes = match self.inner.lanes.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((_, tx)) = lanes.get(&sale)
            && !tx.is_closed()
        {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(self.inner.config.max_batch * 8);
        let lane_id = self.inner.next_lane.fetch_add(1, Ordering::Relaxed);
        lanes.insert(sale, (lane_id, tx.clone()));
        tokio::spawn(run_lane(self.inner.clone(), sale, lane_id, rx));
        tx
    }

    async fn claim_naive(&self, sale: SaleId, buyer: BuyerId) -> Result<Attempt> {
        let pool = &self.inner.pool;
        retry_serializable(self.inner.config.retry, || async move {
            let mut tx = pool.begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE").await?;
            let mut batch = claims::grant_batch(&mut tx, sale, &[buyer], None).await?;
            tx.commit().await?;
            batch.attempts.remove(&buyer).ok_or_else(|| Error::Internal("batch lost an attempt".into()))
        })
        .await
        .map_err(member_error)
    }
}

/// The lane's task: drain what is queued, grant it in one transaction, answer,
/// repeat; exit after `LANE_IDLE` without work.
///
/// One batch at a time: while it commits, the next one gathers. (Two in flight
/// measured worse here: smaller batches, and lock waits burning shared CPU.)
async fn run_lane(inner: Arc<Inner>, sale: SaleId, lane_id: u64, mut rx: mpsc::Receiver<Request>) {
    let max = inner.config.max_batch;
    let mut batch: Vec<Request> = Vec::with_capacity(max);
    let mut swept = None;
    loop {
        match tokio::time::timeout(LANE_IDLE, rx.recv_many(&mut batch, max)).await {
            Ok(0) => return,
            Ok(_) => serve(&inner, sale, &mut batch, &mut swept).await,
            Err(_) => {
                retire_lane(&inner, sale, lane_id);
                rx.close();
                // Serve whatever slipped in before the close.
                while rx.recv_many(&mut batch, max).await > 0 {
                    serve(&inner, sale, &mut batch, &mut swept).await;
                }
                return;
            }
        }
    }
}

fn retire_lane(inner: &Inner, sale: SaleId, lane_id: u64) {
    let mut lanes = match inner.lanes.lock() {
        Ok(l) => l,
        Err(poisoned) => poisoned.into_inner(),
    };
    if lanes.get(&sale).is_some_and(|(id, _)| *id == lane_id) {
        lanes.remove(&sale);
    }
}

/// Grants one batch. `swept` remembers the last expiry second whose sweep job
/// this lane saw committed, so later batches in the same second skip it.
///
/// A batch that fails for one member's sake (a constraint or data error: a
/// token naming a buyer with no account) is granted again one member at a
/// time, so that member alone hears of it. A failure that is nobody's fault
/// (no connection within the pool's timeout, contention) reaches every
/// member as what it is, so the API can answer `503` rather than `500`.
async fn serve(inner: &Inner, sale: SaleId, batch: &mut Vec<Request>, swept: &mut Option<i64>) {
    let buyers: Vec<BuyerId> = batch.iter().map(|r| r.buyer).collect();
    metrics::histogram!("gavel_claim_batch_size").record(buyers.len() as f64);
    let started = std::time::Instant::now();
    let result = grant(inner, sale, &buyers, *swept).await;
    metrics::histogram!("gavel_claim_batch_seconds").record(started.elapsed().as_secs_f64());
    let mut answers: HashMap<BuyerId, Result<Attempt>> = HashMap::with_capacity(buyers.len());
    let mut available = None;
    match result {
        Ok(result) => {
            if result.sweep_second.is_some() {
                *swept = result.sweep_second;
            }
            available = Some(result.available);
            answers.extend(result.attempts.into_iter().map(|(b, a)| (b, Ok(a))));
        }
        Err(Error::Database(err)) if is_member_fault(&err) => {
            tracing::warn!(%sale, error = %err, "claim batch failed; granting its members one by one");
            let mut seen = HashSet::with_capacity(buyers.len());
            for buyer in buyers.iter().copied().filter(|b| seen.insert(*b)) {
                match grant(inner, sale, &[buyer], *swept).await {
                    Ok(mut result) => {
                        if result.sweep_second.is_some() {
                            *swept = result.sweep_second;
                        }
                        available = Some(result.available);
                        if let Some(attempt) = result.attempts.remove(&buyer) {
                            answers.insert(buyer, Ok(attempt));
                        }
                    }
                    Err(err) => {
                        answers.insert(buyer, Err(member_error(err)));
                    }
                }
            }
        }
        Err(err) => {
            tracing::warn!(%sale, error = %err, "claim batch failed");
            for req in batch.drain(..) {
                let _ = req.reply.send(Err(replicate(&err)));
            }
            return;
        }
    }
    let sold_out = available == Some(0) && answers.values().any(|a| matches!(a, Ok(Err(Refusal::SoldOut)) | Ok(Ok(_))));
    for req in batch.drain(..) {
        let attempt = match answers.get(&req.buyer) {
            Some(Ok(attempt)) => Ok(attempt.clone()),
            Some(Err(err)) => Err(replicate(err)),
            None => Err(Error::Internal("batch lost an attempt".into())),
        };
        let _ = req.reply.send(attempt);
    }
    if sold_out {
        remember_sold_out(inner, sale).await;
    } else if available.is_some()
        && let Ok(mut map) = inner.sold_out.write()
    {
        map.remove(&sale);
    }
}

/// One batch in one transaction, retried on serialization failures.
async fn grant(inner: &Inner, sale: SaleId, buyers: &[BuyerId], swept: Option<i64>) -> Result<BatchResult> {
    let pool = &inner.pool;
    retry_serializable(inner.config.retry, || async move {
        let mut tx = pool.begin().await?;
        let result = claims::grant_batch(&mut tx, sale, buyers, swept).await?;
        tx.commit().await?;
        Ok(result)
    })
    .await
}

/// A database error caused by what one member brought: an integrity
/// constraint (class 23) or bad data (class 22).
fn is_member_fault(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("23") || c.starts_with("22")),
        _ => false,
    }
}

/// What a member's own failure means to it: a token naming no buyer is the
/// caller's problem, not a server error.
fn member_error(err: Error) -> Error {
    match err {
        Error::Database(ref db) if is_foreign_key_violation(db, "claims_buyer_id_fkey") => Error::UnknownBuyer,
        other => other,
    }
}

/// A copy of a batch's error for each member. The kinds the API answers
/// differently (pool timeout, contention, a lost connection) survive; the
/// rest are logged once by the caller and become internal errors.
fn replicate(err: &Error) -> Error {
    match err {
        Error::Contention { retry_after } => Error::Contention { retry_after: *retry_after },
        Error::UnknownBuyer => Error::UnknownBuyer,
        Error::Overloaded { retry_after } => Error::Overloaded { retry_after: *retry_after },
        Error::DatabaseUnavailable => Error::DatabaseUnavailable,
        _ => Error::Internal("claim batch failed".into()),
    }
}

async fn remember_sold_out(inner: &Inner, sale: SaleId) {
    let Ok(claims::Holders { buyers: holders, next_expiry, ends_at }) = claims::holders(&inner.pool, sale).await else {
        return;
    };
    let now = Utc::now();
    let until_end = (ends_at - now).to_std().unwrap_or_default();
    let until_expiry = next_expiry.map_or(until_end, |t| (t - now).to_std().unwrap_or_default());
    let trust = inner.config.sold_out_ttl.min(until_expiry).min(until_end);
    if trust.is_zero() {
        return;
    }
    if let Ok(mut map) = inner.sold_out.write() {
        map.insert(sale, SoldOut { until: Instant::now() + trust, holders: holders.into_iter().collect() });
    }
}
