//! Domain events: the outbox that merchant webhooks and the notifier consume.
//!
//! Every event Gavel writes is a variant of [`DomainEvent`], and [`record`] is
//! the only writer: it derives the row's kind, subject and dedupe key from the
//! event, so two call sites cannot spell one event two ways. An event is
//! inserted in the same transaction as the state change it reports, under its
//! dedupe key, so a change that commits always has its event and a retried job
//! never reports twice.
//!
//! On the wire (a webhook body) an event is an [`Envelope`]:
//! `{"id":"evt_…","type":"sale.started","version":1,"created_at":…,"data":{…}}`.
//! The row keeps the same parts in columns: `type`, `version`, `payload`
//! (the `data`), `created_at`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::error::{Error, Result};
use crate::ids::{
    AuctionId, BuyerId, ClaimId, EventId, MerchantId, OrderId, PaymentId, ProductId, SaleId, WebhookEndpointId,
};
use crate::money::Money;

/// The payload schema's version. A change that a consumer could trip over
/// (a field removed, renamed or retyped) is a new version; adding a field is not.
pub const VERSION: i16 = 1;

/// Everything Gavel reports, each kind with its typed payload (`data`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", content = "data")]
pub enum DomainEvent {
    /// A sale opened for claims.
    #[serde(rename = "sale.started")]
    SaleStarted(SaleStarted),
    /// A sale reached its end; its open holds were released.
    #[serde(rename = "sale.ended")]
    SaleEnded(SaleClosed),
    /// A merchant cancelled a sale; its open holds were released.
    #[serde(rename = "sale.cancelled")]
    SaleCancelled(SaleClosed),
    /// An order's payment succeeded and its unit is the buyer's.
    #[serde(rename = "order.paid")]
    OrderPaid(OrderSettled),
    /// An attempt to pay an order failed.
    #[serde(rename = "order.payment_failed")]
    OrderPaymentFailed(OrderSettled),
    /// A payment was returned (its unit was no longer there).
    #[serde(rename = "order.refunded")]
    OrderRefunded(OrderSettled),
    /// An auction opened for bids.
    #[serde(rename = "auction.started")]
    AuctionStarted(AuctionStarted),
    /// An auction reached its (possibly extended) end.
    #[serde(rename = "auction.ended")]
    AuctionEnded(AuctionClosed),
    /// A merchant cancelled an auction.
    #[serde(rename = "auction.cancelled")]
    AuctionCancelled(AuctionClosed),
    /// A bid in the soft-close window moved an auction's end later.
    #[serde(rename = "auction.extended")]
    AuctionExtended(AuctionExtended),
    /// An auction's order was made for a bidder: the winner at the close, or
    /// the runner-up offered a second chance.
    #[serde(rename = "auction.won")]
    AuctionWon(AuctionWon),
    /// A bidder lost the lead (to a new bid or to someone's proxy maximum).
    #[serde(rename = "bid.outbid")]
    BidOutbid(BidOutbid),
    /// An auction's order is due soon (a reminder before its deadline).
    #[serde(rename = "order.payment_due")]
    OrderPaymentDue(OrderPaymentDue),
    /// An auction's order was not paid by its deadline.
    #[serde(rename = "order.lapsed")]
    OrderLapsed(OrderLapsed),
    /// A merchant cancelled an auction's unpaid order.
    #[serde(rename = "order.cancelled")]
    OrderCancelled(OrderCancelled),
    /// A buyer's hold runs out soon and is still held (a reminder to its buyer).
    #[serde(rename = "claim.expiring")]
    ClaimExpiring(ClaimExpiring),
    /// An auction ends soon (a reminder to one of its bidders or watchers,
    /// for its current end).
    #[serde(rename = "auction.ending_soon")]
    AuctionEndingSoon(AuctionEndingSoon),
    /// Gavel disabled one of the merchant's webhook endpoints (it answered
    /// `410 Gone`, or every attempt failed for the disabling window); sent to
    /// the merchant's other endpoints.
    #[serde(rename = "webhook_endpoint.disabled")]
    WebhookEndpointDisabled(WebhookEndpointDisabled),
}

