//! The `gavel` binary's library half: configuration, database bootstrap and
//! the wiring of the roles into one [`Application`]. The binary only wires.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod database;
pub mod demo;
pub mod reconcile;

pub use app::{Application, Role};
pub use config::Config;
