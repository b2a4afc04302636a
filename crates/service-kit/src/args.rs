//! The flags the services take: [`ServiceArgs`], the ones led-service and button-service share
//! (flattened into each one's own), the parsers clap uses for addresses and durations, and
//! [`reference`], every setting of a command as data for `print-config` and the drift tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use qwiic_bus::{Bus, BusCounters, BusSpec, DeviceLink};
use qwiic_button::Address;
use serde::Serialize;

use crate::logging::LogFormat;

/// The flags led-service and button-service share. Each service gives `--listen` its own
/// default (a `mut_arg` on its command line: clap's derive would share one default between
/// all instances of a generic struct).
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// The I2C bus: a Linux i2c-dev path, `sim` (in-process simulator), or tcp://HOST:PORT
    /// (the simulator server).
    #[arg(long, env = "BUS", default_value = "/dev/i2c-1")]
    pub bus: BusSpec,
    /// The button's I2C address, 0x08-0x77.
    #[arg(long, env = "I2C_ADDRESS", default_value = "0x6F", value_parser = parse_address)]
    pub address: Address,
    /// The API token: led-service requires it on POST and PUT (when set and not empty),
    /// button-service sends it.
    #[arg(long, env = "API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// A file holding the API token (a Docker or Kubernetes secret), instead of API_TOKEN.
    /// (An empty API_TOKEN counts as unset: compose passes one when `.env` has none.)
    #[arg(long, env = "API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Where the service listens (port 0: any free port, logged at start).
    #[arg(long, env = "LISTEN_ADDR", required = false)]
    pub listen: SocketAddr,
}

impl ServiceArgs {
    /// A link to the button at `--address` on `bus` (opened from `--bus`, or a test's own).
    /// `retrying` says in the outage log line how the service goes on ("retrying every poll").
    pub fn link(&self, bus: Bus, counters: BusCounters, retrying: &'static str) -> DeviceLink {
        DeviceLink::new(bus, self.bus.clone(), self.address, counters, retrying)
    }

    /// The API token from `--api-token` or the file `--api-token-file` names (trailing line
    /// break and spaces removed); `None` when neither is set or the token is empty.
    pub fn api_token(&self) -> Result<Option<String>, SecretError> {
        secret(
            self.api_token.as_deref(),
            self.api_token_file.as_deref(),
            "the API token",
            "API_TOKEN",
        )
    }
}

/// A secret given as a value or as a file that holds it (a Docker or Kubernetes secret),
/// `VARIABLE` and `VARIABLE_FILE`: the file's content without its trailing line break and
/// spaces; `None` when neither is set or it is empty. An empty value counts as unset (compose
/// passes one when `.env` has none).
pub fn secret(
    value: Option<&str>,
    file: Option<&Path>,
    what: &'static str,
    variable: &'static str,
) -> Result<Option<String>, SecretError> {
    let given = value.unwrap_or_default();
    let secret = match file {
        Some(_) if !given.is_empty() => return Err(SecretError::Both { variable }),
        Some(path) => std::fs::read_to_string(path)
            .map_err(|source| SecretError::File {
                what,
                variable,
                path: path.to_owned(),
                source,
            })?
            .trim_end()
            .to_owned(),
        None => given.to_owned(),
    };
    Ok((!secret.is_empty()).then_some(secret))
}

/// A secret could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Both ways are set, so which one is meant is unclear.
    #[error(
        "both {variable} and {variable}_FILE are set: use one (the file keeps it out of `docker inspect`), and unset or empty the other"
    )]
    Both {
        /// The variable, such as `API_TOKEN`.
        variable: &'static str,
    },
    /// The file could not be read.
    #[error(
        "cannot read {what} from {} ({variable}_FILE): {source}; mount the secret there, readable by uid 65532, or set {variable} instead",
        path.display()
    )]
    File {
        /// What it is, such as "the API token".
        what: &'static str,
        /// The variable, such as `API_TOKEN`.
        variable: &'static str,
        /// The file named.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
}

/// Parses an I2C address for clap: `0x6F`, `0x6f` or `111`, checked to be 0x08-0x77.
pub fn parse_address(input: &str) -> Result<Address, String> {
    let trimmed = input.trim();
    let value = match trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
    {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => trimmed.parse::<u8>(),
    }
    .map_err(|_| {
        format!("{input:?} is not an I2C address: give 0x08 to 0x77 in hex (0x6F) or decimal (111)")
    })?;
    Address::new(value).map_err(|error| error.to_string())
}

