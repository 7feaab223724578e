//! The domain's error type. The API maps each variant to one problem+json `code`.

use std::time::Duration;

/// An input that failed validation, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the sale is sold out")]
    SoldOut,
    #[error("the sale is not active")]
    SaleNotActive,
    #[error("the sale can no longer be changed: it is {status}")]
    SaleLocked { status: &'static str },
    #[error("the auction can no longer be changed: it is {status}")]
    AuctionLocked { status: &'static str },
    #[error("version {expected} does not match the current version {current}")]
    VersionMismatch { expected: i32, current: i32 },
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("email or password is wrong")]
    BadCredentials,
    /// A genuine token naming a buyer that has no account.
    #[error("the token names no buyer")]
    UnknownBuyer,
    #[error("the claim has expired")]
    ClaimExpired,
    #[error("a checkout of this claim is in progress")]
    CheckoutInProgress,
    #[error("the order cannot be paid: it is {status}")]
    OrderNotPayable { status: &'static str },
    /// Only an auction's order that is unpaid, with no payment in flight, can be cancelled.
    #[error("the order cannot be cancelled: {reason}")]
    OrderNotCancellable { status: &'static str, reason: &'static str },
    #[error("the order's payment window has closed")]
    PaymentWindowClosed,
    /// A second-chance offer is made only after the winner's order lapsed.
    #[error("no second-chance offer: {reason}")]
    SecondChanceUnavailable { reason: &'static str },
    /// Nobody but the winner made an accepted bid.
    #[error("no other bidder to offer the lot to")]
    NoRunnerUp,
    /// The payment provider is failing; the circuit breaker refuses calls.
    #[error("payments are unavailable; retry shortly")]
    PaymentUnavailable { retry_after: Duration },
    /// Too many concurrent writers on one row; the retry budget ran out.
    #[error("too much contention; retry shortly")]
    Contention { retry_after: Duration },
    /// Too much work queued to take this request in time: no database
    /// connection free within the pool's timeout, or no password-hashing turn.
    #[error("the server is busy; retry shortly")]
    Overloaded { retry_after: Duration },
    /// The database server is unreachable, shutting down or refusing
    /// connections: a moment's outage, answered `503` + `Retry-After`, never 500.
    #[error("the database cannot be reached")]
    DatabaseUnavailable,
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match crate::db::unavailable(&err) {
            Some(unavailable) => {
                tracing::warn!(error = %err, "database unavailable");
                unavailable
            }
            None => Error::Database(err),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
