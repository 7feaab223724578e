//! One module per resource, each with its request/response types and thin handlers.

pub mod buyers;
pub mod claims;
pub mod health;
pub mod orders;
pub mod products;
pub mod sales;
pub mod stripe_webhook;
