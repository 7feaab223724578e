//! Per-key rate limiting (GCRA: a token bucket kept as one timestamp per key).
//!
//! Limits are per process: with N API processes a buyer may reach N times the
//! limit. That bounds abuse cheaply without a shared round trip on the hot path.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gavel_domain::ids::BuyerId;
use tokio::time::Instant;

const SHARDS: usize = 16;

#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    /// Time between two requests at the sustained rate.
    interval: Duration,
    /// How far ahead of now a key's theoretical arrival time may run (the burst).
    tolerance: Duration,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<BuyerId, Instant>>>,
}

impl RateLimiter {
    /// `per_minute` requests a minute, all of them usable in a burst.
    pub fn per_minute(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        let interval = Duration::from_secs(60) / per_minute;
        Self {
            inner: Arc::new(Inner {
                interval,
                tolerance: interval * (per_minute - 1),
                hasher: RandomState::new(),
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            }),
        }
    }

    /// `Ok` if `key` may go ahead now; otherwise how long until it may.
    pub fn check(&self, key: BuyerId) -> Result<(), Duration> {
        let inner = &self.inner;
        let shard = (inner.hasher.hash_one(key) as usize) % SHARDS;
        let mut map = match inner.shards[shard].lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        let tat = map.get(&key).copied().unwrap_or(now).max(now);
        let allowed_from = tat.checked_sub(inner.tolerance).unwrap_or(now);
        if now < allowed_from {
            return Err(allowed_from - now);
        }
        map.insert(key, tat + inner.interval);
        if map.len() > 100_000 {
            map.retain(|_, t| *t > now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn allows_the_burst_then_refuses_until_a_slot_frees() {
        let limiter = RateLimiter::per_minute(10);
        let buyer = BuyerId::new();
        for _ in 0..10 {
            assert!(limiter.check(buyer).is_ok());
        }
        let wait = limiter.check(buyer).err().unwrap_or_default();
        assert!(wait > Duration::from_secs(5) && wait <= Duration::from_secs(6), "{wait:?}");
        assert!(limiter.check(BuyerId::new()).is_ok(), "another buyer is not limited");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(limiter.check(buyer).is_ok());
    }
}
