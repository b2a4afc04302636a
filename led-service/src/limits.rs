//! Every bound the API sets on its peers, in one place: the README's API section quotes them
//! (a test keeps them equal).

use std::time::Duration;

/// Largest request body: a full `PUT /led` is under 100 bytes.
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// Deadline of a request that sends a body (`PUT /led`), from its head to its answer: a body
/// that stalls is answered 408. (The other device routes wait only for the device, which has its
/// own deadline, `--bus-timeout`.)
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Live event streams at once (each holds a connection and a little memory).
pub const MAX_EVENT_STREAMS: usize = 64;
/// How long switching the LED off at shutdown may take.
pub const SWITCH_OFF_DEADLINE: Duration = Duration::from_millis(300);

/// How much the service gives its peers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Connections: how many, and how long a peer may hold one (every service's).
    pub http: service_kit::http::Limits,
    /// Requests on the routes that use the device at once; more are answered 503 at once
    /// (shed, never queued).
    pub requests: usize,
    /// LED writes: a burst, then a steady rate (the button's EEPROM wears with each).
    pub wear: WearBudget,
}

/// How many LED writes the EEPROM may take: [`WearBudget::burst`] at once, then
/// [`WearBudget::per_second`] on average; a change beyond it is answered 429.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WearBudget {
    /// Writes at once.
    pub burst: u32,
    /// Writes a second, on average, once the burst is spent.
    pub per_second: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            http: service_kit::http::Limits::default(),
            requests: 512,
            // Under a sustained flood the brightness byte's ~100,000 write cycles last
            // 100,000 s (about 28 hours) instead of the 10,000 s coalescing alone allows.
            wear: WearBudget {
                burst: 60,
                per_second: 1.0,
            },
        }
    }
}
