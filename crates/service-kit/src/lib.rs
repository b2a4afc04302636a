//! What the three services share at their edges, one concern per module:
//!
//! - [`process`]: the body of every `main`: the `healthcheck` and `print-config` subcommands,
//!   logging, a check that threads can start, one log line for a panic;
//! - [`logging`]: text or JSON log lines;
//! - [`shutdown`]: SIGTERM and SIGINT cancel one [`CancellationToken`], the root of each
//!   service's shutdown tree;
//! - [`http`]: serving HTTP with deadlines and caps a LAN peer cannot stretch;
//! - [`probe`]: the HTTP probe of the `healthcheck` subcommand (the images have no curl);
//! - [`args`]: the flags every service takes, as one flattened struct, and their parsers;
//! - [`mqtt`]: the link to an MQTT broker, off unless configured;
//! - `testing` (feature `testing`): running a service, in-process or as a binary, in tests;
//! - `browser` (feature `browser`): a headless chromium for the pages' tests.
//!
//! It also sets the services' allocator (mimalloc).
#![deny(unsafe_code, missing_docs)]

pub mod args;
#[cfg(feature = "browser")]
pub mod browser;
pub mod http;
pub mod logging;
pub mod mqtt;
pub mod probe;
pub mod process;
pub mod shutdown;
#[cfg(feature = "testing")]
pub mod testing;

pub use tokio_util::sync::CancellationToken;

/// The allocator of every service: mimalloc. The images link musl (see scripts/lib/cross.sh),
/// whose own allocator halves led-service's request rate; mimalloc is as fast as glibc's or
/// faster, in the same memory (README "Benchmarks").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
