//! The bid hot path: one auction, thousands of attempts a second. The API
//! role's runtime for [`bids::place_batch`] (the SQL and the rule live in
//! `gavel_domain::auctions`).
//!
//! - **Batched** (the default): one *lane* per hot auction per process, as
//!   claims have ([`crate::claim_engine`]). The lane takes every attempt queued
//!   while its previous batch committed and places them together, in arrival
//!   order: one snapshot read, one guarded self-committing write
//!   ([`bids::place_optimistic`]) answers up to `max_batch` bidders, each only
//!   after that commit. When another process's lane wrote in between, the
//!   guard fails and the batch is judged again (within the retry budget, then
//!   `503 contention`, nothing stored). A batch that starts the auction or
//!   extends it goes through one transaction under the row lock instead
//!   (bounded by `lock_timeout`), which also moves the end job.
//! - **Naive** (kept to measure against): one `SERIALIZABLE` transaction per
//!   attempt, retried on 40001/40P01 within a budget, then `503 contention`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use gavel_domain::auctions::bids::{self, Attempt, BatchOutcome, Limits, Optimistic, Placed};
use gavel_domain::db::{RetryBudget, is_lock_timeout, retry_serializable};
use gavel_domain::ids::AuctionId;
use gavel_domain::{Error, Result};
use gavel_workflows::auction_close::PaymentReminders;
use gavel_workflows::auction_lifecycle;
use rand::Rng;

pub use crate::claim_engine::Strategy;

#[derive(Debug, Clone)]
pub struct BidConfig {
    pub strategy: Strategy,
    /// Most attempts placed in one transaction.
    pub max_batch: usize,
    /// Longest a lane holds a batch open for the rest of the bidders it
    /// answered last time (see [`run_lane`]); zero takes what is queued.
    pub gather: Duration,
    /// `auctions.bids_per_minute`: attempts per bidder and auction in 60 s.
    pub bids_per_minute: u32,
    pub retry: RetryBudget,
    /// The winner's payment reminders, for a close that a late bid runs.
    pub reminders: PaymentReminders,
}

impl Default for BidConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Batched,
            max_batch: 512,
            gather: Duration::from_millis(2),
            bids_per_minute: 10,
            retry: RetryBudget::default(),
            reminders: PaymentReminders::default(),
        }
    }
}

/// How long an idle lane lives before its task exits.
const LANE_IDLE: Duration = Duration::from_secs(30);

struct Request {
    attempt: Attempt,
    reply: oneshot::Sender<Result<Placed>>,
}

struct Inner {
    pool: PgPool,
    config: BidConfig,
    lanes: Mutex<HashMap<AuctionId, (u64, mpsc::Sender<Request>)>>,
    next_lane: AtomicU64,
}

/// Shared by every request handler of a process (cheap to clone).
#[derive(Clone)]
pub struct BidEngine {
    inner: Arc<Inner>,
}

impl BidEngine {
    pub fn new(pool: PgPool, config: BidConfig) -> Self {
        Self { inner: Arc::new(Inner { pool, config, lanes: Mutex::default(), next_lane: AtomicU64::new(0) }) }
    }

    pub fn strategy(&self) -> Strategy {
        self.inner.config.strategy
    }

    /// One attempt on `auction`, answered after its commit (stored, accepted
    /// or rejected), or an error with nothing stored.
    pub async fn bid(&self, auction: AuctionId, attempt: Attempt) -> Result<Placed> {
        let placed = match self.inner.config.strategy {
            Strategy::Naive => self.bid_naive(auction, attempt).await,
            Strategy::Batched => self.bid_batched(auction, attempt).await,
        };
        let outcome = match &placed {
            Ok(p) => match p.outcome {
                Ok(_) => "accepted",
                Err(r) => r.code(),
            },
            Err(Error::Contention { .. }) => "contention",
            Err(_) => "error",
        };
        metrics::counter!("gavel_bids_total", "outcome" => outcome).increment(1);
        placed
    }

    async fn bid_batched(&self, auction: AuctionId, attempt: Attempt) -> Result<Placed> {
        let mut attempt = Some(attempt);
        loop {
            let sender = self.lane(auction);
            let (reply, answer) = oneshot::channel();
            let Some(a) = attempt.take() else {
                return Err(Error::Internal("bid lane lost an attempt".into()));
            };
            if let Err(mpsc::error::SendError(req)) = sender.send(Request { attempt: a, reply }).await {
                // The lane exited between lookup and send; the next lookup makes a new one.
                attempt = Some(req.attempt);
                continue;
            }
            return answer.await.map_err(|_| Error::Internal("bid lane stopped before answering".into()))?;
        }
    }

