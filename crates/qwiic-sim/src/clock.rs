//! Where the simulator's time comes from: the real monotonic clock, or one that tests move by hand.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic clock in microseconds. The simulated firmware's `millis()` is derived from it,
/// and its steps (an EEPROM byte takes 3.4 ms) are timed in it.
pub trait Clock: Debug + Send + Sync {
    /// Microseconds since an arbitrary fixed start; never goes backwards.
    fn now_us(&self) -> u64;

    /// Whole milliseconds since the same start.
    fn now_ms(&self) -> u64 {
        self.now_us() / 1000
    }
}

/// The host's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// A clock that reads 0 now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// A clock that only moves when told to, so tests control every age and timeout exactly.
/// Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now_us: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at 0 ms.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward.
    pub fn advance(&self, by: Duration) {
        let us = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.now_us.fetch_add(us, Ordering::SeqCst);
    }
}

/// Waiting on a manual clock moves it: a driver that sleeps (say after an address change) runs
/// against the simulator without real time passing.
impl embedded_hal::delay::DelayNs for ManualClock {
    fn delay_ns(&mut self, ns: u32) {
        self.now_us
            .fetch_add(u64::from(ns).div_ceil(1_000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> u64 {
        self.now_us.load(Ordering::SeqCst)
    }
}