/// Parses a duration for clap: `20ms`, `1s`, `1.5s`, `2m` (units ms, s, m).
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let trimmed = input.trim();
    let invalid = || {
        format!("{input:?} is not a duration: give a number with a unit, such as 20ms, 1s or 1.5s")
    };
    let (number, unit) = trimmed
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|at| trimmed.split_at(at))
        .ok_or_else(invalid)?;
    let number: f64 = number.trim().parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return Err(invalid()),
    };
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("{input:?} is out of range: give 0 to 24 hours"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// [`parse_duration`], refusing 0.
pub fn parse_nonzero_duration(input: &str) -> Result<Duration, String> {
    let duration = parse_duration(input)?;
    if duration.is_zero() {
        return Err(format!("{input:?} must be longer than 0"));
    }
    Ok(duration)
}

/// One setting of a command, as the README's configuration table lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    /// `--bus`.
    pub flag: String,
    /// `BUS`.
    pub env: String,
    /// The default, as clap shows it; `None` when there is none.
    pub default: Option<String>,
}

/// Every setting of `command` that has an environment variable, in declaration order.
pub fn reference(command: &clap::Command) -> Vec<Setting> {
    command
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_string_lossy().into_owned();
            let flag = format!("--{}", arg.get_long()?);
            let default = arg
                .get_default_values()
                .first()
                .map(|value| value.to_string_lossy().into_owned());
            Some(Setting { flag, env, default })
        })
        .collect()
}

/// [`reference`] as a JSON array.
pub fn reference_json(command: &clap::Command) -> String {
    serde_json::to_string(&reference(command)).unwrap_or_else(|_| "[]".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    #[command(mut_arg("listen", |arg| arg.default_value("0.0.0.0:8080")))]
    struct Cli {
        #[command(flatten)]
        args: ServiceArgs,
    }

    #[test]
    fn addresses_parse_in_hex_and_decimal_and_are_range_checked() {
        assert_eq!(parse_address("0x6F").unwrap().get(), 0x6F);
        assert_eq!(parse_address("0x6f").unwrap().get(), 0x6F);
        assert_eq!(parse_address("111").unwrap().get(), 111);
        assert!(parse_address("0x78").unwrap_err().contains("0x08 to 0x77"));
        assert!(
            parse_address("zz")
                .unwrap_err()
                .contains("not an I2C address")
        );
        assert!(parse_address("0x1FF").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("20ms").unwrap(), Duration::from_millis(20));
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "20", "fast", "5h", "-1s", "1e9s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_nonzero_duration("0s")
                .unwrap_err()
                .contains("longer than 0")
        );
    }

    #[test]
    fn the_default_port_is_the_services_own() {
        let cli = Cli::parse_from(["service"]);
        assert_eq!(cli.args.listen, "0.0.0.0:8080".parse().unwrap());
        let reference = reference(&<Cli as clap::CommandFactory>::command());
        let listen = reference.iter().find(|s| s.env == "LISTEN_ADDR").unwrap();
        assert_eq!(listen.default.as_deref(), Some("0.0.0.0:8080"));
        let token = reference.iter().find(|s| s.env == "API_TOKEN").unwrap();
        assert_eq!(
            (token.flag.as_str(), token.default.as_ref()),
            ("--api-token", None)
        );
    }

    #[test]
    fn the_token_comes_from_the_flag_or_the_file_never_both() {
        let dir = std::env::temp_dir().join(format!("token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let from_file = Cli::parse_from(["service", "--api-token-file", file.to_str().unwrap()]);
        assert_eq!(
            from_file.args.api_token().unwrap().as_deref(),
            Some("s3cret")
        );
        let empty = Cli::parse_from(["service", "--api-token", ""]);
        assert_eq!(empty.args.api_token().unwrap(), None);
        let both = Cli::parse_from([
            "service",
            "--api-token",
            "x",
            "--api-token-file",
            file.to_str().unwrap(),
        ]);
        let message = both.args.api_token().unwrap_err().to_string();
        assert!(
            message.contains("both API_TOKEN and API_TOKEN_FILE are set: use one"),
            "{message}"
        );
        // Compose passes API_TOKEN empty when .env has none: the file is then the token.
        let empty_and_file = Cli::parse_from([
            "service",
            "--api-token",
            "",
            "--api-token-file",
            file.to_str().unwrap(),
        ]);
        assert_eq!(
            empty_and_file.args.api_token().unwrap().as_deref(),
            Some("s3cret")
        );
        let missing = Cli::parse_from(["service", "--api-token-file", "/nonexistent/token"]);
        let message = missing.args.api_token().unwrap_err().to_string();
        assert!(
            message.contains("/nonexistent/token") && message.contains("uid 65532"),
            "{message}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
