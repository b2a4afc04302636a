//! MQTT, off unless configured: one connection per service to a broker on the LAN.
//!
//! - [`settings`]: the flags ([`MqttArgs`]) and what they resolve into ([`MqttSettings`]);
//! - [`link`]: the connection, kept up through broker outages, its health and counters
//!   ([`Mqtt`]);
//! - [`discovery`]: the device announced to Home Assistant ([`Announcer`]).

pub mod discovery;
pub mod link;
pub mod settings;

pub use discovery::{Announcer, Component, DIAGNOSTICS_EVERY, Diagnostic, Legacy};
pub use link::{Incoming, Mqtt, MqttCounters, MqttHealth};
pub use settings::{Broker, MqttArgs, MqttSettings};
