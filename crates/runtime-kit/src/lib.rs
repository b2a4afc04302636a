//! How every part of the project rides out faults, written once:
//!
//! - [`Burst`]: a fault that comes in bursts (a device that stops answering, a peer that keeps
//!   sending garbage) is logged once when the burst starts and once when it ends, however long
//!   it lasts: a log that says what happened, not a flood that hides it;
//! - [`Backoff`]: the pause before the next try, growing to a cap, with jitter so that many
//!   devices do not retry in step; its [`Policy`] is the caller's;
//! - [`sleep_until`] and [`tick`]: waiting for a deadline or an interval that may not be set,
//!   as one branch of a `select!`;
//! - [`Acceptor`]: accepting connections through a failing `accept` (out of file descriptors),
//!   with backoff, logged once per burst;
//! - [`Admission`]: connection slots shared fairly between peers, with a reserve for this
//!   machine;
//! - [`TokenBucket`]: a burst, then a steady rate (EEPROM writes, replays).
//!
//! No dependency on the device or on HTTP: the device crates and the services use it alike.
#![deny(unsafe_code, missing_docs)]

mod accept;
mod admission;
mod backoff;
mod bucket;
mod burst;
mod wait;

pub use accept::Acceptor;
pub use admission::{Admission, Refusal, Slots, Ticket, is_local};
pub use backoff::{Backoff, Policy};
pub use bucket::TokenBucket;
pub use burst::{Burst, Ended};
pub use wait::{sleep_until, tick};
