//! Merchant webhooks (issue 12): endpoints ([`endpoints`]), the deliveries
//! the dispatcher makes of the outbox and their attempts ([`deliveries`]),
//! Standard Webhooks signatures ([`signing`]) and the SSRF rules for target
//! URLs ([`target`]). The dispatcher itself (outbox consumer, HTTP sends,
//! retries) lives in the workers crate.

pub mod deliveries;
pub mod endpoints;
pub mod settle;
pub mod signing;
pub mod target;

use crate::error::Invalid;

/// The event types a merchant's endpoint can receive (an endpoint with no
/// list receives all of them). `order.cancelled` is accepted for forward
/// compatibility: no order can be cancelled yet, so none is sent.
/// `webhook_endpoint.disabled` tells a merchant's other endpoints that Gavel
/// disabled one (the disabled one is no longer sent anything).
pub const EVENT_TYPES: &[&str] = &[
    "sale.started",
    "sale.ended",
    "order.paid",
    "order.payment_failed",
    "order.cancelled",
    "order.refunded",
    "auction.ended",
    "auction.won",
    "order.lapsed",
    "webhook_endpoint.disabled",
];

/// An endpoint's subscription: some event types, or (empty) all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventTypes(Vec<String>);

impl EventTypes {
    /// Every type.
    pub fn all() -> Self {
        Self(Vec::new())
    }

    /// Checks each name against [`EVENT_TYPES`]; duplicates are dropped; an
    /// empty list means every type.
    pub fn parse(names: &[String]) -> Result<Self, Invalid> {
        let mut types: Vec<String> = Vec::new();
        for name in names {
            if !EVENT_TYPES.contains(&name.as_str()) {
                return Err(Invalid::new(
                    "events",
                    format!("{name:?} is not an event type; one of {}", EVENT_TYPES.join(", ")),
                ));
            }
            if !types.contains(name) {
                types.push(name.clone());
            }
        }
        Ok(Self(types))
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// What an endpoint answers for its `events`: the list, or every type.
    pub fn shown(stored: &[String]) -> Vec<String> {
        if stored.is_empty() { EVENT_TYPES.iter().map(|s| (*s).to_owned()).collect() } else { stored.to_vec() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_checked_and_deduplicated() {
        let ok = EventTypes::parse(&["order.paid".into(), "order.paid".into(), "sale.started".into()]);
        assert_eq!(ok.map(|t| t.names().len()), Ok(2));
        assert!(EventTypes::parse(&["bid.outbid".into()]).is_err());
        assert_eq!(EventTypes::shown(&[]).len(), EVENT_TYPES.len());
    }
}
