//! The driver's one error type.

use core::fmt;

use embedded_hal::i2c;

use crate::{Address, Corruption, DEVICE_ID};

/// Everything that can go wrong talking to a Qwiic Button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error<E> {
    /// The bus failed: no acknowledge (nothing at the address, cable loose), arbitration lost,
    /// or an adapter error. The bus implementation's own error is kept.
    I2C(E),
    /// Something answered at the address, but its ID register is not 0x5D.
    WrongId {
        /// The address that was read.
        address: Address,
        /// What the ID register held.
        found: u8,
    },
    /// A reading came back impossible (see [`Corruption`]): it was not acted on.
    Corrupted(Corruption),
    /// An I2C address outside 0x08-0x77, which the firmware refuses.
    InvalidAddress(u8),
    /// The button did not move to the requested address and still answers on its old one: a
    /// closed address jumper overrides the software address. The firmware reads the jumpers
    /// when it starts and after an address write; a start with one closed makes the jumpers
    /// decide from then on (0x6F when all are open) until an address is written.
    AddressNotTaken {
        /// The address asked for.
        requested: Address,
        /// The address it still answers on, which the driver keeps using.
        kept: Address,
    },
    /// A pulsing LED setting with granularity 0 (the firmware divides by it).
    ZeroGranularity,
}

impl<E> Error<E> {
    /// True when a reading was rejected as corrupted (the device answered).
    pub fn is_corrupted(&self) -> bool {
        matches!(self, Error::Corrupted(_))
    }

    /// The bus error, if this is one.
    pub fn bus_error(&self) -> Option<&E> {
        match self {
            Error::I2C(error) => Some(error),
            _ => None,
        }
    }
}

impl<E: i2c::Error> Error<E> {
    /// True when the device did not acknowledge: absent, unplugged, or at another address.
    pub fn is_no_acknowledge(&self) -> bool {
        matches!(self, Error::I2C(error) if matches!(error.kind(), i2c::ErrorKind::NoAcknowledge(_)))
    }
}

impl<E: i2c::Error> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::I2C(error) => write!(f, "I2C bus error: {} ({error:?})", error.kind()),
            Error::WrongId { address, found } => write!(
                f,
                "no Qwiic Button at {address}: ID register read {found:#04x}, expected {DEVICE_ID:#04x}"
            ),
            Error::Corrupted(corruption) => write!(
                f,
                "a reading came back corrupted ({corruption}) and was not used: the bus mangles transfers (on a Raspberry Pi 4 or older, its I2C clock-stretching bug: use the i2c-gpio overlay or a lower bus speed)"
            ),
            Error::AddressNotTaken { requested, kept } => write!(
                f,
                "the button did not move to {requested} and still answers on {kept}: a closed address jumper overrides the software address (use the address the jumpers set; or open them, power-cycle the button, which then answers on 0x6F, and set the address again)"
            ),
            Error::InvalidAddress(address) => write!(
                f,
                "I2C address {address:#04x} is out of range: the Qwiic Button accepts 0x08 to 0x77"
            ),
            Error::ZeroGranularity => write!(f, "{}", crate::types::ZeroGranularity),
        }
    }
}

impl<E: i2c::Error> core::error::Error for Error<E> {}

impl<E> From<crate::types::InvalidAddress> for Error<E> {
    fn from(error: crate::types::InvalidAddress) -> Self {
        Error::InvalidAddress(error.0)
    }
}

impl<E> From<crate::types::ZeroGranularity> for Error<E> {
    fn from(_: crate::types::ZeroGranularity) -> Self {
        Error::ZeroGranularity
    }
}
