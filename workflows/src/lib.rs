//! Gavel's durable workflows: the multi-step flows that must finish even if a
//! process dies mid-way. Each step is an idempotent function over Postgres,
//! advanced by jobs in apalis's tables; `gavel-workers` runs them.
//!
//! - [`sale_lifecycle`]: create/edit/cancel a sale together with its start and
//!   end jobs; start, end and hold sweeps.
//! - [`checkout`]: the checkout saga — record the attempt, charge through
//!   Stripe ([`stripe`]), settle, verify unknown outcomes, refund.
//! - [`maintenance`]: hourly pruning of finished jobs and idempotency records.
//!
//! Next to come (see README, "Roadmap"): auction close, reminders,
//! reconciliation.
#![forbid(unsafe_code)]

pub mod auction_lifecycle;
pub mod checkout;
pub mod maintenance;
pub mod sale_lifecycle;
pub mod stripe;
