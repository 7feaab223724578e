//! The fan-out: turns outbox events into deliveries. One transaction takes a
//! batch of `events WHERE notified_at IS NULL` (`FOR UPDATE SKIP LOCKED`, so
//! processes never take the same event), decides each event's recipients,
//! writes one `deliveries` row per (event, buyer, channel[, device]) under a
//! dedupe key with the message rendered, and marks the events notified. A
//! crash before the commit leaves the events to be taken again; after it,
//! they are never taken again: each event is fanned out exactly once.
//!
//! Built so far: the kinds that name one buyer (order paid / payment failed /
//! refunded, auction won, outbid, payment due, order lapsed), and the sale
//! start ([`crate::sale_start`]): `sale.started` releases the deliveries
//! prepared ahead for the sale's watchers and deal subscribers,
//! `sale.cancelled` skips them. Who gets what on which channel and device is
//! [`gavel_domain::preferences`] and [`gavel_domain::devices`] for every kind.
//! Other kinds are marked notified with no deliveries.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use gavel_domain::devices;
use gavel_domain::events::DomainEvent;
use gavel_domain::ids::{AuctionId, BuyerId, DeliveryId, OrderId};
use gavel_domain::money::Money;
use gavel_domain::notification_kinds::NotificationKind;
use gavel_domain::preferences;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::channel::{ChannelKind, Message};
use crate::sale_start::{SaleFacts, SaleStart};
use crate::schedule::RetrySchedule;
use crate::templates::{Templates, Values};

/// What the fan-out needs to know.
#[derive(Debug, Clone)]
pub struct FanOutConfig {
    /// Events taken per transaction.
    pub batch: i64,
    /// Channels with a configured provider; no deliveries are made for others.
    pub channels: HashSet<ChannelKind>,
    /// Where links in messages point (`{app_url}/orders/{id}`).
    pub app_url: String,
    /// The first delay of the retry schedule.
    pub schedule: RetrySchedule,
}

#[derive(Clone)]
pub struct FanOut {
    pool: PgPool,
    templates: Templates,
    config: FanOutConfig,
    sale_start: SaleStart,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: Uuid,
    kind: String,
    payload: serde_json::Value,
}

/// One buyer an event is for, and the facts its message is made of.
struct Target {
    buyer: BuyerId,
    /// The kind as buyers' preferences name it (`outbid`, not `bid.outbid`).
    kind: NotificationKind,
    critical: bool,
    order: Option<OrderId>,
    auction: Option<AuctionId>,
    price: Money,
    min_next_bid: Option<Money>,
    due_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
}

impl FanOut {
    pub fn new(pool: PgPool, templates: Templates, config: FanOutConfig) -> Self {
        let sale_start = SaleStart::new(pool.clone(), templates.clone(), config.clone());
        Self { pool, templates, config, sale_start }
    }

    /// The sale-start preparer ([`crate::sale_start`]).
    pub fn sale_start(&self) -> &SaleStart {
        &self.sale_start
    }

    /// Fans out one batch; returns how many events it took.
    pub async fn run_once(&self) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let events = sqlx::query_as::<_, EventRow>(
            "SELECT id, type AS kind, payload FROM events WHERE notified_at IS NULL
             ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.config.batch.max(1))
        .fetch_all(&mut *tx)
        .await?;
        if events.is_empty() {
            return Ok(0);
        }
        let mut made = 0u64;
        for event in &events {
            match DomainEvent::from_stored(&event.kind, event.payload.clone()) {
                Ok(decoded) => made += self.plan(&mut tx, event.id, &decoded).await?,
                Err(err) => tracing::warn!(event = %event.id, error = %err, "an event the notifier cannot read"),
            }
        }
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        sqlx::query("UPDATE events SET notified_at = now() WHERE id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
        tx.commit().await?;
        metrics::counter!("gavel_notifier_events_total").increment(events.len() as u64);
        metrics::counter!("gavel_notifier_deliveries_created_total").increment(made);
        Ok(events.len())
    }

