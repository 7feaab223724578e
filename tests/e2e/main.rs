//! End-to-end tests: the real application over real HTTP and a real
//! PostgreSQL (a fresh database per test). See `helpers.rs`.

mod auth_limits;
mod bad_input;
mod bootstrap;
mod checkout;
mod checkout_crash;
mod child;
mod crash;
mod expiry;
mod helpers;
mod herd;
mod idempotency;
mod lifecycle;
mod openapi_conformance;
mod operations;
mod sales_api;
mod secrets;
mod staying_up;
mod stripe_standin;
mod stripe_webhooks;
