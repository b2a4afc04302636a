//! [`Bus`]: an opened bus of any kind the services take, with one error type whose kinds mean
//! the same on each (the Linux errno mapping is in [`linux`](crate::linux)).

use std::fmt;

use embedded_hal::i2c::{self, ErrorKind, I2c, Operation};
use qwiic_sim::{SimButton, SimError};

#[cfg(target_os = "linux")]
use crate::linux;
use crate::tcp::{TcpBus, TcpBusError};

/// An opened bus of any supported kind.
pub enum Bus {
    /// A Linux i2c-dev node.
    #[cfg(target_os = "linux")]
    Linux(linux::LinuxBus),
    /// An in-process simulated button; the handle also presses it.
    Sim(SimButton),
    /// The simulator server.
    Tcp(TcpBus),
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(target_os = "linux")]
            Bus::Linux(bus) => f.debug_tuple("Bus::Linux").field(bus).finish(),
            Bus::Sim(sim) => f.debug_tuple("Bus::Sim").field(sim).finish(),
            Bus::Tcp(tcp) => f.debug_tuple("Bus::Tcp").field(tcp).finish(),
        }
    }
}

/// An error from any kind of [`Bus`].
#[derive(Debug)]
pub enum BusError {
    /// From the Linux i2c-dev node.
    #[cfg(target_os = "linux")]
    Linux(linux::LinuxError),
    /// From the in-process simulator.
    Sim(SimError),
    /// From the simulator server connection.
    Tcp(TcpBusError),
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(target_os = "linux")]
            BusError::Linux(error) => write!(f, "{error}"),
            BusError::Sim(error) => write!(f, "{error}"),
            BusError::Tcp(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for BusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(target_os = "linux")]
            BusError::Linux(error) => std::error::Error::source(error),
            BusError::Tcp(error) => std::error::Error::source(error),
            BusError::Sim(_) => None,
        }
    }
}

impl i2c::Error for BusError {
    fn kind(&self) -> ErrorKind {
        match self {
            #[cfg(target_os = "linux")]
            BusError::Linux(error) => error.kind(),
            BusError::Sim(error) => error.kind(),
            BusError::Tcp(error) => error.kind(),
        }
    }
}

impl i2c::ErrorType for Bus {
    type Error = BusError;
}

impl I2c for Bus {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        match self {
            #[cfg(target_os = "linux")]
            Bus::Linux(bus) => bus
                .transaction(address, operations)
                .map_err(BusError::Linux),
            Bus::Sim(bus) => bus.transaction(address, operations).map_err(BusError::Sim),
            Bus::Tcp(bus) => bus.transaction(address, operations).map_err(BusError::Tcp),
        }
    }
}
