//! A circuit breaker for calls to a provider: after enough consecutive
//! transport failures it refuses calls for a cooldown, then lets one probe
//! through. One per process: each process judges the provider by its own calls.
//! It lives in `domain` so that any caller of a provider (Stripe's client in
//! `workflows`, the notifier's channels) can use it without depending on
//! another's.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The breaker is open: calls are refused for `retry_after`.
#[derive(Debug, Clone, Copy)]
pub struct Unavailable {
    pub retry_after: Duration,
}

/// Counts consecutive transport failures; at the threshold it opens for the
/// cooldown, then lets one call through as a probe (its failure re-opens it,
/// its success closes it).
pub struct Breaker {
    /// The provider, as metrics and logs name it (`stripe`).
    provider: &'static str,
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

#[derive(Debug, Clone, Copy)]
enum BreakerState {
    Closed { failures: u32 },
    Open { until: Instant },
}

impl Breaker {
    pub fn new(provider: &'static str, threshold: u32, cooldown: Duration) -> Self {
        Self { provider, threshold, cooldown, state: Mutex::new(BreakerState::Closed { failures: 0 }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn check(&self) -> Result<(), Unavailable> {
        match *self.lock() {
            BreakerState::Open { until } if Instant::now() < until => {
                Err(Unavailable { retry_after: until - Instant::now() })
            }
            _ => Ok(()),
        }
    }

    pub fn admit(&self) -> Result<(), Unavailable> {
        let mut state = self.lock();
        match *state {
            BreakerState::Closed { .. } => Ok(()),
            BreakerState::Open { until } => {
                let now = Instant::now();
                if now < until {
                    return Err(Unavailable { retry_after: until - now });
                }
                // Half-open: this caller probes; the others wait another cooldown.
                *state = BreakerState::Open { until: now + self.cooldown };
                metrics::counter!("gavel_breaker_probes_total", "provider" => self.provider).increment(1);
                Ok(())
            }
        }
    }

    pub fn record(&self, healthy: bool) {
        let mut state = self.lock();
        *state = match (*state, healthy) {
            (_, true) => BreakerState::Closed { failures: 0 },
            (BreakerState::Closed { failures }, false) if failures + 1 < self.threshold => {
                BreakerState::Closed { failures: failures + 1 }
            }
            (BreakerState::Closed { .. }, false) => {
                let cooldown_ms = self.cooldown.as_millis() as u64;
                tracing::warn!(provider = self.provider, cooldown_ms, "circuit breaker opened");
                metrics::counter!("gavel_breaker_opened_total", "provider" => self.provider).increment(1);
                BreakerState::Open { until: Instant::now() + self.cooldown }
            }
            (open @ BreakerState::Open { .. }, false) => open,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_lets_one_probe_through_after_the_cooldown() {
        let breaker = Breaker::new("test", 3, Duration::from_millis(50));
        breaker.record(false);
        breaker.record(false);
        assert!(breaker.admit().is_ok(), "two failures keep it closed");
        breaker.record(false);
        assert!(breaker.admit().is_err(), "the third opens it");
        assert!(breaker.check().is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.check().is_ok(), "a check takes no probe");
        assert!(breaker.admit().is_ok(), "one probe after the cooldown");
        assert!(breaker.admit().is_err(), "only one");
        breaker.record(true);
        assert!(breaker.admit().is_ok(), "a healthy probe closes it");
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let breaker = Breaker::new("test", 2, Duration::from_secs(60));
        breaker.record(false);
        breaker.record(true);
        breaker.record(false);
        assert!(breaker.admit().is_ok());
    }
}
