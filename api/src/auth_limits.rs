//! Limits on sign-up and sign-in, so that neither can be used to guess
//! passwords or to burn the server's hashing time.
//!
//! Per client address: `auth.signups_per_ip_per_minute` and
//! `auth.signins_per_ip_per_minute` (settings, so a load test from one address
//! can raise them). Per account: at most [`FAILURES_PER_ACCOUNT`] wrong
//! passwords per [`FAILURE_WINDOW`]; past that the account refuses every
//! sign-in, the right password included, until the window frees a slot. That one
//! is fixed: guessing one account's password stays slow in every deployment. It
//! counts attempts on unknown emails too, so its answer does not reveal which
//! accounts exist.

use std::net::IpAddr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::ApiResult;
use crate::problem::{ErrorCode, Problem};
use crate::rate_limit::RateLimiter;

pub const FAILURES_PER_ACCOUNT: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Clone)]
pub struct AuthLimits {
    sign_ups: RateLimiter<IpAddr>,
    sign_ins: RateLimiter<IpAddr>,
    failures: RateLimiter<[u8; 16]>,
}

impl AuthLimits {
    pub fn new(sign_ups_per_ip_per_minute: u32, sign_ins_per_ip_per_minute: u32) -> Self {
        Self {
            sign_ups: RateLimiter::per_minute(sign_ups_per_ip_per_minute),
            sign_ins: RateLimiter::per_minute(sign_ins_per_ip_per_minute),
            failures: RateLimiter::new(FAILURES_PER_ACCOUNT, FAILURE_WINDOW),
        }
    }

    /// Counts a sign-up from `ip`, or refuses it.
    pub fn sign_up(&self, ip: IpAddr) -> ApiResult<()> {
        self.sign_ups.check(client_key(ip)).map_err(|wait| limited("too many sign-ups from this address", wait))
    }

    /// Counts a sign-in from `ip`, or refuses it.
    pub fn sign_in(&self, ip: IpAddr) -> ApiResult<()> {
        self.sign_ins.check(client_key(ip)).map_err(|wait| limited("too many sign-ins from this address", wait))
    }

    /// Refuses a sign-in to an account that has had too many wrong passwords.
    pub fn account_open(&self, email: &str) -> ApiResult<()> {
        self.failures
            .peek(&account_key(email))
            .map_err(|wait| limited("too many wrong passwords for this account; wait before trying again", wait))
    }

    /// Counts a wrong password (or unknown email) for `email`.
    pub fn sign_in_failed(&self, email: &str) {
        // Refused or not, the attempt already happened; `account_open` does the refusing.
        let _ = self.failures.check(account_key(email));
    }
}

fn limited(detail: &str, wait: Duration) -> Problem {
    Problem::new(ErrorCode::RateLimited, detail).retry_after(wait.as_secs_f64().ceil() as u64)
}

/// One key per client: an IPv4 address (IPv4-mapped IPv6 included), or an IPv6
/// /64 — one host usually holds a whole /64, so single IPv6 addresses are free.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// Accounts are keyed by a digest of the email as sign-in matches it
/// (case-insensitively): a fixed 16 bytes per key whatever was sent.
fn account_key(email: &str) -> [u8; 16] {
    let digest = Sha256::digest(email.to_lowercase().as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn ipv6_clients_are_keyed_by_their_slash_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap_or_else(|e| panic!("{e}"));
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap_or_else(|e| panic!("{e}"));
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap_or_else(|e| panic!("{e}")));
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_passwords_close_one_account_and_not_another() {
        let limits = AuthLimits::new(10, 30);
        for _ in 0..FAILURES_PER_ACCOUNT {
            assert!(limits.account_open("Ann@Example.com").is_ok());
            limits.sign_in_failed("Ann@Example.com");
        }
        let refused = limits.account_open("ann@example.com").err().map(|e| (e.status_code(), e.retry_after));
        assert_eq!(refused, Some((StatusCode::TOO_MANY_REQUESTS, Some(180))));
        assert!(limits.account_open("bob@example.com").is_ok());
        tokio::time::advance(Duration::from_secs(180)).await;
        assert!(limits.account_open("ann@example.com").is_ok(), "a slot frees after a fifth of the window");
    }
}
