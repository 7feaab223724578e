//! Unit tests of the events' derivations and their stored form.

use super::*;
use crate::money::Currency;

fn paid() -> DomainEvent {
    let usd = "usd".parse::<Currency>().expect("usd is supported");
    DomainEvent::OrderPaid(OrderSettled {
        order_id: OrderId::new(),
        sale_id: Some(SaleId::new()),
        claim_id: Some(ClaimId::new()),
        buyer_id: BuyerId::new(),
        payment_id: PaymentId::new(),
        amount: Money::new(1999, usd),
    })
}

#[test]
fn an_event_is_tagged_by_type_with_its_payload_as_data() {
    let event = paid();
    let json = serde_json::to_value(&event).expect("an event serialises");
    assert_eq!(json["type"], "order.paid");
    assert_eq!(json["data"]["amount"], 1999);
    assert_eq!(json["data"]["currency"], "usd");
    assert!(json["data"]["order_id"].as_str().is_some_and(|s| s.starts_with("ord_")));
}

/// One event of every kind.
fn every_kind() -> Vec<DomainEvent> {
    let usd = "usd".parse::<Currency>().expect("usd is supported");
    let DomainEvent::OrderPaid(settled) = paid() else { panic!("paid() is order.paid") };
    let closed = SaleClosed {
        sale_id: SaleId::new(),
        figures: SaleFigures { sold: 2, expired: 1, released: 3, revenue: Money::new(3998, usd) },
    };
    let auction_closed = AuctionClosed {
        auction_id: AuctionId::new(),
        price: Money::new(1500, usd),
        bid_count: 3,
        ends_at: Utc::now(),
        winner_buyer_id: Some(BuyerId::new()),
        order_id: Some(OrderId::new()),
        trail_hash: "00".repeat(32),
    };
    let auction = AuctionId::new();
    let due = Utc::now();
    vec![
        DomainEvent::SaleStarted(SaleStarted {
            sale_id: SaleId::new(),
            product_id: ProductId::new(),
            inventory: 5,
            price: Money::new(1999, usd),
            starts_at: Utc::now(),
            ends_at: Utc::now(),
        }),
        DomainEvent::SaleEnded(closed.clone()),
        DomainEvent::SaleCancelled(closed),
        DomainEvent::OrderPaid(settled.clone()),
        DomainEvent::OrderPaymentFailed(settled.clone()),
        DomainEvent::OrderRefunded(settled),
        DomainEvent::AuctionStarted(AuctionStarted {
            auction_id: AuctionId::new(),
            product_id: ProductId::new(),
            starting_price: Money::new(1000, usd),
            starts_at: Utc::now(),
            ends_at: Utc::now(),
        }),
        DomainEvent::AuctionEnded(auction_closed.clone()),
        DomainEvent::AuctionCancelled(auction_closed),
        DomainEvent::AuctionExtended(AuctionExtended { auction_id: auction, ends_at: due, extensions: 1 }),
        DomainEvent::AuctionWon(AuctionWon {
            auction_id: auction,
            order_id: OrderId::new(),
            buyer_id: BuyerId::new(),
            price: Money::new(1500, usd),
            payment_due_at: due,
            second_chance: false,
        }),
        DomainEvent::BidOutbid(BidOutbid {
            auction_id: auction,
            buyer_id: BuyerId::new(),
            sequence: 4,
            current_price: Money::new(1500, usd),
            min_next_bid: Money::new(1600, usd),
            ends_at: due,
        }),
        DomainEvent::OrderPaymentDue(OrderPaymentDue {
            order_id: OrderId::new(),
            auction_id: auction,
            buyer_id: BuyerId::new(),
            amount: Money::new(1500, usd),
            payment_due_at: due,
            lead_seconds: 3600,
        }),
        DomainEvent::OrderLapsed(OrderLapsed {
            order_id: OrderId::new(),
            auction_id: auction,
            buyer_id: BuyerId::new(),
            amount: Money::new(1500, usd),
            payment_due_at: due,
        }),
        DomainEvent::OrderCancelled(OrderCancelled {
            order_id: OrderId::new(),
            auction_id: auction,
            buyer_id: BuyerId::new(),
            amount: Money::new(1500, usd),
        }),
        DomainEvent::ClaimExpiring(ClaimExpiring {
            claim_id: ClaimId::new(),
            sale_id: SaleId::new(),
            buyer_id: BuyerId::new(),
            expires_at: due,
            price: Money::new(1999, usd),
        }),
        DomainEvent::AuctionEndingSoon(AuctionEndingSoon {
            auction_id: auction,
            buyer_id: BuyerId::new(),
            ends_at: due,
            lead_seconds: 60,
            current_price: Money::new(1500, usd),
        }),
    ]
}

#[test]
fn a_stored_event_reads_back_as_the_event_written() {
    let all = every_kind();
    let kinds: std::collections::HashSet<_> = all.iter().map(DomainEvent::kind).collect();
    assert_eq!(kinds.len(), all.len(), "each kind has its own type");
    for event in all {
        assert_eq!(serde_json::to_value(&event).ok().map(|j| j["type"].clone()), Some(event.kind().into()));
        let data = event.data().expect("an event has data");
        assert_eq!(DomainEvent::from_stored(event.kind(), data).ok(), Some(event.clone()));
    }
    assert!(DomainEvent::from_stored("sale.exploded", serde_json::json!({})).is_err());
}

#[test]
fn a_closed_sales_figures_keep_the_shape_tests_and_merchants_read() {
    let data = every_kind()[1].data().expect("an event has data");
    assert_eq!((data["figures"]["sold"].as_i64(), data["figures"]["released"].as_i64()), (Some(2), Some(3)));
    assert_eq!(data["figures"]["revenue"], serde_json::json!({ "amount": 3998, "currency": "usd" }));
}

#[test]
fn an_orders_outcome_is_deduplicated_per_payment_and_kind() {
    let DomainEvent::OrderPaid(settled) = paid() else { unreachable!() };
    let failed = DomainEvent::OrderPaymentFailed(settled.clone());
    let paid = DomainEvent::OrderPaid(settled.clone());
    assert_eq!(paid.dedupe_key(), format!("order.paid:{}", settled.payment_id));
    assert_ne!(paid.dedupe_key(), failed.dedupe_key());
    assert_eq!(paid.subject(), settled.order_id.to_string());
}

#[test]
fn the_envelope_carries_id_version_type_and_data_side_by_side() {
    let envelope = Envelope { id: EventId::new(), version: VERSION, created_at: Utc::now(), event: paid() };
    let json = serde_json::to_value(&envelope).expect("an envelope serialises");
    assert_eq!((json["type"].as_str(), json["version"].as_i64()), (Some("order.paid"), Some(1)));
    assert_eq!(json["data"]["amount"], 1999);
    let back: Envelope = serde_json::from_value(json).expect("an envelope reads back");
    assert_eq!(back, envelope);
}
