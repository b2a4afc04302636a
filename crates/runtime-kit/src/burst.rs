//! A fault that comes in bursts, told once when the burst starts and once when it ends.
//!
//! The caller writes the two log lines (it knows what failed and what it does meanwhile);
//! [`Burst`] decides when: [`Burst::hit`] is true for the first failure of a burst, and
//! [`Burst::end`] returns how long it lasted and how many failures it counted, once.

use std::time::{Duration, Instant};

/// The state of one kind of fault: quiet, or in a burst since some time.
#[derive(Debug, Default, Clone)]
pub struct Burst {
    since: Option<Instant>,
    count: u64,
}

/// How a burst ended: what the caller's closing log line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// From the first failure to the end.
    pub lasted: Duration,
    /// Failures counted in it.
    pub count: u64,
}

impl Ended {
    /// [`Ended::lasted`] in whole milliseconds, as log fields give it.
    pub fn lasted_ms(&self) -> u64 {
        u64::try_from(self.lasted.as_millis()).unwrap_or(u64::MAX)
    }
}

impl Burst {
    /// Counts one failure. True when it starts a burst: log it.
    pub fn hit(&mut self) -> bool {
        self.count += 1;
        if self.since.is_some() {
            return false;
        }
        self.since = Some(Instant::now());
        true
    }

    /// Ends the burst, if one is going on: log what it returns.
    pub fn end(&mut self) -> Option<Ended> {
        let since = self.since.take()?;
        let count = std::mem::take(&mut self.count);
        Some(Ended {
            lasted: since.elapsed(),
            count,
        })
    }

    /// True while a burst is going on.
    pub fn is_on(&self) -> bool {
        self.since.is_some()
    }

    /// When the burst started, while one is going on.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Failures counted in the burst going on (0 when quiet).
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_failure_of_a_burst_and_its_end_are_told() {
        let mut burst = Burst::default();
        assert_eq!(burst.end(), None, "nothing to end while quiet");
        assert!(!burst.is_on());
        assert!(burst.hit(), "the first failure starts a burst");
        assert!(!burst.hit() && !burst.hit(), "the next ones are in it");
        assert!(burst.is_on());
        assert_eq!(burst.count(), 3);
        let ended = burst.end().map(|ended| ended.count);
        assert_eq!(ended, Some(3));
        assert_eq!(burst.end(), None, "told once");
        assert!(burst.hit(), "a new burst after the end");
        assert_eq!(burst.count(), 1);
    }

    #[test]
    fn a_burst_lasts_from_its_first_failure() {
        let mut burst = Burst::default();
        burst.hit();
        let started = burst.since();
        std::thread::sleep(Duration::from_millis(5)); // the clock must move for the figure
        burst.hit();
        assert_eq!(
            burst.since(),
            started,
            "a later failure does not restart it"
        );
        let ended = burst.end();
        assert!(ended.is_some_and(|ended| ended.lasted >= Duration::from_millis(5)));
        assert!(ended.is_some_and(|ended| ended.lasted_ms() >= 5));
    }
}
