//! The flags and environment variables ([`Config`], every flag has a variable), checked when
//! parsed, and what they resolve into once the secret files are read: the [`Settings`] the
//! service runs with.

use std::net::SocketAddr;
use std::time::Duration;

use qwiic_bus::args::DeviceArgs;

use crate::limits::Limits;
use service_kit::ResolveError;
use service_kit::args::{ServiceArgs, ServiceSettings, parse_duration};
use service_kit::guard::{AllowedHosts, HostArgs};
use service_kit::logging::LogFormat;
use service_kit::mqtt::{MqttArgs, MqttSettings};

/// The command line: these flags, or a subcommand.
pub type Cli = service_kit::process::Cli<Config>;

/// The service's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Where the button is: bus and address.
    #[command(flatten)]
    pub device: DeviceArgs,
    /// What both services take: token, log format, listen address.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The host names the API answers to.
    #[command(flatten)]
    pub hosts: HostArgs,
    /// Brightness of `POST /true`, 1-255.
    #[arg(long, env = "LED_BRIGHTNESS", default_value_t = 255, value_parser = clap::value_parser!(u8).range(1..))]
    pub brightness: u8,
    /// Longest wait for the button on one request before answering 504.
    #[arg(long, env = "BUS_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub bus_timeout: Duration,
    /// MQTT: the broker, credentials, topic prefix, Home Assistant discovery.
    #[command(flatten)]
    pub mqtt: MqttArgs,
}

impl service_kit::process::CommandLine for Config {
    const NAME: &'static str = "led-service";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "HTTP API for the SparkFun Qwiic Button's LED";
    const LISTEN: Option<&'static str> = Some("0.0.0.0:8080");

    fn health_listen(&self) -> SocketAddr {
        self.service.listen
    }

    fn log_format(&self) -> LogFormat {
        self.service.log_format
    }
}

/// What the service runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the button is.
    pub device: DeviceArgs,
    /// Where the API listens; when the token is set, mutating routes need
    /// `Authorization: Bearer <token>`.
    pub service: ServiceSettings,
    /// The names the API answers to (besides any address).
    pub allowed_hosts: AllowedHosts,
    /// Brightness of `POST /true`.
    pub brightness: u8,
    /// Longest wait for the button on one request.
    pub bus_timeout: Duration,
    /// The MQTT link, when a broker is set.
    pub mqtt: Option<MqttSettings>,
    /// How much the service gives its peers (not flags: tests make them small).
    pub limits: Limits,
}

impl Config {
    /// Reads the secret files and resolves the MQTT settings: what the service runs with.
    pub fn resolve(&self) -> Result<Settings, ResolveError> {
        Ok(Settings {
            device: self.device.clone(),
            service: self.service.resolve()?,
            allowed_hosts: AllowedHosts::new(&self.hosts.allowed_hosts),
            brightness: self.brightness,
            bus_timeout: self.bus_timeout,
            mqtt: self.mqtt.resolve()?,
            limits: Limits::default(),
        })
    }
}
