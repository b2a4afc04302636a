//! The MQTT flags both services take ([`MqttArgs`]), checked when parsed, and the settings
//! they resolve into ([`MqttSettings`]): the broker, credentials read from values or secret
//! files, the topic prefix and Home Assistant discovery.

use crate::args::ResolveError;
use crate::secret::{self, Secret};

/// The MQTT flags both services take.
#[derive(Debug, Clone, clap::Args)]
pub struct MqttArgs {
    /// The MQTT broker, `mqtt://HOST[:PORT]` (port 1883 by default); unset or empty: no MQTT.
    #[arg(long, env = "MQTT_URL", value_parser = check_broker)]
    pub mqtt_url: Option<String>,
    /// User name at the broker.
    #[arg(long, env = "MQTT_USERNAME", hide_env_values = true, value_parser = Secret::parse)]
    pub mqtt_username: Option<Secret>,
    /// A file holding the user name, instead of MQTT_USERNAME.
    #[arg(long, env = "MQTT_USERNAME_FILE")]
    pub mqtt_username_file: Option<std::path::PathBuf>,
    /// Password at the broker.
    #[arg(long, env = "MQTT_PASSWORD", hide_env_values = true, value_parser = Secret::parse)]
    pub mqtt_password: Option<Secret>,
    /// A file holding the password (a Docker or Kubernetes secret), instead of MQTT_PASSWORD.
    #[arg(long, env = "MQTT_PASSWORD_FILE")]
    pub mqtt_password_file: Option<std::path::PathBuf>,
    /// The start of every topic; unset or empty: `qwiic/` and this machine's host name. Set
    /// the same on both services of one device, and a different one for each device.
    #[arg(long, env = "MQTT_TOPIC_PREFIX", value_parser = check_topic_prefix)]
    pub mqtt_topic_prefix: Option<String>,
    /// Announce the button and its LED to Home Assistant (MQTT discovery); `false` removes
    /// what was announced.
    #[arg(long, env = "HA_DISCOVERY", default_value_t = true, action = clap::ArgAction::Set)]
    pub ha_discovery: bool,
    /// Home Assistant's discovery prefix.
    #[arg(long, env = "HA_DISCOVERY_PREFIX", default_value = "homeassistant", value_parser = parse_topic_prefix)]
    pub ha_discovery_prefix: String,
}

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
        }
    }
}

/// Checks `MQTT_URL` for clap; an empty value is no broker (compose passes one when unset).
fn check_broker(input: &str) -> Result<String, String> {
    if !input.trim().is_empty() {
        parse_broker(input)?;
    }
    Ok(input.trim().to_owned())
}

/// Checks `MQTT_TOPIC_PREFIX` for clap; an empty value is the default.
fn check_topic_prefix(input: &str) -> Result<String, String> {
    if input.trim().is_empty() {
        return Ok(String::new());
    }
    parse_topic_prefix(input)
}

/// Parses `mqtt://HOST[:PORT]`.
pub fn parse_broker(input: &str) -> Result<Broker, String> {
    const ACCEPTED: &str = "use mqtt://HOST or mqtt://HOST:PORT, such as mqtt://192.168.1.10:1883";
    let input = input.trim();
    let rest = match input.split_once("://") {
        Some(("mqtt" | "tcp", rest)) => rest,
        Some(("mqtts" | "ssl" | "ws" | "wss", _)) => {
            return Err(format!(
                "{input}: these builds speak plain MQTT only (no TLS, no WebSocket): use a broker on the LAN, and a Mosquitto bridge for TLS to a cloud hub (README)"
            ));
        }
        _ => return Err(format!("{input:?} is not a broker address: {ACCEPTED}")),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{input}: an IPv6 address needs its closing ']'"))?;
            (host, after.strip_prefix(':'))
        }
        None => match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(format!("{input}: no host, or not a bare host: {ACCEPTED}"));
    }
    let port = match port {
        None => 1883,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("{input}: the port must be 1-65535"))?,
    };
    Ok(Broker {
        host: host.to_owned(),
        port,
    })
}

/// Parses a topic prefix: levels of letters, digits, `_` and `-`, separated by `/`.
pub fn parse_topic_prefix(input: &str) -> Result<String, String> {
    let prefix = input.trim().trim_end_matches('/');
    let valid = !prefix.is_empty()
        && prefix.split('/').all(|level| {
            !level.is_empty()
                && level
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if valid {
        Ok(prefix.to_owned())
    } else {
        Err(format!(
            "{input:?} is not a topic prefix: use levels of letters, digits, '_' and '-' separated by '/', such as qwiic/garage"
        ))
    }
}

/// `qwiic/<this machine's host name>`, in topic-safe characters.
pub fn default_topic_prefix() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let safe: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("qwiic/{}", if safe.is_empty() { "device" } else { &safe })
}

/// The settings of one service's MQTT link, resolved from [`MqttArgs`].
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// The broker.
    pub broker: Broker,
    /// User name and password, when the broker wants them.
    pub credentials: Option<(Secret, Secret)>,
    /// The start of every topic.
    pub prefix: String,
    /// Whether to announce to Home Assistant (else: remove what was announced).
    pub ha_discovery: bool,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
}

