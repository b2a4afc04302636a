//! The flags the services take: [`ServiceArgs`], the ones led-service and button-service share
//! (flattened into each one's own), the parsers clap uses for durations, [`ResolveError`] for
//! what resolving them can fail on (secret files, MQTT settings), and [`reference`], every
//! setting of a command as data for `print-config` and the drift tests.
//!
//! Flags are checked when they are parsed; what needs the file system (a secret file) is read
//! once, when a service resolves its flags into the settings it runs with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::logging::LogFormat;
use crate::secret::{self, Secret, SecretError};

/// The flags led-service and button-service share. Each service gives `--listen` its own
/// default (a `mut_arg` on its command line: clap's derive would share one default between
/// all instances of a generic struct).
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// The API token: led-service requires it on POST and PUT (when set and not empty),
    /// button-service sends it.
    #[arg(long, env = "API_TOKEN", hide_env_values = true, value_parser = Secret::parse)]
    pub api_token: Option<Secret>,
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

/// What [`ServiceArgs`] resolve into.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Where the service listens.
    pub listen: SocketAddr,
    /// The API token: required by led-service, sent by button-service, when set.
    pub token: Option<Secret>,
}

impl ServiceArgs {
    /// Reads the token file, if one is named.
    pub fn resolve(&self) -> Result<ServiceSettings, ResolveError> {
        Ok(ServiceSettings {
            listen: self.listen,
            token: self.api_token()?,
        })
    }

    /// The API token from `--api-token` or the file `--api-token-file` names (trailing line
    /// break and spaces removed); `None` when neither is set or the token is empty.
    pub fn api_token(&self) -> Result<Option<Secret>, SecretError> {
        secret::resolve(
            self.api_token.as_ref(),
            self.api_token_file.as_deref(),
            "the API token",
            "API_TOKEN",
        )
    }
}

/// Why a service's flags could not be resolved into the settings it runs with.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A secret (the API token, the MQTT user name or password) could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The MQTT settings are unusable: what is wrong and what is accepted.
    #[error("{0}")]
    Mqtt(String),
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

/// A setting that may be given empty, which counts as not given: compose passes every
/// variable, empty when `.env` has none. Declare the field `Option<Blankable<T>>` with
/// `value_parser = blankable(parse)`, and read it with [`given`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blankable<T>(pub Option<T>);

/// `parse` for clap, where an empty (or blank) value is no value.
pub fn blankable<T>(
    parse: fn(&str) -> Result<T, String>,
) -> impl Fn(&str) -> Result<Blankable<T>, String> + Clone + Send + Sync + 'static
where
    T: Clone + Send + Sync + 'static,
{
    move |input| {
        if input.trim().is_empty() {
            Ok(Blankable(None))
        } else {
            parse(input).map(|value| Blankable(Some(value)))
        }
    }
}

/// The value of an `Option<Blankable<T>>` field: `None` when not given or given empty.
pub fn given<T: Clone>(field: &Option<Blankable<T>>) -> Option<T> {
    field.as_ref().and_then(|blankable| blankable.0.clone())
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
            from_file
                .args
                .api_token()
                .unwrap()
                .map(|t| t.expose().to_owned()),
            Some("s3cret".to_owned())
        );
        let empty = Cli::parse_from(["service", "--api-token", ""]);
        assert!(empty.args.api_token().unwrap().is_none());
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
            empty_and_file
                .args
                .api_token()
                .unwrap()
                .map(|t| t.expose().to_owned()),
            Some("s3cret".to_owned())
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
