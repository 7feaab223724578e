//! Per-key rate limiting (GCRA: a token bucket kept as one timestamp per key),
//! for any key: a buyer's claims, a client address's sign-ups, an account's
//! failed sign-ins.
//!
//! Limits are per process: with N API processes a key may reach N times the
//! limit. That bounds abuse cheaply without a shared round trip on the hot path.
//!
//! Memory is bounded: a key whose bucket is full again is forgotten (it is
//! indistinguishable from a new one), and when more than `MAX_KEYS` are still
//! limited, the tenth nearest to being free is dropped — someone sending from
//! that many keys at once is not held back by any one of them anyway.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

const SHARDS: usize = 16;
/// Most keys one limiter remembers (~50 bytes each).
const MAX_KEYS: usize = 1 << 17;
const SHARD_CAP: usize = MAX_KEYS / SHARDS;

pub struct RateLimiter<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for RateLimiter<K> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

struct Inner<K> {
    /// Time between two requests at the sustained rate.
    interval: Duration,
    /// How far ahead of now a key's theoretical arrival time may run (the burst).
    tolerance: Duration,
    hasher: RandomState,
    /// Each key's theoretical arrival time.
    shards: Vec<Mutex<HashMap<K, Instant>>>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// `per_minute` requests a minute, all of them usable in a burst.
    pub fn per_minute(per_minute: u32) -> Self {
        Self::new(per_minute, Duration::from_secs(60))
    }

    /// `count` requests per `period`, all of them usable in a burst; one comes
    /// back every `period / count`.
    pub fn new(count: u32, period: Duration) -> Self {
        let count = count.max(1);
        let interval = period / count;
        Self {
            inner: Arc::new(Inner {
                interval,
                tolerance: interval * (count - 1),
                hasher: RandomState::new(),
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            }),
        }
    }

    /// `Ok` (and counted) if `key` may go ahead now; otherwise how long until it may.
    pub fn check(&self, key: K) -> Result<(), Duration> {
        let mut map = self.shard(&key);
        let now = Instant::now();
        let tat = self.inner.admit(map.get(&key).copied(), now)?;
        map.insert(key, tat + self.inner.interval);
        if map.len() > SHARD_CAP {
            prune(&mut map, now);
        }
        Ok(())
    }

    /// Whether `key` could go ahead now, without counting anything.
    pub fn peek(&self, key: &K) -> Result<(), Duration> {
        let map = self.shard(key);
        self.inner.admit(map.get(key).copied(), Instant::now()).map(|_| ())
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, Instant>> {
        let shard = (self.inner.hasher.hash_one(key) as usize) % SHARDS;
        self.inner.shards[shard].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<K> Inner<K> {
    /// The key's theoretical arrival time if one more request conforms now.
    fn admit(&self, tat: Option<Instant>, now: Instant) -> Result<Instant, Duration> {
        let tat = tat.unwrap_or(now).max(now);
        let allowed_from = tat.checked_sub(self.tolerance).unwrap_or(now);
        if now < allowed_from { Err(allowed_from - now) } else { Ok(tat) }
    }
}

/// Forgets keys that are free again; if the shard is still full, also the
/// tenth of its keys nearest to being free (amortised: it runs once per tenth
/// of a shard's worth of new keys).
fn prune<K>(map: &mut HashMap<K, Instant>, now: Instant) {
    map.retain(|_, tat| *tat > now);
    if map.len() <= SHARD_CAP * 9 / 10 {
        return;
    }
    let excess = map.len() - SHARD_CAP * 9 / 10;
    let mut tats: Vec<Instant> = map.values().copied().collect();
    let (_, cut, _) = tats.select_nth_unstable(excess - 1);
    let cut = *cut;
    // Exactly `excess` go: all before the cut, and as many at it as needed.
    let mut ties = excess - map.values().filter(|tat| **tat < cut).count();
    map.retain(|_, tat| {
        if *tat == cut && ties > 0 {
            ties -= 1;
            return false;
        }
        *tat >= cut
    });
}

#[cfg(test)]
mod tests {
    use gavel_domain::ids::BuyerId;

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

    #[tokio::test(start_paused = true)]
    async fn peek_tells_without_counting() {
        let limiter = RateLimiter::new(2, Duration::from_secs(600));
        let key = "ann@example.com".to_owned();
        for _ in 0..5 {
            assert!(limiter.peek(&key).is_ok());
        }
        assert!(limiter.check(key.clone()).is_ok() && limiter.check(key.clone()).is_ok());
        let wait = limiter.peek(&key).err().unwrap_or_default();
        assert_eq!(wait, Duration::from_secs(300));
    }

    #[tokio::test(start_paused = true)]
    async fn memory_stays_bounded_under_a_flood_of_keys() {
        let limiter = RateLimiter::new(1, Duration::from_secs(3600));
        for key in 0..(MAX_KEYS as u64 * 3) {
            assert!(limiter.check(key).is_ok());
        }
        let remembered: usize = limiter.inner.shards.iter().map(|s| s.lock().map_or(0, |m| m.len())).sum();
        assert!((MAX_KEYS / 2..=MAX_KEYS).contains(&remembered), "{remembered}");
        assert!(limiter.check(u64::MAX).is_ok());
        assert!(limiter.check(u64::MAX).is_err(), "a key is still limited after the flood");
    }
}
