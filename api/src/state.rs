//! What every handler shares.

use gavel_domain::auth::{PasswordCost, TokenSigner};
use gavel_domain::claim_engine::ClaimEngine;
use gavel_workflows::checkout::Payments;
use sqlx::PgPool;

use crate::rate_limit::RateLimiter;
use crate::routes::health::Ops;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub claims: ClaimEngine,
    pub tokens: TokenSigner,
    pub password_cost: PasswordCost,
    pub claim_limiter: RateLimiter,
    pub payments: Payments,
    pub stripe_webhook_secret: String,
    /// Health, readiness and the operator token.
    pub ops: Ops,
}
