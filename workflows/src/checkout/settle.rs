//! Steps 2 and 3 of the saga (charge, settle), verification of unknown
//! outcomes and refunds. Stripe's webhook events reach the same settling
//! through `provider_events`.

use std::time::Duration;

use chrono::Utc;
use gavel_domain::claims::{self, CheckoutEnd};
use gavel_domain::events::{self, DomainEvent, OrderSettled};
use gavel_domain::ids::PaymentId;
use gavel_domain::job_dead_letters;
use gavel_domain::jobs::{self, PaymentJob, queues};
use gavel_domain::orders::{self, Order, OrderStatus, OrderSubject};
use gavel_domain::payments::{self, Facts, Payment, PaymentStatus, refunds};
use gavel_domain::{Error, Result};

use super::{Checkout, PausePoint};
use crate::stripe::{ChargeFor, Outcome};

/// When an unknown outcome is asked about again: round n waits the n-th
/// entry (the last one repeats). Stripe keeps idempotency keys for 24 hours;
/// the schedule reaches that well before.
const VERIFY_BACKOFF: &[Duration] = &[
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(15),
    Duration::from_secs(60),
    Duration::from_secs(300),
    Duration::from_secs(900),
];

/// Refund retries (unless `payments.refund_retry_schedule_seconds` says
/// otherwise); after the last the refund stays `pending` and the job is
/// dead-lettered (kind `job`) for an operator to replay.
const REFUND_BACKOFF: &[Duration] = &[
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];

fn backoff(schedule: &[Duration], round: u32) -> Duration {
    let i = (round as usize).saturating_sub(1).min(schedule.len().saturating_sub(1));
    schedule.get(i).copied().unwrap_or(Duration::ZERO)
}

impl Checkout {
    /// `payments.refund_retry_schedule_seconds`, or the built-in schedule.
    fn refund_backoff(&self) -> &[Duration] {
        match self.inner.config.refund_backoff.as_slice() {
            [] => REFUND_BACKOFF,
            configured => configured,
        }
    }
}

enum Settled {
    Done,
    SaleCancelled,
}

impl Checkout {
    /// Carries an attempt on from wherever it stands.
    pub(super) async fn advance(&self, id: PaymentId) -> Result<()> {
        match self.payment(id).await? {
            Some(payment) => self.advance_from(payment).await,
            None => Ok(()),
        }
    }

    /// [`Checkout::advance`] with the attempt as last read.
    pub(super) async fn advance_from(&self, payment: Payment) -> Result<()> {
        let id = payment.id;
        match payment.status {
            PaymentStatus::Processing => {
                self.pause(PausePoint::AfterAttemptRecorded, &id).await;
                let outcome = match self.gateway().admit() {
                    Ok(()) => self.charge(&payment).await,
                    Err(_) => Outcome::Unknown { provider_id: None, reason: "circuit breaker open".into() },
                };
                self.pause(PausePoint::AfterProviderAnswered, &id).await;
                self.settle(&payment, outcome).await
            }
            PaymentStatus::Unknown => self.verify(id, payment.verify_attempts as u32).await,
            PaymentStatus::Succeeded | PaymentStatus::Failed | PaymentStatus::Refunded => Ok(()),
        }
    }

    /// Asks Stripe what became of an attempt; if Stripe has never seen it,
    /// sends it now with its key (so a request that did arrive is replayed,
    /// not repeated).
    pub(super) async fn verify(&self, id: PaymentId, round: u32) -> Result<()> {
        let Some(payment) = self.payment(id).await? else { return Ok(()) };
        if !payment.status.is_open() {
            return Ok(());
        }
        let outcome = match self.gateway().admit() {
            Err(_) => Outcome::Unknown { provider_id: None, reason: "circuit breaker open".into() },
            Ok(()) => match self.gateway().find(&payment).await {
                Ok(Some(outcome)) => outcome,
                Ok(None) => self.charge(&payment).await,
                Err(reason) => Outcome::Unknown { provider_id: None, reason },
            },
        };
        tracing::info!(%id, round, ?outcome, "verified a payment with the provider");
        self.settle(&payment, outcome).await
    }

    /// Writes what the provider said. The first definite outcome wins; an
    /// unknown one schedules the next verification.
    pub(super) async fn settle(&self, payment: &Payment, outcome: Outcome) -> Result<()> {
        match outcome {
            Outcome::Unknown { provider_id, reason } => self.settle_unknown(payment, provider_id, &reason).await,
            definite => self.settle_definite(payment.id, definite).await,
        }
    }

