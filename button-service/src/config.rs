//! Flags and environment variables (every flag has one).

use std::net::SocketAddr;
use std::time::Duration;

use qwiic_bus::BusSpec;
use qwiic_button::Address;
use service_kit::{LogFormat, parse_address, parse_duration};

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(
    version,
    about = "Reads the SparkFun Qwiic Button and tells the LED service"
)]
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
    /// The I2C bus: a Linux i2c-dev path, `sim` (in-process simulator), or tcp://HOST:PORT
    /// (the simulator server).
    #[arg(long, env = "BUS", default_value = "/dev/i2c-1")]
    pub bus: BusSpec,
    /// The button's I2C address, 0x08-0x77.
    #[arg(long, env = "I2C_ADDRESS", default_value = "0x6F", value_parser = parse_address)]
    pub address: Address,
    /// Base URL of the LED service; the state is POSTed to {LED_URL}/true and /false.
    #[arg(long, env = "LED_URL", default_value = "http://led:8080")]
    pub led_url: reqwest::Url,
    /// How often the button is read (`1s` gives the original's timing).
    #[arg(long, env = "POLL_INTERVAL", default_value = "20ms", value_parser = parse_poll_interval)]
    pub poll_interval: Duration,
    /// How often the current state is sent again even if it did not change (heals a restarted
    /// LED service or a lost request).
    #[arg(long, env = "RESEND_INTERVAL", default_value = "1s", value_parser = parse_nonzero_duration)]
    pub resend_interval: Duration,
    /// Deadline of one request to the LED service.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "500ms", value_parser = parse_nonzero_duration)]
    pub request_timeout: Duration,
    /// Bearer token for the LED service, if it has one.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Where the internal /healthz and /metrics listen (not published by compose).
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:9090")]
    pub listen: SocketAddr,
}

fn parse_nonzero_duration(input: &str) -> Result<Duration, String> {
    let duration = parse_duration(input)?;
    if duration.is_zero() {
        return Err(format!("{input:?} must be longer than 0"));
    }
    Ok(duration)
}

/// At least 1 ms: faster polling only loads the bus (the firmware debounces 10 ms anyway).
fn parse_poll_interval(input: &str) -> Result<Duration, String> {
    let duration = parse_duration(input)?;
    if duration < Duration::from_millis(1) {
        return Err(format!("{input:?} is too short: poll at most every 1ms"));
    }
    Ok(duration)
}
