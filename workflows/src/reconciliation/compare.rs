//! The comparison proper, as pure functions of one ledger row and one
//! provider record: which classes of discrepancy they show, and which of
//! those the run may settle by itself.
//!
//! Safe to settle automatically: a payment Gavel still has open
//! (`processing`/`unknown`) that the provider shows definitely succeeded or
//! failed, with the amount and currency agreeing — exactly what payment
//! verification settles. It is settled by that same path (a `Verify` step of
//! the checkout saga, which asks Stripe again and moves the attempt and its
//! order through their guarded transitions). Likewise a refund Gavel owes
//! (`pending`) whose own refund — named by its metadata, against the
//! payment's PaymentIntent, for the same money — the provider shows
//! `succeeded`: the refund job's answer was lost, and the run records what
//! that answer would have (`refunds::complete_owed`, in the page's transaction).
//! Everything else — money taken for a failed order, a refund Gavel did not
//! make, amounts that disagree — is left for a person.

use chrono::{DateTime, Utc};
use gavel_domain::ids::{MerchantId, OrderId, PaymentId, RefundId};
use gavel_domain::reconciliation::ledger::{LedgerPayment, LedgerRefund};
use gavel_domain::reconciliation::{Class, Discrepancy, ObjectKind, Resolution};

use crate::stripe::{IntentRecord, RefundRecord};

/// What every judgement of a run shares.
#[derive(Debug, Clone, Copy)]
pub struct Judge {
    /// The run's instant (fixed at its creation).
    pub as_of: DateTime<Utc>,
    /// An open payment or refund older than this is `stuck_pending`.
    pub stuck_after: chrono::Duration,
}

impl Judge {
    fn stuck(&self, created_at: DateTime<Utc>) -> bool {
        self.as_of.checked_sub_signed(self.stuck_after).is_some_and(|bound| created_at < bound)
    }
}

fn provider_failed(status: &str) -> bool {
    matches!(status, "requires_payment_method" | "canceled")
}

/// A PaymentIntent that moved (or may move) money: what Gavel must know of.
pub fn moves_money(status: &str) -> bool {
    matches!(status, "succeeded" | "processing" | "requires_capture")
}

fn gavel_open(status: &str) -> bool {
    matches!(status, "processing" | "unknown")
}

fn payment_row(class: Class, l: Option<&LedgerPayment>, pi: Option<&IntentRecord>, detail: String) -> Discrepancy {
    Discrepancy {
        class,
        object: ObjectKind::Payment,
        gavel_id: l.map(|l| PaymentId::from_uuid(l.id).to_string()),
        provider_id: pi.map(|pi| pi.id.clone()).or_else(|| l.and_then(|l| l.provider_id.clone())),
        order_id: l
            .map(|l| OrderId::from_uuid(l.order_id).to_string())
            .or_else(|| pi.and_then(|pi| pi.metadata.get(crate::stripe::ORDER_KEY).cloned())),
        currency: l.map(|l| l.currency.clone()).or_else(|| pi.map(|pi| pi.currency.to_lowercase())).unwrap_or_default(),
        gavel_amount: l.map(|l| l.amount),
        provider_amount: pi.map(|pi| pi.amount),
        gavel_status: l.map(|l| l.status.clone()),
        provider_status: pi.map(|pi| pi.status.clone()),
        resolution: Resolution::NeedsReview,
        settles_payment: None,
        detail,
    }
}