impl MqttArgs {
    /// The settings, or `None` when no broker is set. Reads the secret files.
    pub fn resolve(&self) -> Result<Option<MqttSettings>, ResolveError> {
        let url = self.mqtt_url.as_deref().unwrap_or_default();
        if url.is_empty() {
            return Ok(None);
        }
        let broker = parse_broker(url).map_err(ResolveError::Mqtt)?;
        let prefix = match self.mqtt_topic_prefix.as_deref() {
            None | Some("") => default_topic_prefix(),
            Some(prefix) => parse_topic_prefix(prefix).map_err(ResolveError::Mqtt)?,
        };
        let username = secret::resolve(
            self.mqtt_username.as_ref(),
            self.mqtt_username_file.as_deref(),
            "the MQTT user name",
            "MQTT_USERNAME",
        )?;
        let password = secret::resolve(
            self.mqtt_password.as_ref(),
            self.mqtt_password_file.as_deref(),
            "the MQTT password",
            "MQTT_PASSWORD",
        )?;
        Ok(Some(MqttSettings {
            broker,
            credentials: username.map(|user| (user, password.unwrap_or_else(|| Secret::new("")))),
            prefix,
            ha_discovery: self.ha_discovery,
            discovery_prefix: self.ha_discovery_prefix.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn broker_addresses_parse_and_bad_ones_say_what_is_accepted() {
        for (input, host, port) in [
            ("mqtt://broker", "broker", 1883),
            ("mqtt://192.168.1.10:1884", "192.168.1.10", 1884),
            ("tcp://mosquitto:1883/", "mosquitto", 1883),
            ("mqtt://[::1]:1883", "::1", 1883),
            ("mqtt://[fe80::1]", "fe80::1", 1883),
        ] {
            let broker = parse_broker(input).unwrap();
            assert_eq!((broker.host.as_str(), broker.port), (host, port), "{input}");
        }
        assert_eq!(
            parse_broker("mqtt://[::1]:1883").unwrap().to_string(),
            "mqtt://[::1]:1883"
        );
        for (input, says) in [
            ("broker:1883", "use mqtt://HOST or mqtt://HOST:PORT"),
            ("http://broker", "use mqtt://HOST or mqtt://HOST:PORT"),
            ("mqtts://broker:8883", "no TLS"),
            ("mqtt://broker:0", "the port must be 1-65535"),
            ("mqtt://broker:http", "the port must be 1-65535"),
            ("mqtt://", "no host"),
            ("mqtt://user@broker", "not a bare host"),
            ("mqtt://[::1:1883", "closing ']'"),
        ] {
            let message = parse_broker(input).unwrap_err();
            assert!(message.contains(says), "{input}: {message}");
        }
    }

    #[test]
    fn topic_prefixes_are_levels_of_safe_characters() {
        assert_eq!(parse_topic_prefix("qwiic/garage/").unwrap(), "qwiic/garage");
        for bad in ["", "qwiic//x", "qwiic/+", "qwiic/#", "qwiic/a b", "/qwiic"] {
            let message = parse_topic_prefix(bad).unwrap_err();
            assert!(message.contains("such as qwiic/garage"), "{bad}: {message}");
        }
        let default = default_topic_prefix();
        assert!(parse_topic_prefix(&default).is_ok(), "{default}");
    }

    #[test]
    fn the_user_name_and_password_come_from_values_or_files() {
        let dir = std::env::temp_dir().join(format!("qwiic-mqtt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let password = dir.join("password");
        std::fs::write(&password, "pa55\n").unwrap();
        let args = |extra: &[&str]| {
            #[derive(clap::Parser)]
            struct Cli {
                #[command(flatten)]
                mqtt: MqttArgs,
            }
            let mut all = vec!["service"];
            all.extend(extra);
            <Cli as clap::Parser>::parse_from(all).mqtt
        };
        assert!(args(&[]).resolve().unwrap().is_none(), "off by default");
        let settings = args(&[
            "--mqtt-url=mqtt://broker",
            "--mqtt-username=alice",
            "--mqtt-password-file",
            password.to_str().unwrap(),
        ])
        .resolve()
        .unwrap()
        .unwrap();
        let (user, pass) = settings.credentials.as_ref().unwrap();
        assert_eq!((user.expose(), pass.expose()), ("alice", "pa55"));
        assert!(settings.ha_discovery, "discovery is on with MQTT");
        assert_eq!(settings.discovery_prefix, "homeassistant");
        let both = args(&[
            "--mqtt-url=mqtt://broker",
            "--mqtt-password=x",
            "--mqtt-password-file",
            password.to_str().unwrap(),
        ])
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(
            both.contains("both MQTT_PASSWORD and MQTT_PASSWORD_FILE are set"),
            "{both}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
