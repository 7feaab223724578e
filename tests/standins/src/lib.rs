//! Stand-ins for Gavel's providers: local servers that speak the provider's
//! wire protocol, so the real client libraries can be pointed at them, with
//! fault injection (latency, 5xx, declines, "succeeded but the response was
//! lost", refused connections, 429 with Retry-After, dead push tokens). Used by the tests, by `gavel demo`, and alone as `gavel dev …`.
#![forbid(unsafe_code)]

pub mod apns;
pub mod fcm;
mod jwt;
pub mod keys;
mod serve;
pub mod smtp;
pub mod stripe;
pub mod webhook_receiver;
