//! Flags and environment variables (every flag has one).

use std::net::SocketAddr;
use std::time::Duration;

use qwiic_bus::BusSpec;
use qwiic_button::Address;
use service_kit::{LogFormat, parse_address, parse_duration};

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(version, about = "HTTP API for the SparkFun Qwiic Button's LED")]
pub struct Cli {
    /// What to do; without a subcommand the service runs.
    #[command(subcommand)]
    pub command: Option<service_kit::Command>,
    /// The service's settings.
    #[command(flatten)]
    pub config: Config,
}

/// The service's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// The I2C bus: a Linux i2c-dev path, `sim` (in-process simulator), or tcp://HOST:PORT
    /// (the simulator server).
    #[arg(long, env = "BUS", default_value = "/dev/i2c-1")]
    pub bus: BusSpec,
    /// The button's I2C address, 0x08-0x77.
    #[arg(long, env = "I2C_ADDRESS", default_value = "0x6F", value_parser = parse_address)]
    pub address: Address,
    /// Brightness of `POST /true`, 1-255.
    #[arg(long, env = "LED_BRIGHTNESS", default_value_t = 255, value_parser = clap::value_parser!(u8).range(1..))]
    pub brightness: u8,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// When set (and not empty), POST and PUT need `Authorization: Bearer <token>`.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Longest wait for the button on one request before answering 504.
    #[arg(long, env = "BUS_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub bus_timeout: Duration,
}
