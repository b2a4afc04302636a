//! The button's INT line, when it is wired: [`IntSpec`] says where it is read, [`IntLine`]
//! waits for it to change.
//!
//! INT is an open-drain, active-low output: the firmware pulls it low while (isPressed and
//! pressedEnable) or (hasBeenClicked and clickedEnable). A read while the button is held sets
//! isPressed again, so a host that clears the status after each read makes the line fall at
//! its own next read; and with clicks enabled, a release keeps a line that is already low
//! low, so the release makes no edge. button-service therefore enables the pressed interrupt
//! only and waits for either edge: the line then follows the debounced switch (low while
//! held), a press is a fall and a release a rise, and the host's reads change nothing. An
//! edge means "go read"; what happened is still told by reading the button, so a spurious or
//! a missed edge costs a read, or waits for the next heartbeat read, and never an event.
//!
//! Where it is read: a GPIO of the board, `CHIP:LINE` (the GPIO character device, see
//! [`gpio`](crate::gpio)), or `simulator`, the simulator's line over its `tcp://` bus (an INT
//! wait, see [`wire`](crate::wire)). Both answer the same question: did the line change since
//! the previous wait.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

#[cfg(target_os = "linux")]
use crate::gpio::{GpioError, GpioLine};
use crate::{BusSpec, TcpBus, TcpBusError, TcpTimeouts};

/// Where the INT line is read (`--int-gpio`, `INT_GPIO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntSpec {
    /// The simulator's INT line, over the `tcp://` bus.
    Simulator,
    /// A GPIO line of the board.
    Gpio {
        /// Its chip.
        chip: GpioChip,
        /// Its offset on the chip.
        line: u32,
    },
}

/// What `--int-gpio` accepts, for error messages.
pub const INT_ACCEPTED: &str = "CHIP:LINE, the GPIO that INT is wired to, with the chip by label (pinctrl-bcm2711:24 is header pin 18 on a Raspberry Pi 4, tegra-gpio:15 on a Jetson Nano), by name (gpiochip0:24) or by node (/dev/gpiochip0:24); or `simulator` (the simulator's INT line, with a tcp:// BUS)";

impl FromStr for IntSpec {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let input = input.trim();
        if input == "simulator" {
            return Ok(IntSpec::Simulator);
        }
        let Some((chip, line)) = input.rsplit_once(':') else {
            return Err(format!(
                "{input:?} is not an INT line: give {INT_ACCEPTED}; `sudo ./init_os.sh --int-pin PIN` finds it from the header pin"
            ));
        };
        let Ok(line) = line.parse::<u32>() else {
            return Err(format!(
                "{line:?} in {input:?} is not a line number: the line is the GPIO's offset on its chip, a whole number (`gpioinfo` lists them); give {INT_ACCEPTED}"
            ));
        };
        let chip = match chip {
            "" => {
                return Err(format!("{input:?} names no chip: give {INT_ACCEPTED}"));
            }
            path if path.starts_with('/') => GpioChip::Path(PathBuf::from(path)),
            name if name.strip_prefix("gpiochip").is_some_and(|number| {
                !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
            }) =>
            {
                GpioChip::Path(PathBuf::from("/dev").join(name))
            }
            label => GpioChip::Label(label.to_owned()),
        };
        Ok(IntSpec::Gpio { chip, line })
    }
}

impl fmt::Display for IntSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntSpec::Simulator => f.write_str("simulator"),
            IntSpec::Gpio { chip, line } => write!(f, "{chip}:{line}"),
        }
    }
}

/// A GPIO chip, as `--int-gpio` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpioChip {
    /// By its node (`/dev/gpiochip0`; `gpiochip0` means the same).
    Path(PathBuf),
    /// By its label (`pinctrl-bcm2711`), whatever its number.
    Label(String),
}

impl fmt::Display for GpioChip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpioChip::Path(path) => write!(f, "{}", path.display()),
            GpioChip::Label(label) => f.write_str(label),
        }
    }
}

/// An INT line, ready to wait on.
#[derive(Debug)]
pub enum IntLine {
    /// The simulator's, on a connection of its own.
    Simulator(TcpBus),
    /// A GPIO line of the board.
    #[cfg(target_os = "linux")]
    Gpio(GpioLine),
}

