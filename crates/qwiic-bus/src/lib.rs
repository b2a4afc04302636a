//! The Qwiic Button's bus as the services use it:
//!
//! - [`BusSpec`]: the bus string given by flag or env var: `/dev/i2c-1` (any absolute path; a
//!   Linux i2c-dev node whose `write_read` is one `I2C_RDWR` ioctl, so atomic across
//!   processes), `sim` (an in-process [`qwiic_sim::SimButton`]) or `tcp://host:port` (the
//!   simulator server, shared by several containers); [`BusSpec::open`] opens it, with errors
//!   that say what to check;
//! - [`Bus`]: any of the three, with one error type whose kinds mean the same on each (the
//!   Linux errno mapping is in [`linux`]);
//! - [`layers`]: counting and retrying transactions;
//! - [`DeviceLink`]: one button owned by a service: identified, retried, outages logged once,
//!   health published;
//! - [`wire`], [`tcp`], [`server`]: the `tcp://` protocol, its client and its server;
//! - [`int`]: the button's INT line, when it is wired: a GPIO of the board ([`gpio`]) or the
//!   simulator's;
//! - `args` (feature `clap`): the flags that say where the button is.
#![deny(unsafe_code, missing_docs)]

#[cfg(feature = "clap")]
pub mod args;
mod bus;
#[cfg(target_os = "linux")]
pub mod gpio;
pub mod int;
pub mod layers;
mod link;
#[cfg(target_os = "linux")]
pub mod linux;
mod open;
pub mod server;
mod spec;
pub mod tcp;
pub mod wire;

pub use bus::{Bus, BusError};
pub use int::{GpioChip, IntError, IntLine, IntSpec};
pub use layers::{BusCounters, CountingBus, RetryingBus, ServiceBus, service_bus};
pub use link::{
    Cause, ConnectError, DeviceError, DeviceLink, FRESH, HealthView, Identified, LinkHealth,
    LinkedButton, PROBE_INTERVAL, connect,
};
pub use open::OpenError;
pub use spec::{ACCEPTED, BusSpec, BusSpecError};
pub use tcp::{TcpBus, TcpBusError, TcpTimeouts};