/// `webhook_endpoint.disabled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookEndpointDisabled {
    pub endpoint_id: WebhookEndpointId,
    pub url: String,
    /// Why Gavel disabled it.
    pub reason: String,
    pub disabled_at: DateTime<Utc>,
    /// The endpoint's `version` once disabled (enabling it again and a later
    /// disabling is another event).
    pub endpoint_version: i32,
}

/// `claim.expiring`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimExpiring {
    pub claim_id: ClaimId,
    pub sale_id: SaleId,
    pub buyer_id: BuyerId,
    pub expires_at: DateTime<Utc>,
    /// The sale's price.
    pub price: Money,
}

/// `auction.ending_soon`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuctionEndingSoon {
    pub auction_id: AuctionId,
    /// The bidder or watcher reminded.
    pub buyer_id: BuyerId,
    /// The end this reminder is for (soft close may move it later).
    pub ends_at: DateTime<Utc>,
    /// How long before `ends_at` it was sent.
    pub lead_seconds: i64,
    pub current_price: Money,
}

/// `auction.started`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuctionStarted {
    pub auction_id: AuctionId,
    pub product_id: ProductId,
    pub starting_price: Money,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// `auction.ended` and `auction.cancelled`: where the bidding stood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuctionClosed {
    pub auction_id: AuctionId,
    /// The price when it closed.
    pub price: Money,
    /// Accepted bids.
    pub bid_count: u32,
    /// The end it closed at (after any extensions).
    pub ends_at: DateTime<Utc>,
    /// The winner (null when cancelled, with no bids, or below the reserve).
    #[serde(default)]
    pub winner_buyer_id: Option<BuyerId>,
    /// The winner's order (null when there is no winner).
    #[serde(default)]
    pub order_id: Option<OrderId>,
    /// The head of the bid trail's hash chain when it closed (hex).
    #[serde(default)]
    pub trail_hash: String,
}

/// `auction.extended`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuctionExtended {
    pub auction_id: AuctionId,
    /// The new end.
    pub ends_at: DateTime<Utc>,
    /// Extensions so far, this one included.
    pub extensions: i32,
}

/// `auction.won`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuctionWon {
    pub auction_id: AuctionId,
    pub order_id: OrderId,
    pub buyer_id: BuyerId,
    /// What the order costs.
    pub price: Money,
    pub payment_due_at: DateTime<Utc>,
    /// True when the order is a second-chance offer to the runner-up.
    pub second_chance: bool,
}

/// `bid.outbid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BidOutbid {
    pub auction_id: AuctionId,
    /// The bidder who lost the lead.
    pub buyer_id: BuyerId,
    /// The attempt (trail sequence) that took the lead from them.
    pub sequence: u64,
    /// The price after it.
    pub current_price: Money,
    /// What it takes to lead again.
    pub min_next_bid: Money,
    pub ends_at: DateTime<Utc>,
}

/// `order.payment_due`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderPaymentDue {
    pub order_id: OrderId,
    pub auction_id: AuctionId,
    pub buyer_id: BuyerId,
    pub amount: Money,
    pub payment_due_at: DateTime<Utc>,
    /// How long before the deadline this reminder was meant to go (seconds).
    pub lead_seconds: i64,
}

/// `order.lapsed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderLapsed {
    pub order_id: OrderId,
    pub auction_id: AuctionId,
    pub buyer_id: BuyerId,
    pub amount: Money,
    pub payment_due_at: DateTime<Utc>,
}

/// `order.cancelled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderCancelled {
    pub order_id: OrderId,
    pub auction_id: AuctionId,
    pub buyer_id: BuyerId,
    pub amount: Money,
}

/// `sale.started`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SaleStarted {
    pub sale_id: SaleId,
    pub product_id: ProductId,
    pub inventory: i32,
    /// The price of one unit.
    pub price: Money,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// `sale.ended` and `sale.cancelled`: the sale and its closing figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SaleClosed {
    pub sale_id: SaleId,
    pub figures: SaleFigures,
}

/// The closing figures of a sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SaleFigures {
    /// Units paid for.
    pub sold: i64,
    /// Holds that ran out.
    pub expired: i64,
    /// Holds returned (by a failed payment, or when the sale closed).
    pub released: i64,
    /// `sold` × the unit price.
    pub revenue: Money,
}