/// Why an INT line could not be opened or waited on.
#[derive(Debug, thiserror::Error)]
pub enum IntError {
    /// `simulator` with a bus that is not the simulator server's.
    #[error(
        "INT_GPIO=simulator reads the simulator's INT line over its tcp:// bus, but BUS is {0}: set BUS=tcp://HOST:PORT, or leave INT_GPIO unset"
    )]
    NotTheSimulator(BusSpec),
    /// The wait failed (the simulator restarted, say); the next one reconnects.
    #[error("waiting for the INT line failed: {0}")]
    Wait(#[from] TcpBusError),
    /// The GPIO could not be opened or waited on.
    #[cfg(target_os = "linux")]
    #[error("INT_GPIO: {0}")]
    Gpio(#[from] GpioError),
    /// GPIO character devices exist only on Linux.
    #[error("INT_GPIO={0} is a GPIO line, which only Linux has; use `simulator` here")]
    Unsupported(IntSpec),
}

impl IntLine {
    /// Opens the line `spec` names, beside the button's `bus`.
    pub fn open(spec: &IntSpec, bus: &BusSpec) -> Result<IntLine, IntError> {
        match (spec, bus) {
            (IntSpec::Simulator, BusSpec::Tcp { host, port }) => Ok(IntLine::Simulator(
                TcpBus::new(host.clone(), *port, TcpTimeouts::default()),
            )),
            (IntSpec::Simulator, other) => Err(IntError::NotTheSimulator(other.clone())),
            #[cfg(target_os = "linux")]
            (IntSpec::Gpio { chip, line }, _) => {
                let path = match chip {
                    GpioChip::Path(path) => path.clone(),
                    GpioChip::Label(label) => crate::gpio::find_by_label(label)?,
                };
                Ok(IntLine::Gpio(GpioLine::open(&path, *line)?))
            }
            #[cfg(not(target_os = "linux"))]
            (gpio @ IntSpec::Gpio { .. }, _) => Err(IntError::Unsupported(gpio.clone())),
        }
    }

    /// Waits up to `timeout` (at most [`wire::MAX_INT_WAIT`](crate::wire::MAX_INT_WAIT)) for
    /// the line to change (either edge); true when it changed since the previous wait
    /// returned.
    pub fn wait_edge(&mut self, timeout: Duration) -> Result<bool, IntError> {
        match self {
            IntLine::Simulator(bus) => Ok(bus.wait_int_edge(timeout)?),
            #[cfg(target_os = "linux")]
            IntLine::Gpio(line) => Ok(line.wait_edge(timeout)?),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn a_gpio_is_named_by_chip_label_name_or_node_and_a_line() {
        let gpio = |chip: GpioChip, line| IntSpec::Gpio { chip, line };
        for (input, expected) in [
            ("simulator", IntSpec::Simulator),
            (
                "pinctrl-bcm2711:24",
                gpio(GpioChip::Label("pinctrl-bcm2711".into()), 24),
            ),
            (
                " tegra-gpio:15 ",
                gpio(GpioChip::Label("tegra-gpio".into()), 15),
            ),
            (
                "gpiochip4:24",
                gpio(GpioChip::Path("/dev/gpiochip4".into()), 24),
            ),
            (
                "/dev/gpiochip0:216",
                gpio(GpioChip::Path("/dev/gpiochip0".into()), 216),
            ),
            // A label that merely starts like a name is a label.
            (
                "gpiochip-exp:3",
                gpio(GpioChip::Label("gpiochip-exp".into()), 3),
            ),
        ] {
            let spec: IntSpec = input.parse().unwrap();
            assert_eq!(spec, expected, "{input}");
        }
        // Shown as given (a name as its node), and read back the same.
        for shown in ["simulator", "pinctrl-bcm2711:24", "/dev/gpiochip4:24"] {
            let spec: IntSpec = shown.parse().unwrap();
            assert_eq!(spec.to_string(), shown);
        }
        assert_eq!(
            "gpiochip4:24".parse::<IntSpec>().unwrap().to_string(),
            "/dev/gpiochip4:24"
        );
    }

    #[test]
    fn what_is_not_an_int_line_says_what_is() {
        for (input, says) in [
            (
                "gpiochip0",
                "\"gpiochip0\" is not an INT line: give CHIP:LINE",
            ),
            ("18", "\"18\" is not an INT line: give CHIP:LINE"),
            (
                "pinctrl-bcm2711:GPIO24",
                "\"GPIO24\" in \"pinctrl-bcm2711:GPIO24\" is not a line number",
            ),
            (
                "tegra-gpio:-1",
                "\"-1\" in \"tegra-gpio:-1\" is not a line number",
            ),
            (":24", "\":24\" names no chip"),
        ] {
            let error = input.parse::<IntSpec>().unwrap_err();
            assert!(error.starts_with(says), "{input}: {error}");
            assert!(
                error.contains("pinctrl-bcm2711:24") && error.contains("`simulator`"),
                "{input}: {error}"
            );
        }
    }

    #[test]
    fn the_simulator_line_needs_the_simulator_bus() {
        let bus: BusSpec = "/dev/i2c-1".parse().unwrap();
        let error = IntLine::open(&IntSpec::Simulator, &bus).unwrap_err();
        assert_eq!(
            error.to_string(),
            "INT_GPIO=simulator reads the simulator's INT line over its tcp:// bus, but BUS is /dev/i2c-1: set BUS=tcp://HOST:PORT, or leave INT_GPIO unset"
        );
        let bus: BusSpec = "tcp://simulator:7070".parse().unwrap();
        assert!(IntLine::open(&IntSpec::Simulator, &bus).is_ok());
    }
}
