//! The kinds of notification a buyer can hear of, as preferences name them
//! (`kinds: {"outbid": false}`) and as the notifier tags its deliveries.

use std::fmt;

/// One kind of notification. Critical kinds ignore a buyer's per-kind
/// switches and the rate limits, and go first (a channel switched off still
/// gets nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotificationKind {
    /// A watched product's sale (or any sale, for deal subscribers) starts.
    SaleStarting,
    /// The buyer's hold runs out soon.
    ClaimExpiring,
    OrderPaid,
    PaymentFailed,
    RefundIssued,
    /// Someone bid above the buyer.
    Outbid,
    /// An auction the buyer bid on or watches ends in minutes.
    AuctionEnding,
    AuctionWon,
    /// An auction order's payment deadline approaches.
    PaymentDue,
    /// An auction order lapsed unpaid.
    OrderLapsed,
}

impl NotificationKind {
    pub const ALL: [Self; 10] = [
        Self::SaleStarting,
        Self::ClaimExpiring,
        Self::OrderPaid,
        Self::PaymentFailed,
        Self::RefundIssued,
        Self::Outbid,
        Self::AuctionEnding,
        Self::AuctionWon,
        Self::PaymentDue,
        Self::OrderLapsed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SaleStarting => "sale_starting",
            Self::ClaimExpiring => "claim_expiring",
            Self::OrderPaid => "order_paid",
            Self::PaymentFailed => "payment_failed",
            Self::RefundIssued => "refund_issued",
            Self::Outbid => "outbid",
            Self::AuctionEnding => "auction_ending",
            Self::AuctionWon => "auction_won",
            Self::PaymentDue => "payment_due",
            Self::OrderLapsed => "order_lapsed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Order paid, payment failed, auction won, payment due (API.md).
    pub fn is_critical(self) -> bool {
        matches!(self, Self::OrderPaid | Self::PaymentFailed | Self::AuctionWon | Self::PaymentDue)
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::NotificationKind;

    #[test]
    fn every_kind_parses_back_from_its_name() {
        for kind in NotificationKind::ALL {
            assert_eq!(NotificationKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(NotificationKind::parse("nope"), None);
    }
}
