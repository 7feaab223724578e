//! Auctions: the pure rules of bidding, apart from storage and HTTP.
//!
//! - [`increments`]: the bid increment table (eBay's by default, or a merchant's own);
//! - [`price`]: the bidding state of one auction and the judge of one attempt
//!   (PRODUCT.md, "The price rule, exactly");
//! - [`trail`]: the tamper-evident hash chain over the stored attempts.
//!
//! Nothing here reads a clock or a database: whether the auction is open (not
//! started, closed, soft close) and whether the bidder is the seller are decided
//! by the caller before an attempt reaches [`price::Book::judge`].

pub mod increments;
pub mod price;
pub mod trail;

/// The smallest amount a bid may carry, in minor units.
pub const AMOUNT_MIN: i64 = 1;
/// The largest amount a bid may carry, in minor units (PRODUCT.md: 99,999,999).
pub const AMOUNT_MAX: i64 = 99_999_999;
