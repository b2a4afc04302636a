//! Flags and environment variables (every flag has one).

use std::net::SocketAddr;

use qwiic_bus::args::parse_address;
use qwiic_button::Address;
use service_kit::guard::HostArgs;
use service_kit::logging::LogFormat;

/// The command line: these settings, or a subcommand.
pub type Cli = service_kit::process::Cli<Config>;

/// The simulator's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Where the simulated I2C bus listens (services use BUS=tcp://HOST:PORT).
    #[arg(long, env = "TCP_LISTEN", default_value = "0.0.0.0:7070")]
    pub tcp_listen: SocketAddr,
    /// Where the page and the control API listen.
    #[arg(long, env = "HTTP_LISTEN", default_value = "0.0.0.0:8081")]
    pub http_listen: SocketAddr,
    /// The simulated button's I2C address, 0x08-0x77.
    #[arg(long, env = "I2C_ADDRESS", default_value = "0x6F", value_parser = parse_address)]
    pub address: Address,
    /// Firmware version to report, MAJOR.MINOR (1.2 reproduces the unreliable queue pop).
    #[arg(long, env = "FIRMWARE", default_value = "1.3", value_parser = parse_firmware)]
    pub firmware: (u8, u8),
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// The host names the page and the control API answer to.
    #[command(flatten)]
    pub hosts: HostArgs,
}

impl service_kit::process::CommandLine for Config {
    const NAME: &'static str = "simulator";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str =
        "A simulated SparkFun Qwiic Button shared over TCP, with a page to press it";

    fn health_listen(&self) -> SocketAddr {
        self.http_listen
    }

    fn log_format(&self) -> LogFormat {
        self.log_format
    }
}

fn parse_firmware(input: &str) -> Result<(u8, u8), String> {
    let invalid = || format!("{input:?} is not a firmware version: give MAJOR.MINOR, such as 1.3");
    let (major, minor) = input.trim().split_once('.').ok_or_else(invalid)?;
    Ok((
        major.parse().map_err(|_| invalid())?,
        minor.parse().map_err(|_| invalid())?,
    ))
}
