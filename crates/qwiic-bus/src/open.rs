//! Opening a bus from its [`BusSpec`], with errors that say what to check: a missing node
//! (enable I2C), file permissions (which group owns the node), a container runtime that does
//! not allow the device (map it as a device, not a file), a node that is not an I2C adapter.

use std::io;
use std::path::{Path, PathBuf};

use qwiic_sim::SimButton;

use crate::{Bus, BusSpec, TcpBus, TcpTimeouts};

/// Why a bus could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The device node does not exist.
    #[error(
        "{} does not exist: I2C is not enabled or this is another bus number; on the device run `sudo ./init_os.sh` (Raspberry Pi: dtparam=i2c_arm=on and the i2c-dev module), and in a container map the node as a device (compose `devices:`, IoT Edge `HostConfig.Devices`, Kubernetes: the device plugin of deploy/kubernetes/overlays/device)",
        path.display()
    )]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// File permissions: the process is not in the group that owns the node (EACCES).
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
    /// The container runtime's device cgroup refuses the node (EPERM): it was mounted as a file
    /// (a volume or a Kubernetes hostPath), not mapped as a device.
    #[error(
        "the container runtime does not allow {} (EPERM: its device cgroup refuses the node, whatever the file permissions): map it as a device (compose `devices:`, `docker run --device`, a Kubernetes device plugin), not as a volume or hostPath",
        path.display()
    )]
    DeviceNotAllowed {
        /// The path given.
        path: PathBuf,
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
    use std::os::unix::fs::FileTypeExt;

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
    let classify = |source: io::Error| classify_open_error(path, &metadata, source);
    // Open once ourselves for the precise error, then let linux-embedded-hal open it.
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(classify)?;
    linux_embedded_hal::I2cdev::new(path)
        .map(|bus| Bus::Linux(crate::linux::LinuxBus(bus)))
        .map_err(|error| classify(io::Error::from(error)))
}

#[cfg(target_os = "linux")]
fn classify_open_error(path: &Path, metadata: &std::fs::Metadata, source: io::Error) -> OpenError {
    use std::os::unix::fs::MetadataExt;
    let path = path.to_path_buf();
    match source.raw_os_error() {
        // ENOTTY: the node refuses the I2C ioctls (say /dev/null or a serial port); ENOSYS:
        // nothing here implements them (an emulator such as qemu-user).
        Some(25 | 38) => OpenError::NotADevice { path },
        Some(1) => OpenError::DeviceNotAllowed { path },
        Some(13) => OpenError::PermissionDenied {
            path,
            owner: describe_owner(metadata.gid(), metadata.mode()),
        },
        Some(2) => OpenError::NotFound { path },
        _ => OpenError::Io { path, source },
    }
}

#[cfg(not(target_os = "linux"))]
fn open_linux(path: &Path) -> Result<Bus, OpenError> {
    Err(OpenError::Unsupported {
        path: path.to_path_buf(),
    })
}

/// ", owned by group i2c (gid 998, mode 660)": the group name from /etc/group when the
/// container or host has one, else the number alone.
pub(crate) fn describe_owner(gid: u32, mode: u32) -> String {
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

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
        let metadata = std::fs::metadata("/dev/null").unwrap();
        let denied = classify_open_error(
            Path::new("/dev/i2c-1"),
            &metadata,
            io::Error::from_raw_os_error(13),
        );
        let message = denied.to_string();
        assert!(
            message.starts_with("permission denied opening /dev/i2c-1, owned by group root"),
            "{message}"
        );
        assert!(
            message.contains("usermod -aG")
                && message.contains("group_add")
                && message.contains("init_os.sh"),
            "{message}"
        );
    }

    #[test]
    fn a_device_the_runtime_refuses_is_not_a_group_problem() {
        let metadata = std::fs::metadata("/dev/null").unwrap();
        let refused = classify_open_error(
            Path::new("/dev/i2c-1"),
            &metadata,
            io::Error::from_raw_os_error(1),
        );
        let message = refused.to_string();
        assert!(matches!(refused, OpenError::DeviceNotAllowed { .. }));
        assert!(
            message.contains("EPERM")
                && message.contains("devices:")
                && message.contains("device plugin")
                && !message.contains("usermod")
                && !message.contains("group_add"),
            "{message}"
        );
    }
}
