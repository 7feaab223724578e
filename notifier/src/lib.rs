//! The notifier (issue 11): turns the events outbox into messages to buyers
//! over email (SMTP), APNs and FCM, one durable `deliveries` row per
//! (event, recipient, channel[, device]).
//!
//! The seams:
//! - [`channel::Channel`]: one provider (email, APNs, FCM). A channel sends one
//!   rendered [`channel::Message`] to one address and says how it went
//!   ([`channel::Sent`] or a [`channel::SendError`] that tells the delivery loop
//!   whether to retry, when, or to retire the address). [`apns`] and [`fcm`]
//!   are the push channels; [`push::channels`] builds those configured.
//! - The outbox: `events.notified_at IS NULL` rows are not yet fanned out; the
//!   fan-out takes them with `FOR UPDATE SKIP LOCKED`, writes their deliveries
//!   and marks them in one transaction (exactly once across processes).
#![forbid(unsafe_code)]

pub mod apns;
pub mod channel;
pub mod fcm;
mod http;
pub mod push;
