//! One way, shared by both services, to reach the Qwiic Button's bus from a string given by flag
//! or env var:
//!
//! - `/dev/i2c-1` (any absolute path): a Linux i2c-dev node through linux-embedded-hal, whose
//!   `write_read` is one `I2C_RDWR` ioctl and so atomic across processes;
//! - `sim`: an in-process simulated button ([`qwiic_sim::SimButton`]);
//! - `tcp://host:port`: the simulator server, shared by several containers ([`wire`] defines
//!   the protocol, [`server`] serves it).
//!
//! Errors name what to check: a missing node (enable I2C / run init_os.sh), a permission
//! problem (which group owns the node), an unreachable simulator, a wrong ID.
#![deny(unsafe_code, missing_docs)]

pub mod server;
mod spec;
pub mod tcp;
pub mod wire;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use embedded_hal::i2c::{self, ErrorKind, I2c, Operation};
use qwiic_button::{Address, QwiicButton};
use qwiic_sim::{SimButton, SimError};

pub use spec::{ACCEPTED, BusSpec, BusSpecError};
pub use tcp::{TcpBus, TcpBusError, TcpTimeouts};

/// An opened bus of any supported kind.
pub enum Bus {
    /// A Linux i2c-dev node.
    #[cfg(target_os = "linux")]
    Linux(linux_embedded_hal::I2cdev),
    /// An in-process simulated button; the handle also presses it.
    Sim(SimButton),
    /// The simulator server.
    Tcp(TcpBus),
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(target_os = "linux")]
            Bus::Linux(_) => f.write_str("Bus::Linux"),
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
    Linux(linux_embedded_hal::I2CError),
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
            BusError::Tcp(error) => std::error::Error::source(error),
            _ => None,
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

/// Why a bus could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The device node does not exist.
    #[error(
        "{} does not exist: I2C is not enabled or this is another bus number; on the device run `sudo ./init_os.sh` (Raspberry Pi: dtparam=i2c_arm=on and the i2c-dev module), and in a container map the node with `devices:`",
        path.display()
    )]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The process may not open the node.
    #[error(
        "permission denied opening {}{owner}: add the user to that group (`sudo usermod -aG <group> $USER`, then log in again), or in a container add the group by number (compose `group_add`); init_os.sh sets both up",
        path.display()
    )]
    PermissionDenied {
        /// The path given.
        path: PathBuf,
        /// ", owned by group i2c (gid 998)", or empty if unknown.
        owner: String,
    },
    /// The path is not an i2c-dev character device.
    #[error("{} is not an i2c-dev device (an I2C adapter node); give a path such as /dev/i2c-1, and list them with `ls /dev/i2c-*`", path.display())]
    NotADevice {
        /// The path given.
        path: PathBuf,
    },
    /// Any other failure opening the node.
    #[error("cannot open {}: {source}", path.display())]
    Io {
        /// The path given.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// i2c-dev buses exist only on Linux.
    #[error("{} is an i2c-dev path, which only Linux has; use `sim` or tcp://HOST:PORT here", path.display())]
    Unsupported {
        /// The path given.
        path: PathBuf,
    },
}

impl BusSpec {
    /// Opens the bus. A `tcp://` bus connects lazily, so a simulator that is not up yet is not
    /// an error here: the first transaction reports it, and later ones reconnect.
    pub fn open(&self) -> Result<Bus, OpenError> {
        match self {
            BusSpec::Linux(path) => open_linux(path),
            BusSpec::Sim => Ok(Bus::Sim(SimButton::new())),
            BusSpec::Tcp { host, port } => Ok(Bus::Tcp(TcpBus::new(
                host.clone(),
                *port,
                TcpTimeouts::default(),
            ))),
        }
    }
}

#[cfg(target_os = "linux")]
fn open_linux(path: &Path) -> Result<Bus, OpenError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    let path_buf = path.to_path_buf();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(OpenError::NotFound { path: path_buf });
        }
        Err(source) => {
            return Err(OpenError::Io {
                path: path_buf,
                source,
            });
        }
    };
    if !metadata.file_type().is_char_device() {
        return Err(OpenError::NotADevice { path: path_buf });
    }
    let classify = |source: io::Error| match source.kind() {
        // ENOTTY: the node refuses the I2C ioctls (say /dev/null or a serial port); ENOSYS:
        // nothing here implements them (an emulator such as qemu-user).
        _ if matches!(source.raw_os_error(), Some(25 | 38)) => OpenError::NotADevice {
            path: path.to_path_buf(),
        },
        io::ErrorKind::PermissionDenied => OpenError::PermissionDenied {
            path: path.to_path_buf(),
            owner: describe_owner(metadata.gid(), metadata.mode()),
        },
        io::ErrorKind::NotFound => OpenError::NotFound {
            path: path.to_path_buf(),
        },
        _ => OpenError::Io {
            path: path.to_path_buf(),
            source,
        },
    };
    // Open once ourselves for a precise io::ErrorKind, then let linux-embedded-hal open it.
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(classify)?;
    linux_embedded_hal::I2cdev::new(path)
        .map(Bus::Linux)
        .map_err(|error| classify(io::Error::from(error)))
}

