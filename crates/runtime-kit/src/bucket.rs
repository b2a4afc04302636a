//! A token bucket: at most [`TokenBucket::new`]'s `burst` at once, then `per_second` on
//! average. What it limits is the caller's: EEPROM writes, replays of retained messages.

use std::time::{Duration, Instant};

/// Tokens that refill at a steady rate up to a burst.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    burst: f64,
    per_second: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// Full: `burst` tokens, refilling at `per_second`.
    pub fn new(burst: u32, per_second: f64) -> Self {
        TokenBucket {
            burst: f64::from(burst),
            per_second: per_second.max(f64::MIN_POSITIVE),
            tokens: f64::from(burst),
            refilled: Instant::now(),
        }
    }

    /// The tokens there are at `now`.
    fn tokens_at(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        (self.tokens + elapsed * self.per_second).min(self.burst)
    }

    /// How much of the burst is spent at `now`: 0.0 (full) to 1.0 (a take would fail).
    pub fn spent(&self, now: Instant) -> f64 {
        let tokens = self.tokens_at(now);
        if tokens < 1.0 {
            return 1.0;
        }
        (1.0 - tokens / self.burst).clamp(0.0, 1.0)
    }

    /// Takes one token at `now`, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.tokens = self.tokens_at(now);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / self.per_second,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_at_once_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(3, 2.0);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        let wait = bucket.take(start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(bucket.take(start + Duration::from_millis(499)).is_err());
        assert_eq!(bucket.take(start + Duration::from_millis(500)), Ok(()));
        // Ten seconds of rest refill the burst, not more.
        let later = start + Duration::from_secs(10);
        assert_eq!(bucket.spent(later), 0.0, "full again");
        let taken = (0..10).filter(|_| bucket.take(later).is_ok()).count();
        assert_eq!(taken, 3);
        assert_eq!(bucket.spent(later), 1.0, "empty");
        assert_eq!(
            bucket.spent(later + Duration::from_millis(250)),
            1.0,
            "half a token: a take would fail"
        );
        assert!((bucket.spent(later + Duration::from_millis(750)) - 0.5).abs() < 1e-9);
    }
}
