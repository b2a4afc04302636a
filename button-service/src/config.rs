//! The flags and environment variables ([`Config`], every flag has a variable), checked when
//! parsed, and what they resolve into once the secret files are read: the [`Settings`] the
//! service runs with.

use std::net::SocketAddr;
use std::time::Duration;

use qwiic_bus::IntSpec;
use qwiic_bus::args::DeviceArgs;
use service_kit::ResolveError;
use service_kit::args::{
    Blankable, ServiceArgs, ServiceSettings, blankable, given, parse_duration,
    parse_nonzero_duration,
};
use service_kit::logging::LogFormat;
use service_kit::mqtt::{MqttArgs, MqttSettings};

use crate::gestures::{MAX_PRESSES, Timing};

/// The command line: these flags, or a subcommand.
pub type Cli = service_kit::process::Cli<Config>;

/// The service's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Where the button is: bus and address.
    #[command(flatten)]
    pub device: DeviceArgs,
    /// What both services take: token, log format, listen address (internal /healthz and
    /// /metrics, not published by compose).
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Base URL of the LED service; each press is POSTed to {LED_URL}/true, each release to
    /// /false.
    #[arg(long, env = "LED_URL", default_value = "http://led:8080")]
    pub led_url: reqwest::Url,
    /// How often the button is read (`1s` gives the original's timing).
    #[arg(long, env = "POLL_INTERVAL", default_value = "20ms", value_parser = parse_poll_interval)]
    pub poll_interval: Duration,
    /// The button's INT line: read the button when it changes, instead of every poll. The GPIO
    /// INT is wired to as CHIP:LINE, the chip by label (`pinctrl-bcm2711:24` is header pin 18
    /// on a Raspberry Pi 4, `tegra-gpio:15` on a Jetson Nano), name or node; or `simulator`
    /// (the simulator's line, with a tcp:// BUS). Unset: the button is polled.
    #[arg(long, env = "INT_GPIO", value_parser = blankable(parse_int))]
    pub int_gpio: Option<Blankable<IntSpec>>,
    /// With INT_GPIO: read the button at least this often anyway (an edge that was missed, the
    /// firmware's save-pass race, an unplugged button).
    #[arg(long, env = "INT_HEARTBEAT", default_value = "1s", value_parser = parse_nonzero_duration)]
    pub int_heartbeat: Duration,
    /// Also send the current state this often (`1s` is the original's behaviour; the LED then
    /// mirrors the button strictly and a change made by hand lasts until the next re-send).
    /// Unset: only presses and releases are sent.
    #[arg(long, env = "RESEND_INTERVAL", value_parser = blankable(parse_nonzero_duration))]
    pub resend_interval: Option<Blankable<Duration>>,
    /// Deadline of one request to the LED service.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "500ms", value_parser = parse_nonzero_duration)]
    pub request_timeout: Duration,
    /// Held at least this long: a `long` press (MQTT).
    #[arg(long, env = "LONG_PRESS", default_value = "600ms", value_parser = parse_nonzero_duration)]
    pub long_press: Duration,
    /// A press starting within this time after a short one's release counts on: `double`,
    /// `triple`, ... instead of `single`s (so a count is told this long after the last
    /// release).
    #[arg(long, env = "DOUBLE_PRESS_WINDOW", default_value = "300ms", value_parser = parse_nonzero_duration)]
    pub double_press_window: Duration,
    /// Count at most this many presses in a row, 1 to 5 (`single` to `quintuple`); the last
    /// is told at its release. 2: a `double` without waiting for the window.
    #[arg(long, env = "MAX_PRESSES", default_value = "5", value_parser = parse_max_presses)]
    pub max_presses: u8,
    /// While the button is held after `long`: a `repeat` this often (dimming); 0: none.
    #[arg(long, env = "HOLD_REPEAT", default_value = "200ms", value_parser = parse_hold_repeat)]
    pub hold_repeat: Duration,
    /// The button's own debounce time, set when it holds another (the firmware keeps it in
    /// EEPROM: written once per button, not at every start). Unset: the button's is kept, and
    /// read when the button is found (buttons have been found set to tens of seconds).
    #[arg(long, env = "DEBOUNCE", value_parser = blankable(parse_debounce))]
    pub debounce: Option<Blankable<u16>>,
    /// MQTT: the broker, credentials, topic prefix, Home Assistant discovery.
    #[command(flatten)]
    pub mqtt: MqttArgs,
}

