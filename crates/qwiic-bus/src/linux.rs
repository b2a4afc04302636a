//! A Linux i2c-dev bus whose errors say what the kernel said.
//!
//! linux-embedded-hal 0.5 maps only ENXIO and ENODEV to "no acknowledge", but the Raspberry Pi's
//! i2c-bcm2835 and the Jetson's i2c-tegra answer a NACK with EREMOTEIO: there, a missing button
//! would read as an unknown error, and every decision built on the kind (retries, "no Qwiic
//! Button answers", health messages) would never fire. So the raw errno is mapped here, after
//! the kernel's i2c fault codes and what those drivers return. The bit-banged i2c-gpio bus
//! (i2c-algo-bit, which the README recommends on a Raspberry Pi) answers a missing address with
//! ENXIO, a data byte not acknowledged with EIO, and SCL held low with ETIMEDOUT. The README's
//! table of them is checked against this file by `tests/readme.rs`.

use std::fmt;
use std::io;

use embedded_hal::i2c::{self, ErrorKind, I2c, NoAcknowledgeSource, Operation};
use linux_embedded_hal::I2cdev;
use linux_embedded_hal::i2cdev::linux::LinuxI2CError;

/// An opened `/dev/i2c-N`; every transaction is one `I2C_RDWR` ioctl.
pub struct LinuxBus(pub(crate) I2cdev);

impl fmt::Debug for LinuxBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinuxBus")
    }
}

/// An error from the i2c-dev node, with its errno.
#[derive(Debug)]
pub struct LinuxError {
    errno: Option<i32>,
    source: io::Error,
}

impl LinuxError {
    /// The error an adapter reports with `errno`.
    pub fn from_errno(errno: i32) -> Self {
        LinuxError {
            errno: Some(errno),
            source: io::Error::from_raw_os_error(errno),
        }
    }

    /// The kernel's error number, when there is one.
    pub fn errno(&self) -> Option<i32> {
        self.errno
    }
}

impl From<linux_embedded_hal::I2CError> for LinuxError {
    fn from(error: linux_embedded_hal::I2CError) -> Self {
        let errno = match error.inner() {
            LinuxI2CError::Errno(errno) => Some(*errno),
            LinuxI2CError::Io(error) => error.raw_os_error(),
        };
        let source = match errno {
            Some(errno) => io::Error::from_raw_os_error(errno),
            None => io::Error::other(error.to_string()),
        };
        LinuxError { errno, source }
    }
}

impl fmt::Display for LinuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self
            .errno
            .and_then(|errno| Some((errno, errno_name(errno)?)))
        {
            Some((errno, (name, meaning))) => write!(f, "{name} (errno {errno}): {meaning}"),
            None => write!(f, "{}", self.source),
        }
    }
}

impl std::error::Error for LinuxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl i2c::Error for LinuxError {
    fn kind(&self) -> ErrorKind {
        self.errno.map_or(ErrorKind::Other, kind_of_errno)
    }
}

/// Linux's error numbers that I2C adapters return (the same on x86_64, arm64 and armv7).
mod errno {
    pub const EIO: i32 = 5;
    pub const ENXIO: i32 = 6;
    pub const EAGAIN: i32 = 11;
    pub const ENOMEM: i32 = 12;
    pub const EBUSY: i32 = 16;
    pub const ENODEV: i32 = 19;
    pub const EINVAL: i32 = 22;
    pub const EPROTO: i32 = 71;
    pub const EBADMSG: i32 = 74;
    pub const EOVERFLOW: i32 = 75;
    pub const EOPNOTSUPP: i32 = 95;
    pub const ESHUTDOWN: i32 = 108;
    pub const ETIMEDOUT: i32 = 110;
    pub const EREMOTEIO: i32 = 121;
}