/// A ledger payment against its PaymentIntent.
pub fn payment_vs_intent(judge: &Judge, l: &LedgerPayment, pi: &IntentRecord) -> Vec<Discrepancy> {
    let mut found = Vec::new();
    let same_currency = l.currency.eq_ignore_ascii_case(&pi.currency);
    let same_amount = l.amount == pi.amount;
    if !same_currency {
        let detail = format!("Gavel charged in {}, the provider in {}", l.currency, pi.currency.to_lowercase());
        found.push(payment_row(Class::CurrencyMismatch, Some(l), Some(pi), detail));
    }
    if !same_amount {
        let detail = format!("Gavel recorded {}, the provider {}", l.amount, pi.amount);
        found.push(payment_row(Class::AmountMismatch, Some(l), Some(pi), detail));
    }
    let (p, g) = (pi.status.as_str(), l.status.as_str());
    let agree = match g {
        "succeeded" | "refunded" => p == "succeeded",
        "failed" => provider_failed(p),
        _ => true,
    };
    if !agree {
        let detail = format!("Gavel has the payment {g} (order {}), the provider {p}", l.order_status);
        found.push(payment_row(Class::StatusMismatch, Some(l), Some(pi), detail));
    } else if gavel_open(g) && (p == "succeeded" || provider_failed(p)) {
        let mut row = payment_row(Class::StatusMismatch, Some(l), Some(pi), String::new());
        if same_amount && same_currency {
            let outcome = if p == "succeeded" { "paid" } else { "failed" };
            row.resolution = Resolution::AutoSettled;
            row.settles_payment = Some(l.id);
            row.detail = format!("pending in Gavel, {p} at the provider: settled as {outcome} through verification");
        } else {
            row.detail = format!("pending in Gavel, {p} at the provider, but they disagree on the money");
        }
        found.push(row);
    } else if gavel_open(g) && judge.stuck(l.created_at) {
        let detail = format!("{g} in Gavel and {p} at the provider since {}", l.created_at.to_rfc3339());
        found.push(payment_row(Class::StuckPending, Some(l), Some(pi), detail));
    }
    found
}

/// A ledger payment of the period the provider does not have (`pi` is what
/// a lookup by its id found outside the period, if anything).
pub fn payment_alone(judge: &Judge, l: &LedgerPayment, pi: Option<&IntentRecord>) -> Vec<Discrepancy> {
    if let Some(pi) = pi {
        return payment_vs_intent(judge, l, pi);
    }
    match l.status.as_str() {
        "succeeded" | "refunded" => {
            let detail = match &l.provider_id {
                Some(id) => format!("Gavel has the payment {} under {id}; the provider has no such payment", l.status),
                None => format!("Gavel has the payment {} but no provider id", l.status),
            };
            vec![payment_row(Class::MissingAtProvider, Some(l), None, detail)]
        }
        "failed" if l.provider_id.is_some() => {
            vec![payment_row(
                Class::MissingAtProvider,
                Some(l),
                None,
                "a failed payment's PaymentIntent is unknown to the provider".into(),
            )]
        }
        s if gavel_open(s) && judge.stuck(l.created_at) => {
            let detail =
                format!("{s} in Gavel since {}; the provider has no payment for it", l.created_at.to_rfc3339());
            vec![payment_row(Class::StuckPending, Some(l), None, detail)]
        }
        _ => Vec::new(),
    }
}

/// A second succeeded PaymentIntent naming a payment that has another one.
pub fn duplicate(l: &LedgerPayment, pi: &IntentRecord) -> Discrepancy {
    let detail = format!(
        "a second succeeded charge for {}; Gavel's is {}",
        PaymentId::from_uuid(l.id),
        l.provider_id.as_deref().unwrap_or("-")
    );
    let mut row = payment_row(Class::DuplicateCharge, Some(l), Some(pi), detail);
    row.currency = pi.currency.to_lowercase();
    row
}

/// A PaymentIntent Gavel's ledger lacks.
pub fn intent_alone(pi: &IntentRecord) -> Discrepancy {
    let whose = pi.metadata.get(crate::stripe::MERCHANT_KEY).map_or("no merchant", String::as_str);
    let detail = format!("a {} payment at the provider ({whose}) that Gavel's ledger lacks", pi.status);
    payment_row(Class::MissingInGavel, None, Some(pi), detail)
}

fn refund_row(class: Class, r: Option<&LedgerRefund>, pr: Option<&RefundRecord>, detail: String) -> Discrepancy {
    Discrepancy {
        class,
        object: ObjectKind::Refund,
        gavel_id: r.map(|r| RefundId::from_uuid(r.id).to_string()),
        provider_id: pr.map(|p| p.id.clone()).or_else(|| r.and_then(|r| r.provider_id.clone())),
        order_id: r.map(|r| OrderId::from_uuid(r.order_id).to_string()),
        currency: r.map(|r| r.currency.clone()).or_else(|| pr.map(|p| p.currency.to_lowercase())).unwrap_or_default(),
        gavel_amount: r.map(|r| r.amount),
        provider_amount: pr.map(|p| p.amount),
        gavel_status: r.map(|r| r.status.clone()),
        provider_status: pr.map(|p| p.status.clone()),
        resolution: Resolution::NeedsReview,
        settles_payment: None,
        detail,
    }
}