/// `order.paid`, `order.payment_failed` and `order.refunded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderSettled {
    pub order_id: OrderId,
    /// The sale and claim the order is for (absent for an auction's order).
    pub sale_id: Option<SaleId>,
    pub claim_id: Option<ClaimId>,
    pub buyer_id: BuyerId,
    /// The attempt that settled it.
    pub payment_id: PaymentId,
    /// What the order costs: `amount` (minor units) and `currency`.
    #[serde(flatten)]
    pub amount: Money,
}

impl DomainEvent {
    /// The event's type, as stored and as sent (`"sale.started"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SaleStarted(_) => "sale.started",
            Self::SaleEnded(_) => "sale.ended",
            Self::SaleCancelled(_) => "sale.cancelled",
            Self::OrderPaid(_) => "order.paid",
            Self::OrderPaymentFailed(_) => "order.payment_failed",
            Self::OrderRefunded(_) => "order.refunded",
            Self::AuctionStarted(_) => "auction.started",
            Self::AuctionEnded(_) => "auction.ended",
            Self::AuctionCancelled(_) => "auction.cancelled",
            Self::AuctionExtended(_) => "auction.extended",
            Self::AuctionWon(_) => "auction.won",
            Self::BidOutbid(_) => "bid.outbid",
            Self::OrderPaymentDue(_) => "order.payment_due",
            Self::OrderLapsed(_) => "order.lapsed",
            Self::OrderCancelled(_) => "order.cancelled",
            Self::ClaimExpiring(_) => "claim.expiring",
            Self::AuctionEndingSoon(_) => "auction.ending_soon",
            Self::WebhookEndpointDisabled(_) => "webhook_endpoint.disabled",
        }
    }

    /// The resource the event is about (a sale's, an auction's or an order's id).
    pub fn subject(&self) -> String {
        match self {
            Self::SaleStarted(e) => e.sale_id.to_string(),
            Self::SaleEnded(e) | Self::SaleCancelled(e) => e.sale_id.to_string(),
            Self::OrderPaid(e) | Self::OrderPaymentFailed(e) | Self::OrderRefunded(e) => e.order_id.to_string(),
            Self::AuctionStarted(e) => e.auction_id.to_string(),
            Self::AuctionEnded(e) | Self::AuctionCancelled(e) => e.auction_id.to_string(),
            Self::AuctionExtended(e) => e.auction_id.to_string(),
            Self::AuctionWon(e) => e.order_id.to_string(),
            Self::BidOutbid(e) => e.auction_id.to_string(),
            Self::OrderPaymentDue(e) => e.order_id.to_string(),
            Self::OrderLapsed(e) => e.order_id.to_string(),
            Self::OrderCancelled(e) => e.order_id.to_string(),
            Self::ClaimExpiring(e) => e.claim_id.to_string(),
            Self::AuctionEndingSoon(e) => e.auction_id.to_string(),
            Self::WebhookEndpointDisabled(e) => e.endpoint_id.to_string(),
        }
    }

    /// What makes a repeat of the event the same event: a sale starts, ends
    /// or is cancelled once; an order's outcome is reported once per payment
    /// attempt (an auction's order may fail more than once).
    pub fn dedupe_key(&self) -> String {
        match self {
            Self::SaleStarted(e) => format!("{}:{}", self.kind(), e.sale_id),
            Self::SaleEnded(e) | Self::SaleCancelled(e) => format!("{}:{}", self.kind(), e.sale_id),
            Self::OrderPaid(e) | Self::OrderPaymentFailed(e) | Self::OrderRefunded(e) => {
                format!("{}:{}", self.kind(), e.payment_id)
            }
            Self::AuctionStarted(e) => format!("{}:{}", self.kind(), e.auction_id),
            Self::AuctionEnded(e) | Self::AuctionCancelled(e) => format!("{}:{}", self.kind(), e.auction_id),
            Self::AuctionExtended(e) => format!("{}:{}:{}", self.kind(), e.auction_id, e.extensions),
            Self::AuctionWon(e) => format!("{}:{}", self.kind(), e.order_id),
            Self::BidOutbid(e) => format!("{}:{}:{}", self.kind(), e.auction_id, e.sequence),
            Self::OrderPaymentDue(e) => format!("{}:{}:{}", self.kind(), e.order_id, e.lead_seconds),
            Self::OrderLapsed(e) => format!("{}:{}", self.kind(), e.order_id),
            Self::OrderCancelled(e) => format!("{}:{}", self.kind(), e.order_id),
            Self::ClaimExpiring(e) => format!("{}:{}", self.kind(), e.claim_id),
            Self::AuctionEndingSoon(e) => format!(
                "{}:{}:{}:{}:{}",
                self.kind(),
                e.auction_id,
                e.buyer_id,
                e.ends_at.timestamp_micros(),
                e.lead_seconds
            ),
            Self::WebhookEndpointDisabled(e) => format!("{}:{}:{}", self.kind(), e.endpoint_id, e.endpoint_version),
        }
    }

    /// The payload alone (the `data` member), as stored in `events.payload`.
    pub fn data(&self) -> Result<serde_json::Value> {
        let mut whole = serde_json::to_value(self).map_err(|e| Error::Internal(format!("event encoding: {e}")))?;
        Ok(whole.get_mut("data").map(serde_json::Value::take).unwrap_or_default())
    }

    /// The event a stored row holds (`type` and `payload` columns).
    pub fn from_stored(kind: &str, payload: serde_json::Value) -> Result<Self> {
        serde_json::from_value(serde_json::json!({ "type": kind, "data": payload }))
            .map_err(|e| Error::Internal(format!("stored event {kind}: {e}")))
    }
}

