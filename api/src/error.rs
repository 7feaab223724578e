//! Domain errors mapped to problems, in one place, each with its stable
//! [`ErrorCode`]. Internal details are logged, never returned.

use gavel_domain::Error;

use crate::problem::{ErrorCode as C, Problem};

/// What every handler returns: its answer or a [`Problem`].
pub type ApiResult<T> = Result<T, Problem>;

impl From<gavel_domain::Invalid> for Problem {
    fn from(invalid: gavel_domain::Invalid) -> Self {
        Self::invalid(invalid.field, invalid.reason)
    }
}

impl From<Error> for Problem {
    fn from(err: Error) -> Self {
        match err {
            Error::Invalid(invalid) => invalid.into(),
            Error::NotFound(what) => Self::not_found(what),
            Error::SoldOut => Self::new(C::SoldOut, "every unit of this sale is sold or held"),
            Error::SaleNotActive => Self::new(C::SaleNotActive, "the sale is not open for claims"),
            Error::SaleLocked { status } => {
                Self::new(C::SaleNotEditable, format!("the sale is {status} and can no longer change"))
                    .sale_status(status)
            }
            Error::AuctionLocked { status } => {
                Self::new(C::AuctionNotEditable, format!("the auction is {status} and can no longer change"))
            }
            Error::VersionMismatch { expected, current } => Self::new(
                C::VersionMismatch,
                format!("If-Match names version {expected} but the sale is at version {current}"),
            )
            .current_version(current),
            Error::EmailTaken => Self::new(C::EmailTaken, "an account with this email already exists"),
            Error::BadCredentials => Self::new(C::InvalidCredentials, "email or password is wrong"),
            Error::UnknownBuyer => Self::unauthorized("the token names no buyer"),
            Error::ClaimExpired => Self::new(C::ClaimExpired, "the hold has expired"),
            Error::CheckoutInProgress => Self::new(
                C::CheckoutInProgress,
                "another checkout of this claim is in progress; fetch the order or retry shortly",
            ),
            Error::OrderNotPayable { status } => {
                Self::new(C::OrderNotPayable, format!("the order is {status} and cannot be paid")).order_status(status)
            }
            Error::OrderNotCancellable { status, reason } => {
                Self::new(C::OrderNotCancellable, format!("the order cannot be cancelled: {reason}"))
                    .order_status(status)
            }
            Error::PaymentWindowClosed => Self::new(C::PaymentWindowClosed, "the order's payment deadline has passed"),
            Error::SecondChanceUnavailable { reason } => {
                Self::new(C::SecondChanceUnavailable, format!("no second-chance offer: {reason}"))
            }
            Error::NoRunnerUp => Self::new(C::NoRunnerUp, "no bidder other than the winner made an accepted bid"),
            Error::PaymentUnavailable { retry_after } => {
                Self::new(C::PaymentsUnavailable, "the payment provider is failing; your hold is kept, retry shortly")
                    .retry_after(retry_after.as_secs_f64().ceil() as u64)
            }
            Error::Contention { retry_after } => Self::new(C::Contention, "too many concurrent writers; retry shortly")
                .retry_after(retry_after.as_secs()),
            Error::Overloaded { retry_after } => {
                Self::new(C::Overloaded, "the server is busy; retry shortly").retry_after(retry_after.as_secs())
            }
            Error::DatabaseUnavailable => {
                Self::new(C::DatabaseUnavailable, "the database is briefly unavailable; retry shortly").retry_after(1)
            }
            Error::Database(err) => {
                tracing::error!(error = %err, "database error");
                Self::internal()
            }
            Error::Internal(msg) => {
                tracing::error!(error = %msg, "internal error");
                Self::internal()
            }
        }
    }
}
