//! Flags and environment variables (every flag has one).

use std::time::Duration;

use service_kit::args::{ServiceArgs, parse_duration};
use service_kit::mqtt::MqttArgs;

/// The command line: these settings, or a subcommand.
pub type Cli = service_kit::process::Cli<Config>;

/// The service's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// What both services take: bus, address, token, log format, listen address.
    #[command(flatten)]
    pub service: ServiceArgs,
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

impl service_kit::process::Settings for Config {
    fn describe(command: clap::Command) -> clap::Command {
        command
            .name("led-service")
            .version(env!("CARGO_PKG_VERSION"))
            .about("HTTP API for the SparkFun Qwiic Button's LED")
            .mut_arg("listen", |arg| arg.default_value("0.0.0.0:8080"))
    }

    fn health_listen(&self) -> std::net::SocketAddr {
        self.service.listen
    }

    fn log_format(&self) -> service_kit::logging::LogFormat {
        self.service.log_format
    }
}
