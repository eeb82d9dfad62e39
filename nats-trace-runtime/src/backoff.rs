//! Exponential backoff with jitter, shared by connecting and publishing.

use std::time::Duration;

use rand::Rng;

/// Delays that double from `initial` up to `max`, each with up to ±25%
/// jitter so restarted fleets don't retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound of the delay (before jitter).
    pub max: Duration,
}

impl Backoff {
    /// Backoff from `initial`, doubling up to `max`.
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max }
    }

    /// The delay after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doubled = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let base = doubled.min(self.max);
        base.mul_f64(rand::rng().random_range(0.75..=1.25))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for _ in 0..100 {
            let first = backoff.delay(1);
            assert!(first >= Duration::from_millis(75) && first <= Duration::from_millis(125));
            let fourth = backoff.delay(4);
            assert!(fourth >= Duration::from_millis(600) && fourth <= Duration::from_millis(1000));
            assert!(backoff.delay(40) <= Duration::from_millis(6250));
        }
    }
}
