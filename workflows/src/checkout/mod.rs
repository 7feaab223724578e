//! The checkout saga: a held claim (or an auction order) becomes a paid order
//! with exactly one charge, whatever the provider or the process does.
//!
//! 1. **Begin** (one transaction on the claim row; the hot sale row is not
//!    touched, its counters do not change here): the hold becomes
//!    `checking_out` (it stops running out), and the order and the payment
//!    attempt are written with the idempotency key the call will carry. Should
//!    this process die, the workers' resume tick carries the attempt on.
//! 2. **Charge**: the PaymentIntent is created and confirmed through
//!    async-stripe with that key, no lock held across the call.
//! 3. **Settle** (one transaction; the sale row is taken last, for one
//!    statement and the commit): on success the hold
//!    is consumed (`held − 1, sold + 1`), the order is `paid` and `order.paid`
//!    is recorded; on a definite failure the unit returns to stock and the
//!    order is `payment_failed`; on a timeout or lost answer the attempt is
//!    `unknown` and a `Verify` job asks Stripe later (backoff as data below),
//!    re-sending the same request only when Stripe has never seen it.
//!
//! The HTTP request runs steps 2–3 itself and waits for them up to a budget;
//! the jobs, a webhook and a retried request can all reach the same steps, and
//! every step re-reads the attempt and acts only while its outcome is open, so
//! whichever comes first settles it and the rest change nothing.
//!
//! Compensation, as the product decides it: a **declined** payment releases
//! the unit to stock at once (the buyer is told and may claim again while
//! stock lasts); a payment that **succeeds after its unit was lost** (the sale
//! was cancelled under it) is refunded in full by a durable `Refund` job.

mod begin;
mod provider_events;
mod settle;

use std::sync::Arc;
use std::time::Duration;

use gavel_domain::ids::{BuyerId, ClaimId, OrderId};
use gavel_domain::jobs::{self, PaymentJob, queues};
use gavel_domain::orders::{self, Order, Viewer};
use gavel_domain::payments::{self, Payment, PaymentMethod};
use gavel_domain::{Error, Result};
use serde::Deserialize;
use sqlx::PgPool;

use crate::stripe::Gateway;
pub use provider_events::Disposition;

/// An `unknown` attempt untouched this long has lost its verification jobs.
const UNKNOWN_STALLS_AFTER: Duration = Duration::from_secs(30 * 60);

/// Places in the saga where a crash test can freeze the process before it
/// kills it (`GAVEL_FAULTS__PAUSE_AT`); never set in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PausePoint {
    /// The attempt is committed; Stripe has not been called.
    AfterAttemptRecorded,
    /// Stripe answered; nothing of its answer is written yet.
    AfterProviderAnswered,
    /// The settling transaction is written but not committed.
    BeforeOrderCommit,
    /// An idempotent request's effect and answer are committed; the answer
    /// is not sent (the API's idempotency layer pauses here).
    AfterIdempotentCommit,
}

#[derive(Debug, Clone)]
pub struct CheckoutConfig {
    /// How long the HTTP request waits for the saga before answering with the
    /// order as it stands (`pending_verification`).
    pub wait: Duration,
    /// An attempt still `processing` this long after it last moved was left
    /// by a process that died: the resume tick carries it on.
    pub resume_after: Duration,
    pub pause_at: Option<PausePoint>,
    /// A failing refund's retries (the delay before each); after the last
    /// the job is dead-lettered (kind `job`). Empty: the built-in schedule.
    pub refund_backoff: Vec<Duration>,
}

/// An order and its latest payment attempt, as the API shows them.
#[derive(Debug, Clone)]
pub struct OrderView {
    pub order: Order,
    pub payment: Option<Payment>,
}

/// The checkout saga's entry points, shared by the API and the workers.
#[derive(Clone)]
pub struct Checkout {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    gateway: Gateway,
    config: CheckoutConfig,
}

impl Checkout {
    pub fn new(pool: PgPool, gateway: Gateway, config: CheckoutConfig) -> Self {
        Self { inner: Arc::new(Inner { pool, gateway, config }) }
    }

    fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The Stripe client the saga charges through (reconciliation reads the
    /// provider's records with it, behind the same configuration).
    pub fn gateway(&self) -> &Gateway {
        &self.inner.gateway
    }

    /// `POST /v1/claims/{id}/checkout`: pays for a held claim. A repeat (or a
    /// retry after the answer was lost) returns the same order.
    pub async fn checkout(&self, buyer: BuyerId, claim: ClaimId, method: &PaymentMethod) -> Result<OrderView> {
        self.admit()?;
        let begun = begin::claim(self.pool(), buyer, claim, method).await?;
        self.proceed(begun).await
    }

    /// `POST /v1/orders/{id}/pay`: pays for an order awaiting payment (an
    /// auction's winner, within the window), through the same steps. An
    /// order already paid (or refunded) is not payable: `409`.
    pub async fn pay(&self, buyer: BuyerId, order: OrderId, method: &PaymentMethod) -> Result<OrderView> {
        self.admit()?;
        let begun = begin::order(self.pool(), buyer, order, method).await?;
        self.proceed(begun).await
    }

    /// An order as `viewer` may see it.
    pub async fn get(&self, viewer: Viewer, id: OrderId) -> Result<OrderView> {
        let order = orders::get(self.pool(), viewer, id).await?;
        with_payment(&mut *self.pool().acquire().await?, order).await
    }

    fn admit(&self) -> Result<()> {
        self.gateway().check().map_err(|u| Error::PaymentUnavailable { retry_after: u.retry_after })
    }

    async fn proceed(&self, begun: begin::Begun) -> Result<OrderView> {
        match begun {
            begin::Begun::Existing(order) => self.view(order).await,
            begin::Begun::New { order, payment } => self.run_and_wait(order, *payment).await,
        }
    }

    /// Runs the saga in a task of its own (it goes on if the request is
    /// dropped) and waits for it up to the budget.
    async fn run_and_wait(&self, order: OrderId, payment: Payment) -> Result<OrderView> {
        let this = self.clone();
        let id = payment.id;
        let task = tokio::spawn(async move { this.advance_from(payment).await });
        match tokio::time::timeout(self.inner.config.wait, task).await {
            Ok(Ok(Err(err))) => {
                tracing::warn!(payment = %id, error = %err, "checkout step failed; its job will resume it")
            }
            Ok(Err(join)) => {
                tracing::error!(payment = %id, error = %join, "checkout task died; its job will resume it")
            }
            Ok(Ok(Ok(()))) | Err(_) => {}
        }
        self.view(order).await
    }

    async fn view(&self, order: OrderId) -> Result<OrderView> {
        let mut conn = self.pool().acquire().await?;
        let order = orders::by_id(&mut conn, order).await?.ok_or(Error::NotFound("order"))?;
        with_payment(&mut conn, order).await
    }

    /// The resume tick (every workers process runs it, see `gavel-workers`):
    /// queues `Advance` for every attempt left `processing` past
    /// `resume_after` (its process died mid-saga) or `unknown` and untouched
    /// for 30 minutes (its chain of verification jobs broke; a live chain
    /// touches it at least every 15). The key `resume:<payment>:<tick>` makes a
    /// tick one job per attempt however many processes tick. Returns how many.
    pub async fn resume_stalled(&self, tick: i64) -> Result<usize> {
        let mut tx = self.pool().begin().await?;
        let stalled = payments::stalled(&mut tx, self.inner.config.resume_after, UNKNOWN_STALLS_AFTER).await?;
        for id in &stalled {
            let job = PaymentJob::Advance { payment_id: *id };
            jobs::enqueue(&mut tx, queues::PAYMENTS, &job, chrono::Utc::now(), &format!("resume:{id}:{tick}")).await?;
        }
        tx.commit().await?;
        if !stalled.is_empty() {
            tracing::warn!(tick, count = stalled.len(), "resuming payment attempts left by a dead process or job");
        }
        Ok(stalled.len())
    }

    /// How often the resume tick should run.
    pub fn resume_every(&self) -> Duration {
        (self.inner.config.resume_after / 2).clamp(Duration::from_millis(250), Duration::from_secs(10))
    }

    /// Runs one job of the payments queue.
    pub async fn run(&self, job: PaymentJob) -> Result<()> {
        match job {
            PaymentJob::Advance { payment_id } => self.advance(payment_id).await,
            PaymentJob::Verify { payment_id, round } => self.verify(payment_id, round).await,
            PaymentJob::Refund { payment_id, round } => self.refund(payment_id, round).await,
        }
    }

    /// Freezes this task for good if the crash tests asked for `at`.
    pub async fn pause(&self, at: PausePoint, subject: &(impl std::fmt::Display + ?Sized)) {
        if self.inner.config.pause_at == Some(at) {
            eprintln!("gavel: paused at {at:?} for {subject}");
            std::future::pending::<()>().await;
        }
    }
}

/// An order with its latest attempt.
async fn with_payment(conn: &mut sqlx::PgConnection, order: Order) -> Result<OrderView> {
    let payment = payments::latest(conn, order.id).await?;
    Ok(OrderView { order, payment })
}