impl service_kit::process::CommandLine for Config {
    const NAME: &'static str = "button-service";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const ABOUT: &'static str = "Reads the SparkFun Qwiic Button and tells the LED service";
    const LISTEN: Option<&'static str> = Some("0.0.0.0:9090");

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
    /// Where the internal /healthz and /metrics listen, and the token sent to the LED
    /// service.
    pub service: ServiceSettings,
    /// Base URL of the LED service.
    pub led_url: reqwest::Url,
    /// How often the button is read (with INT: while an edge settles).
    pub poll_interval: Duration,
    /// The INT line and the heartbeat, when INT is wired.
    pub int: Option<(IntSpec, Duration)>,
    /// Also send the current state this often, when set.
    pub resend_interval: Option<Duration>,
    /// Deadline of one request to the LED service.
    pub request_timeout: Duration,
    /// What makes a long press, a count of presses and a repeat.
    pub timing: Timing,
    /// The debounce time to set on the button, in ms, if any.
    pub debounce_ms: Option<u16>,
    /// The MQTT link, when a broker is set.
    pub mqtt: Option<MqttSettings>,
}

impl Config {
    /// Reads the secret files and resolves the MQTT settings: what the service runs with.
    pub fn resolve(&self) -> Result<Settings, ResolveError> {
        Ok(Settings {
            device: self.device.clone(),
            service: self.service.resolve()?,
            led_url: self.led_url.clone(),
            poll_interval: self.poll_interval,
            int: given(&self.int_gpio).map(|spec| (spec, self.int_heartbeat)),
            resend_interval: given(&self.resend_interval),
            request_timeout: self.request_timeout,
            timing: Timing {
                long_press: self.long_press,
                press_window: self.double_press_window,
                max_presses: self.max_presses,
                hold_repeat: Some(self.hold_repeat).filter(|period| !period.is_zero()),
            },
            debounce_ms: given(&self.debounce),
            mqtt: self.mqtt.resolve()?,
        })
    }
}

/// 1 to 5 presses (Home Assistant names them up to `quintuple`).
fn parse_max_presses(input: &str) -> Result<u8, String> {
    match input.trim().parse::<u8>() {
        Ok(count) if (1..=MAX_PRESSES).contains(&count) => Ok(count),
        _ => Err(format!(
            "{input:?} is not a count of presses: give 1 to {MAX_PRESSES} (1: `single` only, 2: up to `double`, 5: up to `quintuple`)"
        )),
    }
}

/// 0 (no repeats), or 50 ms to 10 s: each repeat is an MQTT message.
fn parse_hold_repeat(input: &str) -> Result<Duration, String> {
    let period = parse_duration(input)?;
    if period.is_zero() {
        return Ok(period);
    }
    if !(Duration::from_millis(50)..=Duration::from_secs(10)).contains(&period) {
        return Err(format!(
            "{input:?} is outside 50ms to 10s: a repeat is an MQTT message, give e.g. 200ms (or 0 for no repeats)"
        ));
    }
    Ok(period)
}

/// 1 ms to 1 s, whole milliseconds (the firmware's register holds milliseconds; a longer
/// lockout drops a quick second press).
fn parse_debounce(input: &str) -> Result<u16, String> {
    let duration = parse_duration(input)?;
    let millis = u16::try_from(duration.as_millis())
        .ok()
        .filter(|&ms| (1..=1000).contains(&ms) && duration == Duration::from_millis(u64::from(ms)));
    match millis {
        Some(ms) => Ok(ms),
        None => Err(format!(
            "{input:?} is not a debounce time the button can hold: give whole milliseconds from 1ms to 1s (the factory's is 10ms)"
        )),
    }
}

fn parse_int(input: &str) -> Result<IntSpec, String> {
    input.parse()
}

/// At least 1 ms: faster polling only loads the bus (the firmware debounces 10 ms anyway).
fn parse_poll_interval(input: &str) -> Result<Duration, String> {
    let duration = parse_duration(input)?;
    if duration < Duration::from_millis(1) {
        return Err(format!("{input:?} is too short: poll at most every 1ms"));
    }
    Ok(duration)
}