/// An event as a webhook delivers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: EventId,
    /// The payload schema's version ([`VERSION`]).
    pub version: i16,
    pub created_at: DateTime<Utc>,
    /// `type` and `data`.
    #[serde(flatten)]
    pub event: DomainEvent,
}

/// The envelope's schema is written out rather than derived: a derived one is
/// `allOf` an object and the `oneOf` of the events, which client generators
/// refuse. This is the same `oneOf`, each kind's object carrying the
/// envelope's members beside its `type` and `data`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Envelope {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
        use utoipa::openapi::{KnownFormat, RefOr};
        let mut schema = <DomainEvent as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::OneOf(one_of)) = &mut schema {
            for kind in &mut one_of.items {
                if let RefOr::T(Schema::Object(object)) = kind {
                    object.properties.insert("id".into(), <EventId as utoipa::PartialSchema>::schema());
                    let version = ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .description(Some("The payload schema's version."))
                        .examples([VERSION]);
                    object.properties.insert("version".into(), version.into());
                    let created_at = ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)));
                    object.properties.insert("created_at".into(), created_at.into());
                    object.required.extend(["id".into(), "version".into(), "created_at".into()]);
                }
            }
            one_of.description = Some("An event as a merchant webhook delivers it.".into());
        }
        schema
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Envelope {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        <DomainEvent as utoipa::ToSchema>::schemas(schemas);
    }
}

/// Events as columns, for a multi-row insert (`UNNEST`) in one statement with
/// the change they report (the hot bid path); the same derivations as [`record`].
#[derive(Debug, Default)]
pub struct Rows {
    pub ids: Vec<uuid::Uuid>,
    pub kinds: Vec<String>,
    pub subjects: Vec<String>,
    pub dedupe_keys: Vec<String>,
    pub payloads: Vec<serde_json::Value>,
}

impl Rows {
    pub fn of(events: &[DomainEvent]) -> Result<Self> {
        let mut rows = Self::default();
        for event in events {
            rows.ids.push(EventId::new().uuid());
            rows.kinds.push(event.kind().to_owned());
            rows.subjects.push(event.subject());
            rows.dedupe_keys.push(event.dedupe_key());
            rows.payloads.push(event.data()?);
        }
        Ok(rows)
    }
}

/// Records an event for `merchant`; `false` if one with the same dedupe key
/// exists (the change was already reported).
pub async fn record(conn: &mut PgConnection, merchant: MerchantId, event: &DomainEvent) -> Result<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO events (id, merchant_id, type, version, subject_id, dedupe_key, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedupe_key) DO NOTHING",
        EventId::new() as EventId,
        merchant as MerchantId,
        event.kind(),
        VERSION,
        event.subject(),
        event.dedupe_key(),
        event.data()?,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

#[cfg(test)]
mod tests;
