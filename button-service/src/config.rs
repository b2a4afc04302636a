//! Flags and environment variables (every flag has one).

use std::time::Duration;

use service_kit::args::{ServiceArgs, parse_duration, parse_nonzero_duration};
use service_kit::mqtt::MqttArgs;

/// The command line: these settings, or a subcommand.
pub type Cli = service_kit::process::Cli<Config>;

/// The service's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// What both services take: bus, address, token, log format, listen address (internal
    /// /healthz and /metrics, not published by compose).
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Base URL of the LED service; each press is POSTed to {LED_URL}/true, each release to
    /// /false.
    #[arg(long, env = "LED_URL", default_value = "http://led:8080")]
    pub led_url: reqwest::Url,
    /// How often the button is read (`1s` gives the original's timing).
    #[arg(long, env = "POLL_INTERVAL", default_value = "20ms", value_parser = parse_poll_interval)]
    pub poll_interval: Duration,
    /// Also send the current state this often (`1s` is the original's behaviour; the LED then
    /// mirrors the button strictly and a change made by hand lasts until the next re-send).
    /// Unset: only presses and releases are sent.
    #[arg(long, env = "RESEND_INTERVAL", value_parser = parse_nonzero_duration)]
    pub resend_interval: Option<Duration>,
    /// Deadline of one request to the LED service.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "500ms", value_parser = parse_nonzero_duration)]
    pub request_timeout: Duration,
    /// Held at least this long: a `long` press (MQTT).
    #[arg(long, env = "LONG_PRESS", default_value = "600ms", value_parser = parse_nonzero_duration)]
    pub long_press: Duration,
    /// A second press within this time after a short one: a `double` press, not two `single`s
    /// (so a `single` is told this long after its release).
    #[arg(long, env = "DOUBLE_PRESS_WINDOW", default_value = "300ms", value_parser = parse_nonzero_duration)]
    pub double_press_window: Duration,
    /// MQTT: the broker, credentials, topic prefix, Home Assistant discovery.
    #[command(flatten)]
    pub mqtt: MqttArgs,
}

impl service_kit::process::Settings for Config {
    fn describe(command: clap::Command) -> clap::Command {
        command
            .name("button-service")
            .version(env!("CARGO_PKG_VERSION"))
            .about("Reads the SparkFun Qwiic Button and tells the LED service")
            .mut_arg("listen", |arg| arg.default_value("0.0.0.0:9090"))
    }

    fn health_listen(&self) -> std::net::SocketAddr {
        self.service.listen
    }

    fn log_format(&self) -> service_kit::logging::LogFormat {
        self.service.log_format
    }
}

/// At least 1 ms: faster polling only loads the bus (the firmware debounces 10 ms anyway).
fn parse_poll_interval(input: &str) -> Result<Duration, String> {
    let duration = parse_duration(input)?;
    if duration < Duration::from_millis(1) {
        return Err(format!("{input:?} is too short: poll at most every 1ms"));
    }
    Ok(duration)
}
