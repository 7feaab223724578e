//! Stripe's webhook events fed into the saga's settling. A signature proves an
//! event came from someone holding the endpoint secret, not that it is true of
//! the attempt it names: an event settles an attempt only if its
//! PaymentIntent is the attempt's (id when known, metadata, amount,
//! currency), and a success only once Stripe itself, asked directly, says so.
//! Anything else is refused — logged and counted — and the attempt is left to
//! the saga's own answer or its verification.

use gavel_domain::Result;
use gavel_domain::payments::{self, IntentFacts, Payment, Refusal};
use gavel_domain::stripe_events::EventOutcome;

use super::Checkout;
use crate::stripe::{Outcome, ProviderEvent, is_intent_id};

/// What an event did, stored with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// It settled its attempt.
    Applied,
    /// Nothing to do (why).
    Ignored(&'static str),
    /// It does not match its attempt or Stripe.
    Refused(Refusal),
    /// Stripe could not confirm it now (why); the attempt stays open for the
    /// saga's own answer or its verification jobs.
    Deferred(String),
}

impl Disposition {
    pub fn outcome(&self) -> EventOutcome {
        match self {
            Self::Applied => EventOutcome::Applied,
            Self::Ignored(_) => EventOutcome::Ignored,
            Self::Refused(_) => EventOutcome::Refused,
            Self::Deferred(_) => EventOutcome::Deferred,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Applied => None,
            Self::Ignored(why) => Some(why),
            Self::Refused(refusal) => Some(refusal.as_str()),
            Self::Deferred(why) => Some(why),
        }
    }
}

impl Checkout {
    /// Settles the attempt a verified event names, if it is still open and
    /// the event holds up.
    pub async fn on_provider_event(&self, event: ProviderEvent) -> Result<Disposition> {
        let claimed = event.intent();
        let mut conn = self.pool().acquire().await?;
        let payment = match claimed.payment {
            Some(id) => payments::get(&mut conn, id).await?,
            None => payments::by_provider_id(&mut conn, &claimed.id).await?,
        };
        drop(conn);
        let Some(payment) = payment else {
            tracing::warn!(payment_intent = claimed.id, "a Stripe event names no payment of ours; ignored");
            return Ok(Disposition::Ignored("no_such_payment"));
        };
        // Settled already: the usual case, our own call's answer came first.
        // A duplicate or late event changes nothing, whatever it says.
        if !payment.status.is_open() {
            return Ok(Disposition::Ignored("already_settled"));
        }
        if let Some(refusal) = payment.refusal(claimed) {
            return Ok(refuse(&payment, claimed, refusal, "event"));
        }
        match event {
            ProviderEvent::PaymentSucceeded { intent } => self.confirm_success(&payment, &intent).await,
            ProviderEvent::PaymentFailed { intent, code, message } => {
                let outcome = Outcome::Failed { provider_id: Some(intent.id), code, message };
                self.settle(&payment, outcome).await?;
                Ok(Disposition::Applied)
            }
        }
    }

    /// Settles a success only as Stripe reports it when asked directly.
    async fn confirm_success(&self, payment: &Payment, claimed: &IntentFacts) -> Result<Disposition> {
        // Refused before asking: no Stripe id looks like this.
        if !is_intent_id(&claimed.id) {
            return Ok(refuse(payment, claimed, Refusal::UnknownPaymentIntent, "event"));
        }
        if self.gateway().admit().is_err() {
            return Ok(Disposition::Deferred("circuit breaker open".into()));
        }
        let (intent, outcome) = match self.gateway().retrieve(&claimed.id).await {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(refuse(payment, claimed, Refusal::UnknownPaymentIntent, "stripe")),
            Err(reason) => {
                tracing::warn!(payment = %payment.id, reason, "Stripe could not confirm a success event; left to verification");
                return Ok(Disposition::Deferred(format!("stripe unreachable: {reason}")));
            }
        };
        if let Some(refusal) = payment.refusal(&intent) {
            return Ok(refuse(payment, &intent, refusal, "stripe"));
        }
        match outcome {
            succeeded @ Outcome::Succeeded { .. } => {
                self.settle(payment, succeeded).await?;
                Ok(Disposition::Applied)
            }
            Outcome::Failed { .. } => Ok(refuse(payment, &intent, Refusal::StatusMismatch, "stripe")),
            // Still processing at Stripe: its own event (or verification) settles it later.
            Outcome::Unknown { reason, .. } => Ok(Disposition::Deferred(reason)),
        }
    }
}

/// Counts and logs a refusal. `source` says whose word `intent` is: the
/// event's, or Stripe's when asked.
fn refuse(payment: &Payment, intent: &IntentFacts, refusal: Refusal, source: &'static str) -> Disposition {
    metrics::counter!("gavel_stripe_events_refused_total", "reason" => refusal.as_str()).increment(1);
    tracing::warn!(
        payment = %payment.id,
        payment_intent = intent.id,
        amount = intent.amount,
        currency = intent.currency,
        expected_amount = payment.amount.minor(),
        expected_currency = payment.amount.currency().code(),
        source,
        reason = refusal.as_str(),
        "a Stripe event does not match its payment; refused"
    );
    Disposition::Refused(refusal)
}