    /// Writes the deliveries of one event; returns how many.
    async fn plan(&self, tx: &mut PgConnection, event_id: Uuid, event: &DomainEvent) -> Result<u64, sqlx::Error> {
        match event {
            DomainEvent::SaleStarted(e) => {
                let facts = SaleFacts {
                    id: e.sale_id,
                    product_id: e.product_id,
                    title: self.sale_start.title(tx, e.product_id).await?,
                    price: e.price,
                    ends_at: e.ends_at,
                };
                return self.sale_start.release(tx, &facts).await;
            }
            DomainEvent::SaleCancelled(e) => {
                self.sale_start.cancel(tx, e.sale_id).await?;
                return Ok(0);
            }
            _ => {}
        }
        let Some(target) = target(event) else { return Ok(0) };
        let kind = event.kind();
        let name = sqlx::query_scalar!("SELECT name FROM buyers WHERE id = $1", target.buyer as BuyerId)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(name) = name else { return Ok(0) };
        let on = preferences::get(&mut *tx, target.buyer).await.map_err(domain_error)?.channels(target.kind);
        if !on.any() {
            return Ok(0);
        }
        let values = self.values(tx, &target, name.as_deref()).await?;
        let mut made = 0;
        if on.email && self.config.channels.contains(&ChannelKind::Email) {
            match self.templates.email(kind, &values) {
                Ok(message) => {
                    made += self.insert(tx, event_id, kind, &target, ChannelKind::Email, None, &message).await?;
                }
                Err(err) => tracing::error!(kind, error = %err, "email template failed; no email"),
            }
        }
        let push_channels = [ChannelKind::Apns, ChannelKind::Fcm];
        if on.push && push_channels.iter().any(|c| self.config.channels.contains(c)) {
            let devices = devices::active_for_buyer(&mut *tx, target.buyer).await.map_err(domain_error)?;
            let rendered = self.templates.push(kind, &values);
            for device in devices {
                let Some(channel) = ChannelKind::parse(device.platform.as_str()) else { continue };
                if !self.config.channels.contains(&channel) {
                    continue;
                }
                let (title, body) = match &rendered {
                    Ok(r) => r.clone(),
                    Err(err) => {
                        tracing::error!(kind, error = %err, "push template failed; no push");
                        break;
                    }
                };
                let message = push_message(kind, &target, title, body);
                made += self.insert(tx, event_id, kind, &target, channel, Some(device.id.uuid()), &message).await?;
            }
        }
        Ok(made)
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert(
        &self,
        tx: &mut PgConnection,
        event_id: Uuid,
        kind: &str,
        target: &Target,
        channel: ChannelKind,
        device: Option<Uuid>,
        message: &Message,
    ) -> Result<u64, sqlx::Error> {
        let mut dedupe = format!("{event_id}:{}:{}", target.buyer, channel.as_str());
        if let Some(device) = device {
            dedupe.push_str(&format!(":{device}"));
        }
        let collapse = match message {
            Message::Push { collapse_key, .. } => collapse_key.clone(),
            Message::Email { .. } => None,
        };
        let payload = serde_json::to_value(message).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let delay_ms = i64::try_from(self.config.schedule.first().as_millis()).unwrap_or(0);
        let inserted = sqlx::query(
            "INSERT INTO deliveries (id, dedupe_key, event_id, kind, buyer_id, channel, device_id, critical,
                                     payload, collapse_key, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + $11 * interval '1 millisecond')
             ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(DeliveryId::new())
        .bind(&dedupe)
        .bind(event_id)
        .bind(kind)
        .bind(target.buyer)
        .bind(channel.as_str())
        .bind(device)
        .bind(target.critical)
        .bind(payload)
        .bind(collapse)
        .bind(delay_ms as f64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        Ok(inserted)
    }

    async fn values(&self, tx: &mut PgConnection, t: &Target, name: Option<&str>) -> Result<Values, sqlx::Error> {
        let title: Option<String> = match (t.order, t.auction) {
            (Some(order), _) => {
                sqlx::query_scalar(
                    "SELECT p.title FROM orders o
                     LEFT JOIN sales s ON s.id = o.sale_id LEFT JOIN auctions a ON a.id = o.auction_id
                     JOIN products p ON p.id = coalesce(s.product_id, a.product_id) WHERE o.id = $1",
                )
                .bind(order)
                .fetch_optional(&mut *tx)
                .await?
            }
            (None, Some(auction)) => {
                sqlx::query_scalar(
                    "SELECT p.title FROM auctions a JOIN products p ON p.id = a.product_id WHERE a.id = $1",
                )
                .bind(auction)
                .fetch_optional(&mut *tx)
                .await?
            }
            (None, None) => None,
        };
        let base = self.config.app_url.trim_end_matches('/');
        let mut values = Values::new();
        values.insert("buyer_name", name.filter(|n| !n.trim().is_empty()).unwrap_or("there").to_owned());
        values.insert("product_title", title.unwrap_or_else(|| "your item".into()));
        values.insert("price", format_money(t.price));
        values.insert("order_id", t.order.map(|o| o.to_string()).unwrap_or_default());
        values.insert("order_url", t.order.map(|o| format!("{base}/orders/{o}")).unwrap_or_default());
        values.insert("auction_url", t.auction.map(|a| format!("{base}/auctions/{a}")).unwrap_or_default());
        values.insert("min_next_bid", t.min_next_bid.map(format_money).unwrap_or_default());
        values.insert("due_at", t.due_at.map(format_time).unwrap_or_default());
        values.insert("ends_at", t.ends_at.map(format_time).unwrap_or_default());
        Ok(values)
    }
}

/// The buyer an event is for, if it names one (the kinds this slice sends).
/// Critical kinds (`NotificationKind::is_critical`) pass the `kinds` switches
/// (and, later, rate limits) and go first.
fn target(event: &DomainEvent) -> Option<Target> {
    use NotificationKind as K;
    let base = |kind: NotificationKind, buyer, order, auction, price| Target {
        buyer,
        kind,
        critical: kind.is_critical(),
        order,
        auction,
        price,
        min_next_bid: None,
        due_at: None,
        ends_at: None,
    };
    Some(match event {
        DomainEvent::OrderPaid(e) => base(K::OrderPaid, e.buyer_id, Some(e.order_id), None, e.amount),
        DomainEvent::OrderPaymentFailed(e) => base(K::PaymentFailed, e.buyer_id, Some(e.order_id), None, e.amount),
        DomainEvent::OrderRefunded(e) => base(K::RefundIssued, e.buyer_id, Some(e.order_id), None, e.amount),
        DomainEvent::AuctionWon(e) => Target {
            due_at: Some(e.payment_due_at),
            ..base(K::AuctionWon, e.buyer_id, Some(e.order_id), Some(e.auction_id), e.price)
        },
        DomainEvent::BidOutbid(e) => Target {
            min_next_bid: Some(e.min_next_bid),
            ends_at: Some(e.ends_at),
            ..base(K::Outbid, e.buyer_id, None, Some(e.auction_id), e.current_price)
        },
        DomainEvent::OrderPaymentDue(e) => Target {
            due_at: Some(e.payment_due_at),
            ..base(K::PaymentDue, e.buyer_id, Some(e.order_id), Some(e.auction_id), e.amount)
        },
        DomainEvent::OrderLapsed(e) => Target {
            due_at: Some(e.payment_due_at),
            ..base(K::OrderLapsed, e.buyer_id, Some(e.order_id), Some(e.auction_id), e.amount)
        },
        // Reminders (workflows/src/reminders.rs), one buyer each.
        DomainEvent::ClaimExpiring(e) => {
            Target { ends_at: Some(e.expires_at), ..base(K::ClaimExpiring, e.buyer_id, None, None, e.price) }
        }
        DomainEvent::AuctionEndingSoon(e) => Target {
            ends_at: Some(e.ends_at),
            ..base(K::AuctionEnding, e.buyer_id, None, Some(e.auction_id), e.current_price)
        },
        DomainEvent::SaleStarted(_)
        | DomainEvent::SaleEnded(_)
        | DomainEvent::SaleCancelled(_)
        | DomainEvent::AuctionStarted(_)
        | DomainEvent::AuctionEnded(_)
        | DomainEvent::AuctionCancelled(_)
        | DomainEvent::AuctionExtended(_)
        | DomainEvent::OrderCancelled(_)
        | DomainEvent::WebhookEndpointDisabled(_) => return None,
    })
}

fn push_message(kind: &str, t: &Target, title: String, body: String) -> Message {
    let mut data = BTreeMap::new();
    data.insert("kind".to_owned(), kind.to_owned());
    if let Some(order) = t.order {
        data.insert("order_id".to_owned(), order.to_string());
    }
    if let Some(auction) = t.auction {
        data.insert("auction_id".to_owned(), auction.to_string());
    }
    // Outbids on one auction replace each other on the device.
    let collapse_key = match (kind, t.auction) {
        ("bid.outbid", Some(auction)) => Some(format!("outbid:{auction}")),
        _ => None,
    };
    let ttl = if t.critical { Duration::from_secs(24 * 3600) } else { Duration::from_secs(3600) };
    Message::Push {
        title,
        body,
        data,
        collapse_key,
        critical: t.critical,
        ttl_seconds: u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX),
    }
}

fn domain_error(err: gavel_domain::Error) -> sqlx::Error {
    match err {
        gavel_domain::Error::Database(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// `19.99 USD`, `1500 JPY`.
pub fn format_money(m: Money) -> String {
    let code = m.currency().code().to_ascii_uppercase();
    let exp = u32::from(m.currency().exponent());
    if exp == 0 {
        return format!("{} {code}", m.minor());
    }
    let unit = 10i64.pow(exp);
    let sign = if m.minor() < 0 { "-" } else { "" };
    let abs = m.minor().unsigned_abs();
    let unit = unit.unsigned_abs();
    format!("{sign}{}.{:0width$} {code}", abs / unit, abs % unit, width = exp as usize)
}

fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_shown_in_major_units_with_the_currency() {
        let usd = "usd".parse().expect("usd");
        let jpy = "jpy".parse().expect("jpy");
        assert_eq!(format_money(Money::new(1999, usd)), "19.99 USD");
        assert_eq!(format_money(Money::new(5, usd)), "0.05 USD");
        assert_eq!(format_money(Money::new(1500, jpy)), "1500 JPY");
    }

    #[test]
    fn an_event_is_switched_by_the_kind_name_preferences_use() {
        use gavel_domain::events::{BidOutbid, OrderSettled};
        use gavel_domain::ids::PaymentId;
        let usd = "usd".parse().expect("usd");
        let outbid = DomainEvent::BidOutbid(BidOutbid {
            auction_id: AuctionId::new(),
            buyer_id: BuyerId::new(),
            sequence: 3,
            current_price: Money::new(1000, usd),
            min_next_bid: Money::new(1050, usd),
            ends_at: Utc::now(),
        });
        let t = target(&outbid).expect("an outbid names its buyer");
        assert_eq!(t.kind.as_str(), "outbid", "the name a PUT /v1/buyers/me/preferences accepts");
        assert!(!t.critical);
        let paid = DomainEvent::OrderPaid(OrderSettled {
            order_id: OrderId::new(),
            sale_id: None,
            claim_id: None,
            buyer_id: BuyerId::new(),
            payment_id: PaymentId::new(),
            amount: Money::new(1000, usd),
        });
        let t = target(&paid).expect("a paid order names its buyer");
        assert_eq!(t.kind, NotificationKind::OrderPaid);
        assert!(t.critical, "order paid is critical");
    }
}