/// A ledger refund against the provider's.
pub fn refund_vs_refund(judge: &Judge, r: &LedgerRefund, pr: &RefundRecord) -> Vec<Discrepancy> {
    let mut found = Vec::new();
    let same_currency = r.currency.eq_ignore_ascii_case(&pr.currency);
    let same_amount = r.amount == pr.amount;
    if !same_currency {
        let detail = format!("Gavel refunded in {}, the provider in {}", r.currency, pr.currency.to_lowercase());
        found.push(refund_row(Class::CurrencyMismatch, Some(r), Some(pr), detail));
    }
    if !same_amount {
        let detail = format!("Gavel recorded a refund of {}, the provider {}", r.amount, pr.amount);
        found.push(refund_row(Class::AmountMismatch, Some(r), Some(pr), detail));
    }
    let agree = match (r.status.as_str(), pr.status.as_str()) {
        ("succeeded", p) => p == "succeeded" || p == "pending",
        ("pending", _) => true,
        _ => false,
    };
    if !agree {
        let detail = format!("the refund is {} in Gavel, {} at the provider", r.status, pr.status);
        found.push(refund_row(Class::StatusMismatch, Some(r), Some(pr), detail));
    } else if r.status == "pending" && pr.status == "succeeded" {
        let mut row = refund_row(Class::StatusMismatch, Some(r), Some(pr), String::new());
        let same_intent = pr.payment_intent.is_some() && pr.payment_intent == r.payment_provider_id;
        if same_amount && same_currency && same_intent {
            row.resolution = Resolution::AutoSettled;
            row.detail = "owed in Gavel, succeeded at the provider: settled as refunded".into();
        } else if !same_intent {
            row.detail = "owed in Gavel; a refund naming it succeeded at the provider, against another payment".into();
        } else {
            row.detail = "owed in Gavel, succeeded at the provider, but they disagree on the money".into();
        }
        found.push(row);
    } else if r.status == "pending" && judge.stuck(r.created_at) {
        let detail = format!("owed since {}; the provider has it {}", r.created_at.to_rfc3339(), pr.status);
        found.push(refund_row(Class::StuckPending, Some(r), Some(pr), detail));
    }
    found
}

/// A ledger refund of the period the provider's refund pages did not show.
pub fn refund_alone(judge: &Judge, r: &LedgerRefund, pr: Option<&RefundRecord>) -> Vec<Discrepancy> {
    if let Some(pr) = pr {
        return refund_vs_refund(judge, r, pr);
    }
    match (r.status.as_str(), &r.provider_id) {
        ("succeeded", id) => {
            let detail =
                format!("Gavel has a refund under {}; the provider has no such refund", id.as_deref().unwrap_or("-"));
            vec![refund_row(Class::MissingAtProvider, Some(r), None, detail)]
        }
        ("pending", _) if judge.stuck(r.created_at) => {
            let detail = format!("owed since {} and not made at the provider", r.created_at.to_rfc3339());
            vec![refund_row(Class::StuckPending, Some(r), None, detail)]
        }
        _ => Vec::new(),
    }
}

/// A provider refund Gavel did not make (e.g. one made in Stripe's
/// dashboard): reported with the order's state, which is left as it is.
pub fn refund_unknown(pr: &RefundRecord, paid: Option<&LedgerPayment>) -> Discrepancy {
    let mut row = refund_row(Class::MissingInGavel, None, Some(pr), String::new());
    match paid {
        Some(l) => {
            row.order_id = Some(OrderId::from_uuid(l.order_id).to_string());
            row.gavel_status = Some(l.order_status.clone());
            row.detail = format!(
                "a refund made at the provider that Gavel did not make; order {} stays {} in Gavel (not changed)",
                OrderId::from_uuid(l.order_id),
                l.order_status
            );
        }
        None => row.detail = "a refund made at the provider for a payment Gavel's ledger lacks".into(),
    }
    row
}

/// The merchant a PaymentIntent's metadata names.
pub fn merchant_of(metadata: &std::collections::HashMap<String, String>) -> Option<MerchantId> {
    metadata.get(crate::stripe::MERCHANT_KEY).and_then(|m| m.parse().ok())
}

/// The payment a provider object's metadata names.
pub fn payment_of(metadata: &std::collections::HashMap<String, String>) -> Option<PaymentId> {
    metadata.get(crate::stripe::PAYMENT_KEY).and_then(|m| m.parse().ok())
}