    fn lane(&self, auction: AuctionId) -> mpsc::Sender<Request> {
        let mut lanes = match self.inner.lanes.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((_, tx)) = lanes.get(&auction)
            && !tx.is_closed()
        {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(self.inner.config.max_batch * 8);
        let lane_id = self.inner.next_lane.fetch_add(1, Ordering::Relaxed);
        lanes.insert(auction, (lane_id, tx.clone()));
        tokio::spawn(run_lane(self.inner.clone(), auction, lane_id, rx));
        tx
    }

    async fn bid_naive(&self, auction: AuctionId, attempt: Attempt) -> Result<Placed> {
        let inner = &self.inner;
        let attempts = [attempt];
        let attempts = &attempts;
        let mut outcome = retry_serializable(inner.config.retry, || async move {
            let mut tx = inner.pool.begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE").await?;
            let outcome = place(&mut tx, inner, auction, attempts).await?;
            tx.commit().await?;
            Ok(outcome)
        })
        .await
        .map_err(lock_timeout_is_contention)?;
        after_commit(inner, auction, &outcome);
        outcome.placed.pop().unwrap_or_else(|| Err(Error::Internal("bid lost".into())))
    }
}

/// The batch and its end job (a soft-close extension moves it) in the caller's transaction.
async fn place(
    tx: &mut sqlx::PgConnection,
    inner: &Inner,
    auction: AuctionId,
    attempts: &[Attempt],
) -> Result<BatchOutcome> {
    let limits = Limits { bids_per_minute: inner.config.bids_per_minute };
    let outcome = bids::place_batch(&mut *tx, auction, attempts, limits).await?;
    if let Some(moved) = &outcome.extended_to {
        auction_lifecycle::schedule_end(&mut *tx, moved).await?;
    }
    Ok(outcome)
}

/// A lane's batch: the optimistic path, judged again while another process
/// moves the auction under it (within the retry budget), or the locked
/// transaction when the batch must start or extend the auction.
async fn place_batched(inner: &Inner, auction: AuctionId, attempts: &[Attempt]) -> Result<BatchOutcome> {
    let limits = Limits { bids_per_minute: inner.config.bids_per_minute };
    let budget = inner.config.retry;
    let mut delay = budget.base_delay;
    for _ in 0..budget.attempts.max(1) {
        match bids::place_optimistic(&inner.pool, auction, attempts, limits).await? {
            Optimistic::Placed(outcome) => return Ok(*outcome),
            Optimistic::NeedsLock => {
                return retry_serializable(budget, || async move {
                    let mut tx = inner.pool.begin().await?;
                    let outcome = place(&mut tx, inner, auction, attempts).await?;
                    tx.commit().await?;
                    Ok(outcome)
                })
                .await
                .map_err(lock_timeout_is_contention);
            }
            Optimistic::Moved => {
                metrics::counter!("gavel_db_retries_total").increment(1);
                let jitter = rand::rng().random_range(0..=delay.as_micros() as u64);
                tokio::time::sleep(Duration::from_micros(jitter)).await;
                delay = (delay * 2).min(budget.max_delay);
            }
        }
    }
    Err(Error::Contention { retry_after: Duration::from_secs(1) })
}

/// A bid that found the auction past its end runs the guarded close (once
/// the rejected attempts are committed and answered).
fn after_commit(inner: &Inner, auction: AuctionId, outcome: &BatchOutcome) {
    if outcome.close_due {
        let (pool, reminders) = (inner.pool.clone(), inner.config.reminders.clone());
        tokio::spawn(async move {
            if let Err(err) = auction_lifecycle::close_if_due(&pool, &reminders, auction).await {
                tracing::warn!(%auction, error = %err, "closing an auction a bid found past its end failed");
            }
        });
    }
}

/// `lock_timeout` expired: too many writers queued on the row. Nothing was
/// stored; the client retries (with the same key).
fn lock_timeout_is_contention(err: Error) -> Error {
    match err {
        Error::Database(ref db) if is_lock_timeout(db) => Error::Contention { retry_after: Duration::from_secs(1) },
        other => other,
    }
}

/// The lane's task: gather a batch, place it in one transaction, answer,
/// repeat; exit after `LANE_IDLE` without work.
///
/// Gathering: the bidders a batch answers come back together a moment later
/// (their next attempt), but not all at once. Taking only what is queued the
/// instant the previous batch ends splits them: a batch of the first few,
/// then one of the rest that waited a whole cycle behind it — measured on the
/// bid benchmark at 64 connections, every other batch held 1–10 attempts. So
/// a lane waits, at most `gather`, until about three quarters of the last
/// batch's number are queued. With fewer bidders in flight the next batch is
/// small and the wait after it disappears; the wait is bounded, so a quiet
/// auction's bid waits at most `gather` once after a burst.
async fn run_lane(inner: Arc<Inner>, auction: AuctionId, lane_id: u64, mut rx: mpsc::Receiver<Request>) {
    let max = inner.config.max_batch;
    let gather = inner.config.gather;
    let mut batch: Vec<Request> = Vec::with_capacity(max);
    let mut last = 0usize;
    loop {
        match tokio::time::timeout(LANE_IDLE, rx.recv_many(&mut batch, max)).await {
            Ok(0) => return,
            Ok(_) => {
                gather_more(&mut rx, &mut batch, max, (last * 3 / 4).min(max), gather).await;
                last = batch.len();
                serve(&inner, auction, &mut batch).await;
            }
            Err(_) => {
                retire_lane(&inner, auction, lane_id);
                rx.close();
                while rx.recv_many(&mut batch, max).await > 0 {
                    serve(&inner, auction, &mut batch).await;
                }
                return;
            }
        }
    }
}

/// Adds queued attempts to `batch` until it holds `want` (or `max`), for at most `wait`.
async fn gather_more(
    rx: &mut mpsc::Receiver<Request>,
    batch: &mut Vec<Request>,
    max: usize,
    want: usize,
    wait: Duration,
) {
    if batch.len() >= want || wait.is_zero() {
        return;
    }
    let deadline = tokio::time::Instant::now() + wait;
    while batch.len() < want.min(max) {
        match tokio::time::timeout_at(deadline, rx.recv_many(batch, max - batch.len())).await {
            Ok(0) | Err(_) => return, // closed (the batch in hand is still served) or out of time
            Ok(_) => {}
        }
    }
}

fn retire_lane(inner: &Inner, auction: AuctionId, lane_id: u64) {
    let mut lanes = match inner.lanes.lock() {
        Ok(l) => l,
        Err(poisoned) => poisoned.into_inner(),
    };
    if lanes.get(&auction).is_some_and(|(id, _)| *id == lane_id) {
        lanes.remove(&auction);
    }
}

async fn serve(inner: &Inner, auction: AuctionId, batch: &mut Vec<Request>) {
    let (attempts, replies): (Vec<Attempt>, Vec<oneshot::Sender<Result<Placed>>>) =
        batch.drain(..).map(|r| (r.attempt, r.reply)).unzip();
    metrics::histogram!("gavel_bid_batch_size").record(attempts.len() as f64);
    let started = std::time::Instant::now();
    let result = place_batched(inner, auction, &attempts).await;
    metrics::histogram!("gavel_bid_batch_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(outcome) => {
            after_commit(inner, auction, &outcome);
            for (reply, placed) in replies.into_iter().zip(outcome.placed) {
                let _ = reply.send(placed);
            }
        }
        Err(err) => {
            if !matches!(err, Error::Contention { .. } | Error::NotFound(_)) {
                tracing::warn!(%auction, error = %err, "bid batch failed");
            }
            for reply in replies {
                let _ = reply.send(Err(replicate(&err)));
            }
        }
    }
}

