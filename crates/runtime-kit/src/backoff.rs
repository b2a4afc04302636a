//! The pause before the next try after a failure: from [`Policy::first`], doubling after each
//! failure up to [`Policy::cap`], each pause spread by ±[`Policy::jitter`] so that many devices
//! that failed together do not retry together.

use std::time::Duration;

/// How a [`Backoff`] grows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// The first pause.
    pub first: Duration,
    /// The longest pause.
    pub cap: Duration,
    /// Each pause is multiplied by a random factor in `1 ± jitter` (0: exact pauses).
    pub jitter: f64,
}

/// Pauses that double from a policy's first to its cap.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: Policy,
    next: Duration,
}

impl Backoff {
    /// Starts at `policy.first`.
    pub fn new(policy: Policy) -> Self {
        Backoff {
            policy,
            next: policy.first,
        }
    }

    /// The pause after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.policy.cap);
        let jitter = self.policy.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 {
            return base;
        }
        base.mul_f64(1.0 - jitter + 2.0 * jitter * fastrand::f64())
    }

    /// After a success: the next failure pauses `policy.first` again.
    pub fn reset(&mut self) {
        self.next = self.policy.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXACT: Policy = Policy {
        first: Duration::from_millis(10),
        cap: Duration::from_secs(1),
        jitter: 0.0,
    };

    #[test]
    fn pauses_double_to_the_cap_and_start_over_after_a_reset() {
        let mut backoff = Backoff::new(EXACT);
        let pauses: Vec<u128> = (0..10).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(10));
    }

    #[test]
    fn jitter_spreads_each_pause_within_its_share() {
        let mut backoff = Backoff::new(Policy {
            jitter: 0.2,
            ..EXACT
        });
        let mut seen = Vec::new();
        for _ in 0..200 {
            backoff.reset();
            let pause = backoff.next_delay();
            assert!(
                (Duration::from_millis(8)..=Duration::from_millis(12)).contains(&pause),
                "{pause:?}"
            );
            seen.push(pause);
        }
        seen.dedup();
        assert!(seen.len() > 100, "the pauses differ: {}", seen.len());
    }
}
