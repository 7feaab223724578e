//! Finance reconciliation's records: runs (a scope and a period, with their
//! progress, so a run killed mid-way continues where it stopped) and the
//! discrepancies they find. The comparison itself lives in
//! `gavel-workflows::reconciliation`; [`ledger`] holds the reads of Gavel's
//! side it needs.

pub mod ledger;
mod runs;
pub mod seed;

use chrono::{DateTime, Utc};

use crate::error::Invalid;
use crate::ids::MerchantId;
use crate::status::status_enum;

pub use runs::*;

status_enum!(
    /// `Pending → Running → Completed | Failed`.
    pub enum RunStatus ("reconciliation run status") {
        Pending => "pending",
        Running => "running",
        Completed => "completed",
        Failed => "failed",
    }
);

status_enum!(
    /// Where a run stands; each phase pages through one side, and the cursor
    /// within it is committed with each page's discrepancies.
    pub enum Phase ("reconciliation phase") {
        /// The provider's PaymentIntents created in the period.
        ProviderPayments => "provider_payments",
        /// The provider's refunds created in the period.
        ProviderRefunds => "provider_refunds",
        /// Ledger payments of the period the provider pages did not match.
        LedgerPayments => "ledger_payments",
        /// Ledger refunds of the period the provider pages did not match.
        LedgerRefunds => "ledger_refunds",
        /// Auto-settlements re-applied (each is idempotent).
        Settle => "settle",
        Done => "done",
    }
);

status_enum!(
    /// What kind of disagreement a discrepancy is.
    pub enum Class ("discrepancy class") {
        /// In Gavel's ledger as charged or refunded; the provider has no such object.
        MissingAtProvider => "missing_at_provider",
        /// A provider payment or refund Gavel's ledger lacks.
        MissingInGavel => "missing_in_gavel",
        AmountMismatch => "amount_mismatch",
        CurrencyMismatch => "currency_mismatch",
        StatusMismatch => "status_mismatch",
        /// Still open (processing, unknown, pending) past the configured bound.
        StuckPending => "stuck_pending",
        /// A second succeeded PaymentIntent for one Gavel payment.
        DuplicateCharge => "duplicate_charge",
    }
);

impl Class {
    pub const ALL: [Class; 7] = [
        Class::MissingAtProvider,
        Class::MissingInGavel,
        Class::AmountMismatch,
        Class::CurrencyMismatch,
        Class::StatusMismatch,
        Class::StuckPending,
        Class::DuplicateCharge,
    ];
}

status_enum!(
    pub enum Resolution ("resolution") {
        /// Settled by the run through the checkout's own guarded transitions.
        AutoSettled => "auto_settled",
        /// Left for a person.
        NeedsReview => "needs_review",
    }
);

status_enum!(
    pub enum ObjectKind ("reconciled object") {
        Payment => "payment",
        Refund => "refund",
    }
);

/// A period to reconcile: `from` inclusive, `to` exclusive, at most a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

impl Period {
    /// The longest period a run covers.
    pub const MAX_DAYS: i64 = 366;

    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, Invalid> {
        if to <= from {
            return Err(Invalid::new("to", "must be after `from`"));
        }
        if to - from > chrono::Duration::days(Self::MAX_DAYS) {
            return Err(Invalid::new("to", "a period is at most a year"));
        }
        Ok(Self { from, to })
    }

    pub fn from(&self) -> DateTime<Utc> {
        self.from
    }

    pub fn to(&self) -> DateTime<Utc> {
        self.to
    }
}

/// Whose objects a run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every merchant's, and provider objects no merchant owns.
    Platform,
    Merchant(MerchantId),
}

impl Scope {
    pub fn merchant(self) -> Option<MerchantId> {
        match self {
            Scope::Platform => None,
            Scope::Merchant(m) => Some(m),
        }
    }
}

/// One discrepancy, as found (and as a CSV row shows it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    pub class: Class,
    pub object: ObjectKind,
    /// Gavel's id (`pay_…`, or the refund's), when the ledger has the object.
    pub gavel_id: Option<String>,
    pub provider_id: Option<String>,
    pub order_id: Option<String>,
    pub currency: String,
    pub gavel_amount: Option<i64>,
    pub provider_amount: Option<i64>,
    pub gavel_status: Option<String>,
    pub provider_status: Option<String>,
    pub resolution: Resolution,
    /// The ledger payment the run settles (auto-settled discrepancies only).
    pub settles_payment: Option<uuid::Uuid>,
    pub detail: String,
}

impl Discrepancy {
    /// What is at stake: the difference for an amount mismatch, else the
    /// provider's amount when it has the object, else Gavel's.
    pub fn amount(&self) -> i64 {
        match (self.class, self.gavel_amount, self.provider_amount) {
            (Class::AmountMismatch, Some(g), Some(p)) => (g - p).abs(),
            (_, _, Some(p)) => p,
            (_, Some(g), None) => g,
            (_, None, None) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_period_ends_after_it_starts_and_spans_at_most_a_year() {
        let at = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).single().unwrap_or_default();
        assert!(Period::new(at(2026, 1, 1), at(2026, 1, 2)).is_ok());
        assert!(Period::new(at(2026, 1, 2), at(2026, 1, 1)).is_err());
        assert!(Period::new(at(2026, 1, 1), at(2026, 1, 1)).is_err());
        assert!(Period::new(at(2025, 1, 1), at(2026, 1, 1)).is_ok());
        assert!(Period::new(at(2025, 1, 1), at(2026, 1, 3)).is_err());
    }
}
