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

/// Per address, how many distinct messages it shows, given each received
/// message's (address, identity): repeats of one identity show as one.
fn shown<'a>(received: impl Iterator<Item = (&'a str, &'a str)>) -> std::collections::HashMap<String, usize> {
    let mut seen = std::collections::HashSet::new();
    let mut counts = std::collections::HashMap::new();
    for (to, identity) in received {
        if seen.insert((to, identity)) {
            *counts.entry(to.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}