    async fn settle_unknown(&self, payment: &Payment, provider_id: Option<String>, reason: &str) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let Some(current) = payments::lock(&mut tx, payment.id).await? else { return Ok(()) };
        if !current.status.is_open() {
            return Ok(());
        }
        let provider_id = provider_id.as_deref();
        if current.status == PaymentStatus::Unknown {
            payments::note_provider_id(&mut tx, payment.id, provider_id).await?;
        } else {
            let facts = Facts { provider_id, failure: None };
            moved(
                payments::transition(&mut tx, payment.id, current.status, PaymentStatus::Unknown, facts).await?,
                payment,
            )?;
        }
        let round = payments::count_verification(&mut tx, payment.id).await?.max(1) as u32;
        let due = Utc::now() + backoff(VERIFY_BACKOFF, round);
        let job = PaymentJob::Verify { payment_id: payment.id, round };
        jobs::enqueue(&mut tx, queues::PAYMENTS, &job, due, &format!("verify:{}:{round}", payment.id)).await?;
        tx.commit().await?;
        metrics::counter!("gavel_payments_total", "outcome" => "unknown").increment(1);
        tracing::warn!(payment = %payment.id, round, reason, "payment outcome unknown; verification scheduled");
        Ok(())
    }

    /// Settles a definite outcome in one transaction. Its rows are locked in
    /// the order order → attempt → claim, and the hot sale row last, for one
    /// statement and the commit, so concurrent checkouts of a sale queue on it
    /// as briefly as possible. A sale cancelled under a success is seen by the
    /// guarded counter update; the transaction then starts over and refunds.
    async fn settle_definite(&self, id: PaymentId, outcome: Outcome) -> Result<()> {
        let mut sale_cancelled = false;
        loop {
            match self.try_settle_definite(id, &outcome, sale_cancelled).await? {
                Settled::Done => return Ok(()),
                Settled::SaleCancelled => sale_cancelled = true,
            }
        }
    }

    async fn try_settle_definite(&self, id: PaymentId, outcome: &Outcome, sale_cancelled: bool) -> Result<Settled> {
        let mut tx = self.pool().begin().await?;
        let Some(paid_for) = orders::lock_for_payment(&mut tx, id).await? else { return Ok(Settled::Done) };
        let cancelled = sale_cancelled || paid_for.sale_cancelled();
        let order = paid_for.order;
        let Some(payment) = payments::lock(&mut tx, id).await? else { return Ok(Settled::Done) };
        if !payment.status.is_open() {
            return Ok(Settled::Done);
        }
        // The unit's way out, if the order is a sale's: (sale, how it ends).
        let mut unit = None;
        let status = match outcome {
            Outcome::Succeeded { provider_id } => {
                let facts = Facts { provider_id: Some(provider_id.as_str()), failure: None };
                let to = PaymentStatus::Succeeded;
                moved(payments::transition(&mut tx, id, payment.status, to, facts).await?, &payment)?;
                let end = if cancelled { CheckoutEnd::Released } else { CheckoutEnd::Sold };
                let kept = match order.subject {
                    OrderSubject::Sale { sale, claim } => {
                        let moved = claims::finish_checkout(&mut tx, sale, claim, end).await?;
                        if moved {
                            unit = Some((sale, end));
                        }
                        moved && end == CheckoutEnd::Sold
                    }
                    OrderSubject::Auction { .. } => order.status == OrderStatus::PendingVerification,
                };
                if kept {
                    OrderStatus::Paid
                } else {
                    // Paid for something no longer there: give the money back.
                    refunds::owe(&mut tx, &payment, "unit_no_longer_available").await?;
                    let job = PaymentJob::Refund { payment_id: id, round: 0 };
                    jobs::enqueue(&mut tx, queues::PAYMENTS, &job, Utc::now(), &format!("refund:{id}:0")).await?;
                    OrderStatus::Refunded
                }
            }
            Outcome::Failed { provider_id, code, message } => {
                let facts =
                    Facts { provider_id: provider_id.as_deref(), failure: Some((code.as_str(), message.as_str())) };
                let to = PaymentStatus::Failed;
                moved(payments::transition(&mut tx, id, payment.status, to, facts).await?, &payment)?;
                if let OrderSubject::Sale { sale, claim } = order.subject
                    && claims::finish_checkout(&mut tx, sale, claim, CheckoutEnd::Released).await?
                {
                    unit = Some((sale, CheckoutEnd::Released));
                }
                OrderStatus::PaymentFailed
            }
            Outcome::Unknown { .. } => return Err(Error::Internal("an unknown outcome is not definite".into())),
        };
        let order = orders::transition(&mut tx, order.id, order.status, status)
            .await?
            .ok_or_else(|| Error::Internal(format!("order {} moved under its lock", order.id)))?;
        record_event(&mut tx, &order, &payment).await?;
        if let Some((sale, end)) = unit
            && !claims::settle_unit(&mut tx, sale, end).await?
        {
            // Cancelled since we looked: roll back and settle again as a refund.
            return Ok(Settled::SaleCancelled);
        }
        self.pause(PausePoint::BeforeOrderCommit, &id).await;
        tx.commit().await?;
        metrics::counter!("gavel_payments_total", "outcome" => status.as_str()).increment(1);
        tracing::info!(order = %order.id, payment = %id, status = status.as_str(), "checkout settled");
        Ok(Settled::Done)
    }

    /// Returns a succeeded payment's money; retried on its own schedule.
    pub(super) async fn refund(&self, id: PaymentId, round: u32) -> Result<()> {
        let Some(payment) = self.payment(id).await? else { return Ok(()) };
        let (PaymentStatus::Succeeded, Some(provider_id)) = (payment.status, payment.provider_id.clone()) else {
            return Ok(());
        };
        let answer = match self.gateway().admit() {
            Ok(()) => self.gateway().refund(&payment, &provider_id).await,
            Err(_) => Err("circuit breaker open".to_owned()),
        };
        let mut tx = self.pool().begin().await?;
        match answer {
            Ok(refund_id) => {
                refunds::complete(&mut tx, id, &refund_id).await?;
                tracing::info!(payment = %id, refund = refund_id, "payment refunded");
            }
            Err(reason) if (round as usize) < self.refund_backoff().len() => {
                let next = round + 1;
                let due = Utc::now() + backoff(self.refund_backoff(), next);
                let job = PaymentJob::Refund { payment_id: id, round: next };
                job_dead_letters::record_failure(&mut tx, &format!("refund:{id}"), &reason).await?;
                jobs::enqueue(&mut tx, queues::PAYMENTS, &job, due, &format!("refund:{id}:{next}")).await?;
                tracing::warn!(payment = %id, round, reason, "refund failed; retrying later");
            }
            Err(reason) => {
                // The budget is spent: an operator's dead letter (kind `job`),
                // replayable once with `gavel dlq retry`.
                let job = PaymentJob::Refund { payment_id: id, round };
                job_dead_letters::dead_letter(&mut tx, &format!("refund:{id}"), queues::PAYMENTS, &job, &reason)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Charges an attempt, its metadata naming the payment, the order and the
    /// order's merchant. Should the order not be read, nothing is sent: the
    /// outcome stays unknown and verification tries again.
    async fn charge(&self, payment: &Payment) -> Outcome {
        let order = match self.pool().acquire().await {
            Ok(mut conn) => orders::by_id(&mut conn, payment.order_id).await,
            Err(e) => Err(e.into()),
        };
        match order {
            Ok(Some(order)) => {
                let what = ChargeFor { payment, order: payment.order_id, merchant: order.merchant_id };
                self.gateway().charge(what).await
            }
            Ok(None) => Outcome::Unknown { provider_id: None, reason: "the order is gone".into() },
            Err(err) => Outcome::Unknown { provider_id: None, reason: format!("reading the order: {err}") },
        }
    }

    pub(super) async fn payment(&self, id: PaymentId) -> Result<Option<Payment>> {
        let mut conn = self.pool().acquire().await?;
        payments::get(&mut conn, id).await
    }
}

/// The outbox event of a settled order: `order.paid`, `order.refunded` or
/// `order.payment_failed`, chosen by the state it settled in.
async fn record_event(conn: &mut sqlx::PgConnection, order: &Order, payment: &Payment) -> Result<()> {
    let settled = OrderSettled {
        order_id: order.id,
        sale_id: order.subject.sale(),
        claim_id: order.subject.claim(),
        buyer_id: order.buyer_id,
        payment_id: payment.id,
        amount: order.amount,
    };
    let event = match order.status {
        OrderStatus::Paid => DomainEvent::OrderPaid(settled),
        OrderStatus::Refunded => DomainEvent::OrderRefunded(settled),
        OrderStatus::PaymentFailed => DomainEvent::OrderPaymentFailed(settled),
        other => return Err(Error::Internal(format!("order {} settled as {}", order.id, other.as_str()))),
    };
    events::record(conn, order.merchant_id, &event).await?;
    Ok(())
}

/// A guarded transition under the attempt's lock must move it; one that does
/// not is a bug, and its transaction must not commit.
fn moved(moved: bool, payment: &Payment) -> Result<()> {
    if moved { Ok(()) } else { Err(Error::Internal(format!("payment {} moved under its lock", payment.id))) }
}
