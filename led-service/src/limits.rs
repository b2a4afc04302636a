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

/// How much the service gives its peers at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections: how many, and how long a peer may hold one (every service's).
    pub http: service_kit::http::Limits,
    /// Requests on the routes that use the device at once; more are answered 503 at once
    /// (shed, never queued).
    pub requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            http: service_kit::http::Limits::default(),
            requests: 512,
        }
    }
}
