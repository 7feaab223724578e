//! Gavel's durable workflows: the multi-step flows that must finish even if a
//! process dies mid-way. Each step is an idempotent function over Postgres,
//! advanced by jobs in apalis's tables; `gavel-workers` runs them.
//!
//! - [`sale_lifecycle`]: create/edit/cancel a sale together with its start and
//!   end jobs; start, end and hold sweeps.
//! - [`checkout`]: the checkout saga — record the attempt, charge through
//!   Stripe ([`stripe`]), settle, verify unknown outcomes, refund.
//! - [`auction_lifecycle`]: create/cancel an auction with its start and end
//!   jobs; start and the guarded close.
//! - [`auction_close`]: what the close creates — the winner's order, its
//!   reminders and lapse — and the second-chance offer.
//! - [`maintenance`]: hourly pruning of finished jobs and idempotency records.
//!
//! - [`reconciliation`]: finance reconciliation of the ledger against
//!   Stripe's records for a period (resumable, idempotent per period).
#![forbid(unsafe_code)]

pub mod auction_close;
pub mod auction_lifecycle;
pub mod checkout;
pub mod maintenance;
pub mod reconciliation;
pub mod reminders;
pub mod sale_lifecycle;
pub mod stripe;
