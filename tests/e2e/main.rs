//! End-to-end tests: the real application over real HTTP and a real
//! PostgreSQL (a fresh database per test). See `helpers.rs` and the typed
//! client in `client.rs`.

// A test states why it expects a value; `expect` is the test's assertion.
#![allow(clippy::expect_used)]

mod auction_close;
mod auction_close_once;
mod auction_feed;
mod auctions;
mod auth_limits;
mod bad_input;
mod bids;
mod bootstrap;
mod checkout;
mod checkout_crash;
mod child;
mod client;
mod crash;
mod cron;
mod demo;
mod expiry;
mod feed;
mod helpers;
mod herd;
mod idempotency;
mod job_dead_letters;
mod lifecycle;
mod notifier;
mod notify_policy;
mod notify_push;
mod notify_reminders;
mod notify_settings;
mod openapi_conformance;
mod operations;
mod order_cancel;
mod paid_orders;
mod reconciliation;
mod reconciliation_crash;
mod sale_start;
mod sales_api;
mod secrets;
mod sse;
mod staying_up;
mod stripe_standin;
mod stripe_webhooks;
mod webhooks;
