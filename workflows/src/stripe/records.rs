//! Reading Stripe's records for reconciliation: PaymentIntents and refunds
//! created in a period, a page at a time with Stripe's `limit` /
//! `starting_after` / `created[gte|lt]` pagination (through async-stripe's
//! list requests), and single objects by id. Pages are read one at a time,
//! so a run holds one page in memory whatever the period's size.

use std::collections::HashMap;

use ::stripe::StripeError;
use chrono::{DateTime, Utc};
use stripe_core::payment_intent::{ListPaymentIntent, RetrievePaymentIntent};
use stripe_core::refund::{ListRefund, RetrieveRefund};
use stripe_types::{RangeBoundsTs, RangeQueryTs};

use super::Gateway;

/// What reconciliation reads of a PaymentIntent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentRecord {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// Stripe's status (`succeeded`, `processing`, `requires_payment_method`, …).
    pub status: String,
    pub created: i64,
    pub metadata: HashMap<String, String>,
}

/// What reconciliation reads of a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// `succeeded`, `pending`, `failed`, `canceled`.
    pub status: String,
    pub payment_intent: Option<String>,
    pub created: i64,
    pub metadata: HashMap<String, String>,
}

/// One page of a list: its objects, and whether more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

/// `created[gte]=from, created[lt]=to` in Stripe's whole seconds (an end
/// inside a second takes that second in).
fn created(from: DateTime<Utc>, to: DateTime<Utc>) -> RangeQueryTs {
    let lt = if to.timestamp_subsec_nanos() > 0 { to.timestamp() + 1 } else { to.timestamp() };
    RangeQueryTs::Bounds(RangeBoundsTs { gte: Some(from.timestamp()), lt: Some(lt), ..Default::default() })
}

fn intent_record(pi: stripe_shared::PaymentIntent) -> IntentRecord {
    IntentRecord {
        id: pi.id.to_string(),
        amount: pi.amount,
        currency: pi.currency.to_string(),
        status: pi.status.as_str().to_owned(),
        created: pi.created,
        metadata: pi.metadata,
    }
}

fn refund_record(r: stripe_shared::Refund) -> RefundRecord {
    RefundRecord {
        id: r.id.to_string(),
        amount: r.amount,
        currency: r.currency.to_string(),
        status: r.status.unwrap_or_else(|| "succeeded".to_owned()),
        payment_intent: r.payment_intent.map(|pi| pi.id().to_string()),
        created: r.created,
        metadata: r.metadata.unwrap_or_default(),
    }
}

fn is_missing(err: &StripeError) -> bool {
    matches!(err, StripeError::Stripe(e, 404) if e.code.as_ref().is_some_and(|c| c.as_str() == "resource_missing"))
}

impl Gateway {
    /// PaymentIntents created in `[from, to)`, newest first, after the cursor.
    pub async fn list_intents(
        &self,
        period: (DateTime<Utc>, DateTime<Utc>),
        after: Option<&str>,
        limit: u8,
    ) -> Result<Page<IntentRecord>, String> {
        let mut request = ListPaymentIntent::new().created(created(period.0, period.1)).limit(i64::from(limit));
        if let Some(after) = after {
            request = request.starting_after(after);
        }
        let list = request.send(&self.client).await.map_err(|e| format!("listing payment intents: {e}"))?;
        Ok(Page { has_more: list.has_more, data: list.data.into_iter().map(intent_record).collect() })
    }

    /// Refunds created in `[from, to)`, newest first, after the cursor.
    pub async fn list_refunds(
        &self,
        period: (DateTime<Utc>, DateTime<Utc>),
        after: Option<&str>,
        limit: u8,
    ) -> Result<Page<RefundRecord>, String> {
        let mut request = ListRefund::new().created(created(period.0, period.1)).limit(i64::from(limit));
        if let Some(after) = after {
            request = request.starting_after(after);
        }
        let list = request.send(&self.client).await.map_err(|e| format!("listing refunds: {e}"))?;
        Ok(Page { has_more: list.has_more, data: list.data.into_iter().map(refund_record).collect() })
    }

    /// One PaymentIntent; `Ok(None)` when Stripe has none by that id.
    pub async fn intent_record(&self, id: &str) -> Result<Option<IntentRecord>, String> {
        if !super::is_intent_id(id) {
            return Ok(None);
        }
        match RetrievePaymentIntent::new(id).send(&self.client).await {
            Ok(pi) => Ok(Some(intent_record(pi))),
            Err(err) if is_missing(&err) => Ok(None),
            Err(err) => Err(format!("retrieving {id}: {err}")),
        }
    }

    /// One refund; `Ok(None)` when Stripe has none by that id.
    pub async fn refund_record(&self, id: &str) -> Result<Option<RefundRecord>, String> {
        let well_formed = id.strip_prefix("re_").is_some_and(|tail| {
            !tail.is_empty() && tail.len() < 255 && tail.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        if !well_formed {
            return Ok(None);
        }
        match RetrieveRefund::new(id).send(&self.client).await {
            Ok(r) => Ok(Some(refund_record(r))),
            Err(err) if is_missing(&err) => Ok(None),
            Err(err) => Err(format!("retrieving {id}: {err}")),
        }
    }
}
