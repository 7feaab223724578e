//! What every handler shares. Cloned for every request (and for every layer
//! that carries it), so it is one `Arc`: a clone is one counter increment.

use std::ops::Deref;
use std::sync::Arc;

use crate::bid_engine::BidEngine;
use crate::claim_engine::ClaimEngine;
use gavel_domain::auth::{Passwords, TokenSigner};
use gavel_domain::ids::BuyerId;
use gavel_workflows::auction_close::PaymentReminders;
use gavel_workflows::checkout::Checkout;
use sqlx::PgPool;

use crate::auth_limits::AuthLimits;
use crate::feed_hub::FeedHub;
use crate::rate_limit::RateLimiter;
use crate::routes::health::Ops;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub pool: PgPool,
    pub claims: ClaimEngine,
    pub bids: BidEngine,
    pub tokens: TokenSigner,
    /// Password hashing, bounded to about one hash per core.
    pub passwords: Passwords,
    pub auth_limits: AuthLimits,
    pub claim_limiter: RateLimiter<BuyerId>,
    pub payments: Checkout,
    /// When the buyer of an auction's order is reminded (the second-chance
    /// offer's order and a bid-triggered close schedule them).
    pub payment_reminders: PaymentReminders,
    pub stripe_webhook_secret: String,
    /// Health, readiness and the operator token.
    pub ops: Ops,
    /// The live feed's watchers in this process.
    pub feed: FeedHub,
    /// How reconciliation runs judge (`[reconciliation]`).
    pub reconciliation: gavel_workflows::reconciliation::ReconciliationConfig,
    /// Merchant webhooks' settings the API needs.
    pub webhooks: crate::routes::webhook_endpoints::WebhookSettings,
}
