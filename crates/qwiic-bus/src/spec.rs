//! The bus string given by flag or env var: `/dev/i2c-N`, `sim`, or `tcp://host:port`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Which bus to open.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BusSpec {
    /// A Linux i2c-dev character device, such as `/dev/i2c-1`.
    Linux(PathBuf),
    /// An in-process simulated button.
    Sim,
    /// The simulator server at `host:port`.
    Tcp {
        /// Host name or IP address (IPv6 in brackets).
        host: String,
        /// TCP port.
        port: u16,
    },
}

/// What the accepted forms are, for every parse error.
pub const ACCEPTED: &str = "accepted: a Linux i2c-dev path such as /dev/i2c-1, `sim` for an in-process simulated button, or tcp://HOST:PORT for the simulator server";

/// A bus string that is none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid bus {input:?}: {reason}; {ACCEPTED}")]
pub struct BusSpecError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for BusSpec {
    type Err = BusSpecError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason| BusSpecError {
            input: input.to_owned(),
            reason,
        };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(error("it is empty"));
        }
        if trimmed.eq_ignore_ascii_case("sim") {
            return Ok(BusSpec::Sim);
        }
        if let Some(rest) = trimmed.strip_prefix("tcp://") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| error("a tcp:// bus needs a port, as in tcp://simulator:7070"))?;
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            if host.is_empty() {
                return Err(error("the host is empty"));
            }
            if host.contains('/') || host.contains(char::is_whitespace) {
                return Err(error("the host contains '/' or a space"));
            }
            let port: u16 = port
                .parse()
                .map_err(|_| error("the port is not a number from 1 to 65535"))?;
            if port == 0 {
                return Err(error("the port is not a number from 1 to 65535"));
            }
            return Ok(BusSpec::Tcp {
                host: host.to_owned(),
                port,
            });
        }
        if trimmed.contains("://") {
            return Err(error("unknown scheme"));
        }
        if !trimmed.starts_with('/') {
            return Err(error("a device path must be absolute"));
        }
        Ok(BusSpec::Linux(PathBuf::from(trimmed)))
    }
}

impl fmt::Display for BusSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusSpec::Linux(path) => write!(f, "{}", path.display()),
            BusSpec::Sim => f.write_str("sim"),
            BusSpec::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            BusSpec::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
        }
    }
}

impl BusSpec {
    /// Whether this bus is a simulator's (in-process or over TCP), not a real one.
    pub fn is_simulated(&self) -> bool {
        !matches!(self, BusSpec::Linux(_))
    }

    /// What to check when no button answers on this bus.
    pub fn hint(&self) -> String {
        match self {
            BusSpec::Linux(path) => {
                let number = path
                    .to_str()
                    .and_then(|p| p.strip_prefix("/dev/i2c-"))
                    .unwrap_or("N");
                // -r: read probes; the Jetson's Tegra adapter has no SMBus Quick command, so
                // the default probe skips 0x6F there.
                format!("check the cable and `i2cdetect -y -r {number}`")
            }
            BusSpec::Sim => {
                "the in-process simulator is unplugged or at another address".to_owned()
            }
            BusSpec::Tcp { .. } => {
                format!(
                    "check that the simulator server runs at {self} and its button is plugged in"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms_parse() {
        assert_eq!(
            "/dev/i2c-1".parse(),
            Ok(BusSpec::Linux("/dev/i2c-1".into()))
        );
        assert_eq!("sim".parse(), Ok(BusSpec::Sim));
        assert_eq!(" SIM ".parse(), Ok(BusSpec::Sim));
        assert_eq!(
            "tcp://simulator:7070".parse(),
            Ok(BusSpec::Tcp {
                host: "simulator".into(),
                port: 7070
            })
        );
        assert_eq!(
            "tcp://[::1]:7070".parse(),
            Ok(BusSpec::Tcp {
                host: "::1".into(),
                port: 7070
            })
        );
    }

    #[test]
    fn display_round_trips() {
        for input in [
            "/dev/i2c-1",
            "sim",
            "tcp://simulator:7070",
            "tcp://[::1]:7070",
        ] {
            let spec: BusSpec = input.parse().unwrap();
            assert_eq!(spec.to_string(), input);
        }
    }

    #[test]
    fn malformed_strings_say_what_is_wrong_and_what_is_accepted() {
        for (input, reason) in [
            ("", "it is empty"),
            ("tcp://simulator", "needs a port"),
            ("tcp://:7070", "host is empty"),
            ("tcp://simulator:0", "port is not a number"),
            ("tcp://simulator:http", "port is not a number"),
            ("tcp://simulator:70700", "port is not a number"),
            ("udp://simulator:7070", "unknown scheme"),
            ("i2c-1", "must be absolute"),
        ] {
            let message = input.parse::<BusSpec>().unwrap_err().to_string();
            assert!(message.contains(reason), "{input:?}: {message}");
            assert!(
                message.contains("/dev/i2c-1") && message.contains("tcp://HOST:PORT"),
                "{message}"
            );
        }
    }

    #[test]
    fn hints_name_the_bus_number() {
        assert!(
            BusSpec::Linux("/dev/i2c-7".into())
                .hint()
                .contains("i2cdetect -y -r 7")
        );
    }
}
