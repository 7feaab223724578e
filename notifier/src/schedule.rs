//! The retry schedule as data (`notifier.retry_schedule_seconds`): element
//! `i` is the delay before attempt `i + 1` (the first usually `0`), so the
//! budget is one attempt per element. Each delay gets up to ±10% jitter; a
//! provider's `Retry-After` lengthens the next delay, never shortens it.

use std::time::Duration;

use gavel_domain::backoff::jitter;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    delays: Vec<Duration>,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after this long.
    RetryIn(Duration),
    /// The budget is spent: dead-letter it.
    GiveUp,
}

impl RetrySchedule {
    /// The default: `[0, 5, 30, 120, 600, 1800]` seconds (six attempts over about 42 minutes).
    pub const DEFAULT_SECONDS: [u64; 6] = [0, 5, 30, 120, 600, 1800];

    /// An empty list still allows one attempt.
    pub fn from_seconds(seconds: &[u64]) -> Self {
        let mut delays: Vec<Duration> = seconds.iter().map(|s| Duration::from_secs(*s)).collect();
        if delays.is_empty() {
            delays.push(Duration::ZERO);
        }
        Self { delays }
    }

    pub fn from_delays(delays: Vec<Duration>) -> Self {
        if delays.is_empty() { Self::from_seconds(&[]) } else { Self { delays } }
    }

    /// How many attempts the schedule allows.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX)
    }

    /// The delay before the first attempt (jittered).
    pub fn first(&self) -> Duration {
        self.delays.first().copied().map(jitter).unwrap_or_default()
    }

    /// After `attempts_made` attempts (1 after the first), all failed:
    /// when to try again, or give up. `retry_after` is the provider's own
    /// ask, which the delay never undercuts.
    pub fn after(&self, attempts_made: u32, retry_after: Option<Duration>) -> Next {
        match self.delays.get(attempts_made as usize) {
            Some(delay) => {
                let delay = jitter(*delay);
                Next::RetryIn(retry_after.map_or(delay, |ra| delay.max(ra)))
            }
            None => Next::GiveUp,
        }
    }
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self::from_seconds(&Self::DEFAULT_SECONDS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_element_is_the_delay_before_one_attempt_and_then_it_gives_up() {
        let s = RetrySchedule::from_seconds(&[0, 10, 100]);
        assert_eq!(s.attempts(), 3);
        assert_eq!(s.first(), Duration::ZERO);
        let Next::RetryIn(second) = s.after(1, None) else { panic!("a second attempt") };
        assert!((Duration::from_secs(9)..=Duration::from_secs(11)).contains(&second), "{second:?}");
        let Next::RetryIn(third) = s.after(2, None) else { panic!("a third attempt") };
        assert!((Duration::from_secs(90)..=Duration::from_secs(110)).contains(&third), "{third:?}");
        assert_eq!(s.after(3, None), Next::GiveUp);
    }

    #[test]
    fn retry_after_lengthens_the_delay_but_never_shortens_it() {
        let s = RetrySchedule::from_seconds(&[0, 10]);
        assert_eq!(s.after(1, Some(Duration::from_secs(60))), Next::RetryIn(Duration::from_secs(60)));
        let Next::RetryIn(d) = s.after(1, Some(Duration::from_secs(1))) else { panic!("retry") };
        assert!(d >= Duration::from_secs(9), "{d:?}");
    }

    #[test]
    fn an_empty_schedule_still_allows_one_attempt() {
        let s = RetrySchedule::from_seconds(&[]);
        assert_eq!(s.attempts(), 1);
        assert_eq!(s.after(1, None), Next::GiveUp);
    }
}
