//! Delays between retries, shared by every retrying loop: the notifier's and
//! the webhooks' schedules (lists of delays) and durable jobs (doubling).

use std::time::Duration;

use rand::Rng;

/// Up to ±10% of `delay`, at random, so that what failed together does not
/// retry together.
pub fn jitter(delay: Duration) -> Duration {
    if delay.is_zero() {
        return delay;
    }
    delay.mul_f64(rand::rng().random_range(0.9..=1.1))
}

/// `first`, doubled after each further failure, never above `max`; before
/// jitter. `failures` counts from 1.
pub fn doubling(first: Duration, max: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    first.saturating_mul(1 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(100));
            assert!((Duration::from_secs(90)..=Duration::from_secs(110)).contains(&d), "{d:?}");
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn doubling_starts_at_first_and_stops_at_max() {
        let (first, max) = (Duration::from_secs(1), Duration::from_secs(300));
        let delays: Vec<u64> = (1..=12).map(|n| doubling(first, max, n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(doubling(first, max, 0), first);
        assert_eq!(doubling(first, max, u32::MAX), max);
    }
}
