//! Stripe, and only Stripe: the API client the checkout saga charges, looks
//! up and refunds through ([`Gateway`], behind the domain's circuit breaker),
//! and webhook verification and parsing ([`verify_event`] into
//! [`ProviderEvent`]). Nothing outside this module names async-stripe's types.

mod client;
mod records;
mod webhook;

pub use client::{ChargeFor, Gateway, GatewayConfig, MERCHANT_KEY, ORDER_KEY, Outcome, PAYMENT_KEY, is_intent_id};
pub use records::{IntentRecord, Page, RefundRecord};
pub use webhook::{Content, ProviderEvent, Rejected, VerifiedEvent, verify_event};
