//! What the three services share at their edges, one concern per module, and nothing of the
//! device (the bus and the button are the qwiic crates'):
//!
//! - [`process`]: the body of every `main`: the `healthcheck` and `print-config` subcommands,
//!   logging, a check that threads can start, one log line for a panic;
//! - [`logging`]: text or JSON log lines;
//! - [`shutdown`]: SIGTERM and SIGINT cancel one [`CancellationToken`], the root of each
//!   service's shutdown tree;
//! - [`args`]: the flags the services share, their parsers, and [`ResolveError`] for what
//!   resolving them into settings can fail on;
//! - [`secret`]: tokens and passwords, read from values or files, never printed;
//! - [`http`]: serving HTTP with deadlines and caps a LAN peer cannot stretch;
//! - [`guard`]: what keeps web pages away: allowed host names, cross-site requests, framing;
//! - [`probe`]: the HTTP probe of the `healthcheck` subcommand (the images have no curl);
//! - [`metrics`]: one pattern for every service's Prometheus metrics and `/metrics`;
//! - [`sse`]: server-sent events of JSON values for the pages;
//! - [`mqtt`]: the link to an MQTT broker, off unless configured, and Home Assistant discovery.
//!
//! Each binary chooses its allocator in its own `main.rs`.
#![deny(unsafe_code, missing_docs)]

pub mod args;
pub mod guard;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod probe;
pub mod process;
pub mod secret;
pub mod shutdown;
pub mod sse;

pub use args::ResolveError;
pub use secret::Secret;
pub use tokio_util::sync::CancellationToken;
