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
//! Where it can be read today: `simulator`, the simulator's line over its `tcp://` bus (an INT
//! wait, see [`wire`](crate::wire)). A GPIO of the board (the GPIO character device) is the
//! next source; until then a board is polled.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::{BusSpec, TcpBus, TcpBusError, TcpTimeouts};

/// Where the INT line is read (`--int-gpio`, `INT_GPIO`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntSpec {
    /// The simulator's INT line, over the `tcp://` bus.
    Simulator,
}

/// What `--int-gpio` accepts, for error messages.
pub const INT_ACCEPTED: &str = "`simulator` (the simulator's INT line, with a tcp:// BUS)";

impl FromStr for IntSpec {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input.trim() {
            "simulator" => Ok(IntSpec::Simulator),
            other => Err(format!(
                "{other:?} is not an INT line this version can read: give {INT_ACCEPTED}; a board's GPIO is not supported yet, so leave it unset there (the button is polled)"
            )),
        }
    }
}

impl fmt::Display for IntSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntSpec::Simulator => f.write_str("simulator"),
        }
    }
}

/// An INT line, ready to wait on.
#[derive(Debug)]
pub enum IntLine {
    /// The simulator's, on a connection of its own.
    Simulator(TcpBus),
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
}

impl IntLine {
    /// Opens the line `spec` names, beside the button's `bus`.
    pub fn open(spec: &IntSpec, bus: &BusSpec) -> Result<IntLine, IntError> {
        match (spec, bus) {
            (IntSpec::Simulator, BusSpec::Tcp { host, port }) => Ok(IntLine::Simulator(
                TcpBus::new(host.clone(), *port, TcpTimeouts::default()),
            )),
            (IntSpec::Simulator, other) => Err(IntError::NotTheSimulator(other.clone())),
        }
    }

    /// Waits up to `timeout` (at most [`wire::MAX_INT_WAIT`](crate::wire::MAX_INT_WAIT)) for
    /// the line to change (either edge); true when it changed since the previous wait
    /// returned.
    pub fn wait_edge(&mut self, timeout: Duration) -> Result<bool, IntError> {
        match self {
            IntLine::Simulator(bus) => Ok(bus.wait_int_edge(timeout)?),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn only_the_simulator_line_is_taken_and_others_say_what_is() {
        assert_eq!("simulator".parse::<IntSpec>().unwrap(), IntSpec::Simulator);
        let error = "gpiochip0:24".parse::<IntSpec>().unwrap_err();
        assert!(
            error.contains("\"gpiochip0:24\" is not an INT line"),
            "{error}"
        );
        assert!(
            error.contains("`simulator`") && error.contains("polled"),
            "{error}"
        );
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