/// A copy of a batch's error for each member; kinds the API answers
/// differently survive, the rest (logged once) become internal errors.
fn replicate(err: &Error) -> Error {
    match err {
        Error::NotFound(what) => Error::NotFound(what),
        Error::Contention { retry_after } => Error::Contention { retry_after: *retry_after },
        Error::Overloaded { retry_after } => Error::Overloaded { retry_after: *retry_after },
        Error::DatabaseUnavailable => Error::DatabaseUnavailable,
        _ => Error::Internal("bid batch failed".into()),
    }
}

#[cfg(test)]
mod tests {
    use gavel_domain::ids::BuyerId;

    use super::*;

    fn request() -> Request {
        let attempt =
            Attempt { bidder: BuyerId::new(), amount: 1000, max_amount: None, currency: None, idempotency_key: None };
        Request { attempt, reply: oneshot::channel().0 }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lane_waits_for_the_rest_of_its_last_batch_then_serves_at_once() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut batch = vec![request()];
        let started = tokio::time::Instant::now();
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_micros(300)).await;
                let _ = tx.send(request()).await;
            }
        });
        gather_more(&mut rx, &mut batch, 16, 4, Duration::from_millis(50)).await;
        assert_eq!(batch.len(), 4, "the three stragglers join the batch");
        assert!(started.elapsed() < Duration::from_millis(50), "it does not wait once it has enough");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lane_waits_no_longer_than_gather_and_not_at_all_when_enough_is_queued() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut batch = vec![request()];
        let started = tokio::time::Instant::now();
        gather_more(&mut rx, &mut batch, 16, 10, Duration::from_millis(2)).await;
        assert_eq!(batch.len(), 1);
        assert_eq!(started.elapsed(), Duration::from_millis(2), "bounded by the gather time");

        let _ = tx.send(request()).await;
        let started = tokio::time::Instant::now();
        gather_more(&mut rx, &mut batch, 16, 1, Duration::from_millis(2)).await;
        assert_eq!(batch.len(), 1, "already had what it wanted: nothing more taken");
        assert_eq!(started.elapsed(), Duration::ZERO);

        gather_more(&mut rx, &mut batch, 2, 10, Duration::from_millis(2)).await;
        assert_eq!(batch.len(), 2, "never past max_batch");
        drop(tx);
        gather_more(&mut rx, &mut batch, 16, 10, Duration::from_millis(2)).await;
        assert_eq!(batch.len(), 2, "a closed queue ends the wait");
    }
}