/// What an errno from an I2C transfer means.
pub fn kind_of_errno(errno: i32) -> ErrorKind {
    use errno::*;
    match errno {
        // The address was not acknowledged (the kernel's documented code).
        ENXIO => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
        // i2c-bcm2835 and i2c-tegra return EREMOTEIO for any NACK; some drivers ENODEV.
        EREMOTEIO | ENODEV => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown),
        // A transfer that broke off: a clock-stretch timeout, noise, a stuck bus.
        ETIMEDOUT | EIO | EBUSY => ErrorKind::Bus,
        EAGAIN => ErrorKind::ArbitrationLoss,
        _ => ErrorKind::Other,
    }
}

/// The symbolic name of an errno, as `errno(3)` lists it, and what it means on an I2C bus (the
/// same words whatever the C library, which words its own messages differently).
pub fn errno_name(errno: i32) -> Option<(&'static str, &'static str)> {
    use errno::*;
    Some(match errno {
        EIO => (
            "EIO",
            "input/output error (on i2c-gpio: a data byte was not acknowledged)",
        ),
        ENXIO => ("ENXIO", "no device acknowledged the address"),
        EAGAIN => ("EAGAIN", "arbitration lost to another master"),
        ENOMEM => ("ENOMEM", "out of memory"),
        EBUSY => ("EBUSY", "the bus stayed busy"),
        ENODEV => ("ENODEV", "no such device"),
        EINVAL => ("EINVAL", "invalid argument"),
        EPROTO => ("EPROTO", "protocol error"),
        EBADMSG => ("EBADMSG", "bad message checksum"),
        EOVERFLOW => ("EOVERFLOW", "too much data"),
        EOPNOTSUPP => ("EOPNOTSUPP", "the adapter does not support this transfer"),
        ESHUTDOWN => ("ESHUTDOWN", "the adapter is suspended"),
        ETIMEDOUT => (
            "ETIMEDOUT",
            "the transfer timed out (SCL held low: a stuck bus, or a clock stretch past the adapter's limit)",
        ),
        EREMOTEIO => ("EREMOTEIO", "not acknowledged (the address or a data byte)"),
        _ => return None,
    })
}

impl i2c::ErrorType for LinuxBus {
    type Error = LinuxError;
}

impl I2c for LinuxBus {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.0
            .transaction(address, operations)
            .map_err(LinuxError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal::i2c::Error as _;

    fn error(errno: i32) -> LinuxError {
        LinuxError::from(linux_embedded_hal::I2CError::from(LinuxI2CError::Io(
            io::Error::from_raw_os_error(errno),
        )))
    }

    #[test]
    fn every_nack_errno_is_no_acknowledge() {
        assert_eq!(
            error(6).kind(),
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address),
            "ENXIO"
        );
        for (errno, name) in [(121, "EREMOTEIO"), (19, "ENODEV")] {
            assert_eq!(
                error(errno).kind(),
                ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown),
                "{name}"
            );
        }
        // What the services see from a Raspberry Pi or a Jetson with no button.
        assert_eq!(
            error(121).to_string(),
            "EREMOTEIO (errno 121): not acknowledged (the address or a data byte)"
        );
    }

    #[test]
    fn broken_transfers_are_bus_errors_and_lost_arbitration_is_its_own() {
        for (errno, name) in [(110, "ETIMEDOUT"), (5, "EIO"), (16, "EBUSY")] {
            assert_eq!(error(errno).kind(), ErrorKind::Bus, "{name}");
            assert!(error(errno).to_string().starts_with(name));
        }
        assert_eq!(error(11).kind(), ErrorKind::ArbitrationLoss);
    }

    #[test]
    fn anything_else_is_other_and_named() {
        for (errno, name) in [
            (95, "EOPNOTSUPP"),
            (22, "EINVAL"),
            (71, "EPROTO"),
            (108, "ESHUTDOWN"),
        ] {
            let error = error(errno);
            assert_eq!(error.kind(), ErrorKind::Other, "{name}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("{name} (errno {errno}): ")),
                "{error}"
            );
        }
        let nix_style = LinuxError::from(linux_embedded_hal::I2CError::from(LinuxI2CError::Errno(
            121,
        )));
        assert_eq!(nix_style.errno(), Some(121));
        assert_eq!(
            nix_style.kind(),
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown)
        );
    }
}
