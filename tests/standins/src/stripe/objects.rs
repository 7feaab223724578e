//! The objects the stand-in keeps, and their JSON in Stripe's shape (every
//! field async-stripe requires is present; optional ones are null).

use std::collections::BTreeMap;

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;
use serde_json::{Value, json};

pub(crate) fn new_id(prefix: &str) -> String {
    let tail: String = rand::rng().sample_iter(&Alphanumeric).take(24).map(char::from).collect();
    format!("{prefix}_{tail}")
}

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentIntent {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// `requires_payment_method`, `requires_confirmation`, `succeeded`, `canceled`.
    pub status: String,
    pub payment_method: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
    pub latest_charge: Option<String>,
    pub amount_refunded: i64,
    /// The decline, when the last confirmation was declined.
    pub last_error: Option<String>,
}

/// What Stripe's test card payment methods do.
pub(crate) fn is_declined(payment_method: &str) -> bool {
    matches!(payment_method, "pm_card_chargeDeclined" | "pm_card_visa_chargeDeclined")
}

impl PaymentIntent {
    pub fn to_json(&self) -> Value {
        let received = if self.status == "succeeded" { self.amount } else { 0 };
        json!({
            "id": self.id, "object": "payment_intent",
            "amount": self.amount, "amount_capturable": 0, "amount_received": received,
            "amount_details": null, "application": null, "application_fee_amount": null,
            "automatic_payment_methods": null, "canceled_at": null, "cancellation_reason": null,
            "capture_method": "automatic", "client_secret": format!("{}_secret_standin", self.id),
            "confirmation_method": "automatic", "created": self.created, "currency": self.currency,
            "customer": null, "description": null,
            "last_payment_error": self.last_error.as_ref().map(|message| decline_error(message)),
            "latest_charge": self.latest_charge, "livemode": false, "metadata": self.metadata,
            "next_action": null, "on_behalf_of": null, "payment_method": self.payment_method,
            "payment_method_options": null, "payment_method_types": ["card"], "processing": null,
            "receipt_email": null, "review": null, "setup_future_usage": null, "shipping": null,
            "source": null, "statement_descriptor": null, "statement_descriptor_suffix": null,
            "status": self.status, "transfer_data": null, "transfer_group": null,
        })
    }

    /// Confirms with `payment_method`: a test decline leaves it awaiting another
    /// method; anything else succeeds.
    pub(crate) fn confirm(&mut self, payment_method: Option<String>) -> Result<(), String> {
        if self.status == "succeeded" {
            return Err("This PaymentIntent has already succeeded.".into());
        }
        let Some(pm) = payment_method.or_else(|| self.payment_method.clone()) else {
            return Err("You cannot confirm this PaymentIntent because it's missing a payment method.".into());
        };
        self.payment_method = Some(pm.clone());
        if is_declined(&pm) {
            self.status = "requires_payment_method".into();
            self.last_error = Some("Your card was declined.".into());
        } else {
            self.status = "succeeded".into();
            self.last_error = None;
            self.latest_charge = Some(new_id("ch"));
        }
        Ok(())
    }
}

/// A card decline as Stripe reports it (inside `last_payment_error` or an error body).
pub(crate) fn decline_error(message: &str) -> Value {
    json!({
        "type": "card_error", "code": "card_declined", "decline_code": "generic_decline",
        "message": message, "doc_url": "https://stripe.com/docs/error-codes/card-declined",
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// `succeeded` (what a card refund becomes at once), `pending`, `failed`, `canceled`.
    pub status: String,
    pub payment_intent: String,
    pub charge: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
}

impl Refund {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "object": "refund", "amount": self.amount, "balance_transaction": null,
            "charge": self.charge, "created": self.created, "currency": self.currency,
            "description": null, "metadata": self.metadata, "payment_intent": self.payment_intent,
            "reason": null, "receipt_number": null, "source_transfer_reversal": null,
            "status": self.status, "transfer_reversal": null,
        })
    }

    /// The balance transaction a refund makes: money leaving the balance.
    pub fn balance_transaction_json(&self) -> Value {
        balance_transaction(&self.id, -self.amount, &self.currency, self.created, "refund")
    }
}

impl super::table::Keyed for PaymentIntent {
    fn id(&self) -> &str {
        &self.id
    }

    fn created(&self) -> i64 {
        self.created
    }
}

impl super::table::Keyed for Refund {
    fn id(&self) -> &str {
        &self.id
    }

    fn created(&self) -> i64 {
        self.created
    }
}

/// The balance transaction id of a charge or refund (one each, derived from its id).
pub(crate) fn balance_transaction_id(source: &str) -> String {
    let tail = source.split_once('_').map_or(source, |(_, t)| t);
    format!("txn_{tail}")
}

fn balance_transaction(source: &str, amount: i64, currency: &str, created: i64, kind: &str) -> Value {
    json!({
        "id": balance_transaction_id(source), "object": "balance_transaction", "amount": amount,
        "available_on": created, "created": created, "currency": currency, "description": null,
        "exchange_rate": null, "fee": 0, "fee_details": [], "net": amount, "reporting_category": kind,
        "source": source, "status": "available", "type": kind,
    })
}

impl PaymentIntent {
    /// The charge a confirmed PaymentIntent made (Stripe's `latest_charge`),
    /// with what has been refunded of it.
    pub fn charge_json(&self) -> Option<Value> {
        let id = self.latest_charge.as_ref()?;
        let succeeded = self.status == "succeeded";
        Some(json!({
            "id": id, "object": "charge", "amount": self.amount,
            "amount_captured": if succeeded { self.amount } else { 0 },
            "amount_refunded": self.amount_refunded, "balance_transaction": balance_transaction_id(id),
            "captured": succeeded, "created": self.created, "currency": self.currency, "customer": null,
            "description": null, "failure_code": null, "failure_message": null, "livemode": false,
            "metadata": self.metadata, "paid": succeeded, "payment_intent": self.id,
            "payment_method": self.payment_method, "refunded": self.amount_refunded >= self.amount,
            "status": if succeeded { "succeeded" } else { "failed" },
        }))
    }

    /// The balance transaction of its charge, if it has one.
    pub fn balance_transaction_json(&self) -> Option<Value> {
        let id = self.latest_charge.as_ref()?;
        (self.status == "succeeded")
            .then(|| balance_transaction(id, self.amount, &self.currency, self.created, "charge"))
    }
}
