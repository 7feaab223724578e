//! What every handler shares.

use gavel_domain::auth::{Passwords, TokenSigner};
use gavel_domain::claim_engine::ClaimEngine;
use gavel_domain::ids::BuyerId;
use gavel_workflows::checkout::Payments;
use sqlx::PgPool;

use crate::auth_limits::AuthLimits;
use crate::rate_limit::RateLimiter;
use crate::routes::health::Ops;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub claims: ClaimEngine,
    pub tokens: TokenSigner,
    /// Password hashing, bounded to about one hash per core.
    pub passwords: Passwords,
    pub auth_limits: AuthLimits,
    pub claim_limiter: RateLimiter<BuyerId>,
    pub payments: Payments,
    pub stripe_webhook_secret: String,
    /// Health, readiness and the operator token.
    pub ops: Ops,
}
