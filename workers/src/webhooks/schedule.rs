//! The webhook retry schedule (`webhooks.retry_schedule_seconds`): element
//! `i` is the delay before attempt `i + 1`, so the budget is one attempt per
//! element; up to ±10% jitter; a receiver's `Retry-After` lengthens the next
//! delay, never shortens it. The same rule as the notifier's schedule, with
//! the same jitter (`gavel_domain::backoff`).

use std::time::Duration;

use gavel_domain::backoff::jitter;

/// `[0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h]`: eight attempts over about 28 hours
/// of delays; with the 5-day disabling window an endpoint is given up on after days, not hours.
pub const DEFAULT_SECONDS: [f64; 8] = [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0];

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    delays: Vec<Duration>,
}

impl Schedule {
    /// An empty list still allows one attempt.
    pub fn new(delays: Vec<Duration>) -> Self {
        if delays.is_empty() { Self { delays: vec![Duration::ZERO] } } else { Self { delays } }
    }

    /// The delay before the first attempt (jittered).
    pub fn first(&self) -> Duration {
        self.delays.first().copied().map(jitter).unwrap_or_default()
    }

    /// After `failures` counted failures (1 after the first): the delay
    /// before the next attempt, or `None` when the budget is spent.
    pub fn after(&self, failures: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let delay = jitter(*self.delays.get(failures as usize)?);
        Some(retry_after.map_or(delay, |ra| delay.max(ra)))
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Self::new(DEFAULT_SECONDS.iter().map(|s| Duration::from_secs_f64(*s)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_attempt_per_element_then_give_up() {
        let s = Schedule::new(vec![Duration::ZERO, Duration::from_secs(10), Duration::from_secs(100)]);
        assert_eq!(s.first(), Duration::ZERO);
        let d1 = s.after(1, None).expect("a second attempt");
        assert!((9.0..=11.0).contains(&d1.as_secs_f64()), "{d1:?}");
        let d2 = s.after(2, None).expect("a third attempt");
        assert!((90.0..=110.0).contains(&d2.as_secs_f64()), "{d2:?}");
        assert_eq!(s.after(3, None), None);
    }

    #[test]
    fn retry_after_lengthens_never_shortens() {
        let s = Schedule::new(vec![Duration::ZERO, Duration::from_secs(10)]);
        assert_eq!(s.after(1, Some(Duration::from_secs(60))), Some(Duration::from_secs(60)));
        assert!(s.after(1, Some(Duration::from_secs(1))).is_some_and(|d| d >= Duration::from_secs(9)));
    }

    #[test]
    fn the_default_is_the_issues_schedule() {
        assert_eq!(Schedule::default().delays.len(), 8);
        assert_eq!(Schedule::default().delays[2], Duration::from_secs(300));
    }
}
