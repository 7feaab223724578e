//! Prefixed, typed identifiers (`sale_…`, `clm_…`).
//!
//! Each id wraps a time-ordered UUIDv7 and prints as its prefix followed by the
//! UUID's 32 hex digits. Parsing refuses another resource's prefix, so a claim id
//! can never be looked up as a sale.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// An id string that does not name a resource of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} id")]
pub struct BadId {
    pub kind: &'static str,
}

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
        #[sqlx(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The id whose UUID this is (as stored, or as carried in a token
            /// or a notification).
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0.simple())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = BadId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let hex = s
                    .strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .filter(|hex| hex.len() == 32)
                    .ok_or(BadId { kind: $prefix })?;
                Uuid::try_parse(hex).map(Self).map_err(|_| BadId { kind: $prefix })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .examples([format!("{}_0193a1b2c3d47e8f9a0b1c2d3e4f5a6b", $prefix)])
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {}
    };
}

prefixed_id!(/// A merchant (tenant).
    MerchantId, "mch");
prefixed_id!(/// A buyer account.
    BuyerId, "byr");
prefixed_id!(/// A product a merchant sells.
    ProductId, "prod");
prefixed_id!(/// A flash sale.
    SaleId, "sale");
prefixed_id!(/// A hold on one unit of a sale.
    ClaimId, "clm");
prefixed_id!(/// A domain event (outbox row).
    EventId, "evt");
prefixed_id!(/// What a buyer pays for: a sale's unit or an auction's lot.
    OrderId, "ord");
prefixed_id!(/// One attempt to take payment for an order (one call to the provider).
    PaymentId, "pay");
prefixed_id!(/// Money returned for a payment.
    RefundId, "rfnd");
prefixed_id!(/// An auction (its winner's order is paid through `POST /v1/orders/{id}/pay`).
    AuctionId, "auc");
prefixed_id!(/// One attempt to bid on an auction (accepted or rejected), as stored in its trail.
    BidId, "bid");
prefixed_id!(/// A buyer's phone or tablet as a push provider knows it (an APNs or FCM token).
    DeviceId, "dev");
prefixed_id!(/// One notification to one buyer over one channel (and device).
    DeliveryId, "dlv");
prefixed_id!(/// An entry of the dead-letter queue (a delivery or job that exhausted its retries).
    DeadLetterId, "dlq");
prefixed_id!(/// A finance reconciliation run (Gavel's ledger against the provider's records for a period).
    ReconciliationRunId, "rcr");
prefixed_id!(/// A merchant's webhook endpoint (a URL, its events and its signing secret).
    WebhookEndpointId, "we");
prefixed_id!(/// One event to one webhook endpoint, with its attempts.
    WebhookDeliveryId, "wd");
prefixed_id!(/// One HTTP attempt of a webhook delivery.
    WebhookAttemptId, "wa");

impl BuyerId {
    /// The buyer as the public sees them: the first and last characters of
    /// the printed id around `***` (`b***7`), so that a bidder can recognise
    /// themselves without others learning who they are.
    pub fn masked(&self) -> String {
        let printed = self.to_string();
        let first = printed.chars().next().unwrap_or('?');
        let last = printed.chars().next_back().unwrap_or('?');
        format!("{first}***{last}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_buyer_shows_only_the_first_and_last_characters() {
        let id: BuyerId = "byr_0193a1b2c3d47e8f9a0b1c2d3e4f5a67".parse().expect("a buyer id");
        assert_eq!(id.masked(), "b***7");
    }

    #[test]
    fn ids_round_trip_through_their_prefixed_form() {
        let id = SaleId::new();
        let text = id.to_string();
        assert!(text.starts_with("sale_"));
        assert_eq!(text.parse::<SaleId>(), Ok(id));
    }

    #[test]
    fn a_masked_buyer_shows_the_first_and_last_character_only() {
        let buyer: BuyerId = "byr_0193a1b2c3d47e8f9a0b1c2d3e4f5a67".parse().expect("a buyer id");
        assert_eq!(buyer.masked(), "b***7");
        assert!(BidId::new().to_string().starts_with("bid_"));
    }

    #[test]
    fn another_resources_prefix_is_refused() {
        let claim = ClaimId::new().to_string();
        assert_eq!(claim.parse::<SaleId>(), Err(BadId { kind: "sale" }));
        assert!("sale_xyz".parse::<SaleId>().is_err());
        assert!("sale".parse::<SaleId>().is_err());
    }
}
