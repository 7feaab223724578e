//! What the provider says about a charge (a PaymentIntent, from a webhook
//! event or from Stripe itself) and why that may not settle an attempt.

use super::Payment;
use crate::ids::PaymentId;
use crate::status::status_enum;

/// What a Stripe PaymentIntent says about itself, as far as telling whether
/// it is an attempt's goes. Kept as the provider wrote it (its currency too):
/// it is a claim to check, not a fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentFacts {
    /// Stripe's `pi_…`.
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// The attempt its metadata names (we set it on every charge).
    pub payment: Option<PaymentId>,
}

status_enum!(
    /// Why a provider event may not settle an attempt. A small fixed set: each
    /// is a metric label.
    pub enum Refusal ("refusal") {
        /// The attempt knows its PaymentIntent, and this is another one.
        PaymentIntentMismatch => "payment_intent_mismatch",
        /// The PaymentIntent's metadata does not name this attempt.
        PaymentMismatch => "payment_mismatch",
        AmountMismatch => "amount_mismatch",
        CurrencyMismatch => "currency_mismatch",
        /// Stripe has no such PaymentIntent.
        UnknownPaymentIntent => "unknown_payment_intent",
        /// Stripe says the PaymentIntent did not do what the event claims.
        StatusMismatch => "status_mismatch",
    }
);

impl Payment {
    /// Why `intent` cannot be this attempt's PaymentIntent, if it cannot.
    pub fn refusal(&self, intent: &IntentFacts) -> Option<Refusal> {
        if self.provider_id.as_deref().is_some_and(|known| known != intent.id) {
            Some(Refusal::PaymentIntentMismatch)
        } else if intent.payment != Some(self.id) {
            Some(Refusal::PaymentMismatch)
        } else if intent.amount != self.amount.minor() {
            Some(Refusal::AmountMismatch)
        } else if !intent.currency.eq_ignore_ascii_case(self.amount.currency().code()) {
            Some(Refusal::CurrencyMismatch)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::ids::OrderId;
    use crate::money::{Currency, Money};
    use crate::payments::{PaymentMethod, PaymentStatus};

    #[test]
    fn a_payment_intent_is_an_attempts_only_if_id_metadata_amount_and_currency_agree() {
        let (Ok(usd), Ok(method)) = ("usd".parse::<Currency>(), PaymentMethod::parse("pm_card_visa")) else {
            panic!("usd and pm_card_visa parse");
        };
        let payment = Payment {
            id: PaymentId::new(),
            order_id: OrderId::new(),
            attempt: 1,
            idempotency_key: "k".into(),
            payment_method: method,
            amount: Money::new(1999, usd),
            status: PaymentStatus::Unknown,
            provider_id: None,
            failure_code: None,
            failure_message: None,
            verify_attempts: 0,
            created_at: Utc::now(),
            settled_at: None,
        };
        let intent = IntentFacts { id: "pi_1".into(), amount: 1999, currency: "USD".into(), payment: Some(payment.id) };
        assert_eq!(payment.refusal(&intent), None, "an unknown id is accepted until the attempt knows its own");
        let known = Payment { provider_id: Some("pi_2".into()), ..payment.clone() };
        assert_eq!(known.refusal(&intent), Some(Refusal::PaymentIntentMismatch));
        let other = IntentFacts { payment: Some(PaymentId::new()), ..intent.clone() };
        assert_eq!(payment.refusal(&other), Some(Refusal::PaymentMismatch));
        let unnamed = IntentFacts { payment: None, ..intent.clone() };
        assert_eq!(payment.refusal(&unnamed), Some(Refusal::PaymentMismatch));
        let cheap = IntentFacts { amount: 1, ..intent.clone() };
        assert_eq!(payment.refusal(&cheap), Some(Refusal::AmountMismatch));
        let euros = IntentFacts { currency: "eur".into(), ..intent };
        assert_eq!(payment.refusal(&euros), Some(Refusal::CurrencyMismatch));
    }
}