#[cfg(not(target_os = "linux"))]
fn open_linux(path: &Path) -> Result<Bus, OpenError> {
    Err(OpenError::Unsupported {
        path: path.to_path_buf(),
    })
}

/// ", owned by group i2c (gid 998, mode 660)": the group name from /etc/group when the
/// container or host has one, else the number alone.
fn describe_owner(gid: u32, mode: u32) -> String {
    let name = std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|groups| {
            groups.lines().find_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let id: u32 = fields.nth(1)?.parse().ok()?;
                (id == gid).then(|| name.to_owned())
            })
        });
    let mode = mode & 0o777;
    match name {
        Some(name) => format!(", owned by group {name} (gid {gid}, mode {mode:o})"),
        None => format!(", owned by gid {gid} (mode {mode:o})"),
    }
}

/// A driver error in context: which bus, which address, and what to check.
#[derive(Debug)]
pub struct DeviceError {
    /// The bus, as given.
    pub bus: BusSpec,
    /// The button's address.
    pub address: Address,
    /// The driver's error.
    pub error: qwiic_button::Error<BusError>,
}

impl DeviceError {
    /// Puts a driver error in context.
    pub fn new(bus: &BusSpec, address: Address, error: qwiic_button::Error<BusError>) -> Self {
        DeviceError {
            bus: bus.clone(),
            address,
            error,
        }
    }

    /// True when the device did not answer at all (absent, unplugged, simulator down).
    pub fn is_absent(&self) -> bool {
        match &self.error {
            qwiic_button::Error::I2C(BusError::Tcp(
                TcpBusError::Connect { .. } | TcpBusError::Io { .. },
            )) => true,
            error => error.is_no_acknowledge(),
        }
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (bus, address, hint) = (&self.bus, self.address, self.bus.hint());
        match &self.error {
            qwiic_button::Error::WrongId { found, .. } => write!(
                f,
                "no Qwiic Button at {address} on {bus}: ID register read {found:#04x}, expected {:#04x}; {hint}",
                qwiic_button::DEVICE_ID
            ),
            qwiic_button::Error::I2C(BusError::Tcp(error)) => {
                write!(f, "no Qwiic Button at {address} on {bus}: {error}")
            }
            error if error.is_no_acknowledge() => write!(
                f,
                "no Qwiic Button answers at {address} on {bus} (no acknowledge); {hint}"
            ),
            error => write!(f, "Qwiic Button at {address} on {bus}: {error}"),
        }
    }
}

impl std::error::Error for DeviceError {}

/// Opens `bus` and checks that a Qwiic Button answers at `address`, returning the driver and
/// the firmware version. Older firmware than 1.3 is accepted; log its warning yourself with
/// [`qwiic_button::FirmwareVersion::pops_reliably`].
pub fn connect(
    bus: &BusSpec,
    address: Address,
) -> Result<(QwiicButton<Bus>, qwiic_button::FirmwareVersion), ConnectError> {
    let mut button = QwiicButton::new(bus.open()?, address);
    let firmware = button
        .check_identity()
        .map_err(|error| DeviceError::new(bus, address, error))?;
    Ok((button, firmware))
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The bus could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The bus opened but no Qwiic Button answered.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn permission_errors_name_the_group_and_what_to_do() {
        // gid 0 is "root" in every /etc/group; a gid nobody has is shown by number.
        assert_eq!(
            describe_owner(0, 0o20660),
            ", owned by group root (gid 0, mode 660)"
        );
        assert_eq!(
            describe_owner(4_000_000, 0o660),
            ", owned by gid 4000000 (mode 660)"
        );
        let error = OpenError::PermissionDenied {
            path: "/dev/i2c-1".into(),
            owner: describe_owner(0, 0o660),
        };
        let message = error.to_string();
        assert!(
            message.starts_with(
                "permission denied opening /dev/i2c-1, owned by group root (gid 0, mode 660)"
            ),
            "{message}"
        );
        assert!(
            message.contains("usermod -aG")
                && message.contains("group_add")
                && message.contains("init_os.sh"),
            "{message}"
        );
    }
}
