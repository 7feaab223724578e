//! Gavel's domain: the types every crate shares (ids, money, statuses) and the
//! repository functions over Postgres that own each table.
#![forbid(unsafe_code)]

pub mod auctions;
pub mod auth;
pub mod backoff;
pub mod breaker;
pub mod buyers;
pub mod claims;
pub mod db;
pub mod dead_letters;
pub mod devices;
pub mod error;
pub mod events;
pub mod feed;
pub mod health;
pub mod idempotency;
pub mod ids;
pub mod job_dead_letters;
pub mod jobs;
pub mod merchants;
pub mod money;
pub mod notification_kinds;
pub mod orders;
pub mod payments;
pub mod preferences;
pub mod products;
pub mod reconciliation;
pub mod sales;
mod status;
pub mod stripe_events;
pub mod text;
pub mod watches;
pub mod webhooks;

pub use error::{Error, Invalid, Result};

/// The migrations of Gavel's own tables (apalis-postgres has its own).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
