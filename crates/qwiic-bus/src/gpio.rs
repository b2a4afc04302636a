//! The INT line on a GPIO of the board, through the GPIO character device (`/dev/gpiochipN`).
//!
//! The thin layer that only a board exercises: this machine's kernel has no GPIO simulator, so
//! what is tested here is everything around the kernel calls (finding the chip by its label,
//! and what each refusal means and what to do about it), and the line itself is verified on
//! hardware (docs/hardware.md).
//!
//! - The chip is found by its label (`pinctrl-bcm2711`, `tegra-gpio`) among the chips this
//!   process can see, because chip numbers change with the kernel and the overlays loaded; a
//!   container sees only the chip it was given.
//! - The line is requested as an input with edge detection on both edges: the board's 10 kOhm
//!   pull-up holds INT high, so no bias is asked for, which JetPack 4.6's 4.9 kernel could not
//!   give anyway (it has only the GPIO uAPI v1; gpiocdev picks v1 or v2 per chip).
//! - A wait answers what the tcp:// INT wait answers: whether the line changed since the
//!   previous wait. Events queued meanwhile are drained (at most [`DRAIN`] per wait, so a line
//!   that oscillates cannot hold the thread), and their timestamps are not used: an edge only
//!   says "go read", and the reading tells what happened.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gpiocdev::line::EdgeDetection;

use crate::open::describe_owner;

/// The consumer name the kernel shows for the line (`gpioinfo`).
const CONSUMER: &str = "button-service INT";

/// The most events one wait reads before it answers.
const DRAIN: usize = 64;

/// Why the INT line's GPIO could not be opened or waited on.
#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    /// The node does not exist.
    #[error(
        "{} does not exist: list the chips on the device with `gpiodetect` (package gpiod) or `ls /dev/gpiochip*`; in a container, map the chip as a device (docker-compose.int.yml, which `sudo ./init_os.sh --int-pin PIN` sets up)",
        path.display()
    )]
    NotFound {
        /// The node given.
        path: PathBuf,
    },
    /// No chip this process can see has the label.
    #[error(
        "no GPIO chip here is labelled {label:?} ({found}): on the device `gpiodetect` lists the labels (the 40-pin header is pinctrl-bcm2711 on a Raspberry Pi 4, pinctrl-rp1 on a Pi 5, pinctrl-bcm2835 on older Pis, tegra-gpio on a Jetson Nano); in a container, that chip must be the one mapped: run `sudo ./init_os.sh` again, which finds its node by label (a kernel update may have renumbered it) and writes INT_CHIP for docker-compose.int.yml"
    )]
    NoSuchLabel {
        /// The label given.
        label: String,
        /// "found /dev/gpiochip0 (pinctrl-bcm2711)", or why none.
        found: String,
    },
    /// File permissions: the process is not in the group that owns the node (EACCES).
    #[error(
        "permission denied opening {}{owner}: add the user to that group (`sudo usermod -aG <group> $USER`, then log in again), or in a container give that group by number (GPIO_GID for docker-compose.int.yml); `sudo ./init_os.sh --int-pin PIN` sets both up",
        path.display()
    )]
    PermissionDenied {
        /// The node.
        path: PathBuf,
        /// ", owned by group gpio (gid 997, mode 660)", or empty if unknown.
        owner: String,
    },
    /// The container runtime's device cgroup refuses the node (EPERM).
    #[error(
        "the container runtime does not allow {} (EPERM: its device cgroup refuses the node, whatever the file permissions): map it as a device (compose `devices:`, `docker run --device`), not as a volume or hostPath",
        path.display()
    )]
    DeviceNotAllowed {
        /// The node.
        path: PathBuf,
    },
    /// The node is not a GPIO chip.
    #[error(
        "{} is not a GPIO chip (a /dev/gpiochipN node): give INT_GPIO as CHIP:LINE with the chip by label, name or path; in a container, keep the node's name when mapping it (/dev/gpiochip0:/dev/gpiochip0)",
        path.display()
    )]
    NotAChip {
        /// The node.
        path: PathBuf,
    },
    /// The chip has fewer lines.
    #[error(
        "{chip} has lines 0 to {last}, not {line}: the line is the GPIO's offset on its chip (on a Raspberry Pi the BCM number, header pin 18 is 24; on a Jetson Nano header pin 18 is tegra-gpio line 15); `sudo ./init_os.sh --int-pin PIN` finds it from the header pin"
    )]
    NoSuchLine {
        /// "/dev/gpiochip0 (pinctrl-bcm2711)".
        chip: String,
        /// The line asked for.
        line: u32,
        /// The chip's last line.
        last: u32,
    },
    /// Another process holds the line (EBUSY).
    #[error(
        "line {line} of {chip} is in use by {consumer}: another program holds it (a second button-service, a script using RPi.GPIO, Jetson.GPIO or gpiomon; \"sysfs\": exported under /sys/class/gpio, released by writing its global number to /sys/class/gpio/unexport): stop it or wire INT to another pin; `gpioinfo` shows which program holds which line"
    )]
    Busy {
        /// "/dev/gpiochip0 (pinctrl-bcm2711)".
        chip: String,
        /// The line.
        line: u32,
        /// "\"gpiomon\"", or "another process" when the kernel does not say.
        consumer: String,
    },
    /// The chip has no interrupt for the line (ENXIO from uAPI v2, ENODEV from v1).
    #[error(
        "line {line} of {chip} cannot report edges (its chip gives it no interrupt): wire INT to another GPIO of the header"
    )]
    NoInterrupt {
        /// "/dev/gpiochip0 (pinctrl-bcm2711)".
        chip: String,
        /// The line.
        line: u32,
    },
    /// Any other refusal.
    #[error("cannot watch line {line} of {chip}: {source}")]
    Other {
        /// The chip as far as it is known.
        chip: String,
        /// The line.
        line: u32,
        /// What the kernel or gpiocdev said.
        source: gpiocdev::Error,
    },
    /// A wait failed.
    #[error("waiting for an edge on line {line} of {chip} failed: {source}")]
    Wait {
        /// "/dev/gpiochip0 (pinctrl-bcm2711)".
        chip: String,
        /// The line.
        line: u32,
        /// What the kernel said.
        source: gpiocdev::Error,
    },
}

/// A GPIO line requested for edges, ready to wait on.
pub struct GpioLine {
    request: gpiocdev::Request,
    chip: String,
    line: u32,
}

impl fmt::Debug for GpioLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GpioLine({} line {})", self.chip, self.line)
    }
}

impl GpioLine {
    /// Checks that the chip at `path` has `line`, and requests that line for both edges.
    pub fn open(path: &Path, line: u32) -> Result<GpioLine, GpioError> {
        let path = path.to_path_buf();
        let (opened, metadata) = open_chip(&path)?;
        let info = opened
            .info()
            .map_err(|_| GpioError::NotAChip { path: path.clone() })?;
        let chip = format!("{} ({})", path.display(), info.label);
        check_line(&chip, line, info.num_lines)?;
        let request = gpiocdev::Request::builder()
            .on_chip(&path)
            .with_consumer(CONSUMER)
            .with_line(line)
            .with_edge_detection(EdgeDetection::BothEdges)
            .request()
            .map_err(|source| {
                let holder = || {
                    opened
                        .line_info(line)
                        .ok()
                        .map(|info| info.consumer)
                        .filter(|consumer| !consumer.is_empty())
                };
                refused(&path, &metadata, &chip, line, source, holder)
            })?;
        Ok(GpioLine {
            request,
            chip,
            line,
        })
    }

    /// Waits up to `timeout` for the line to change (either edge); true when it changed since
    /// the previous wait returned.
    pub fn wait_edge(&mut self, timeout: Duration) -> Result<bool, GpioError> {
        let failed = |source| GpioError::Wait {
            chip: self.chip.clone(),
            line: self.line,
            source,
        };
        match self.request.wait_edge_event(timeout) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            // A signal for another thread landed here (ppoll is never restarted): a short
            // wait, which the caller's loop simply repeats.
            Err(error) if errno_of(&error) == Some(EINTR) => return Ok(false),
            Err(error) => return Err(failed(error)),
        }
        for _ in 0..DRAIN {
            if !self.request.has_edge_event().map_err(failed)? {
                break;
            }
            self.request.read_edge_event().map_err(failed)?;
        }
        Ok(true)
    }
}

/// The node of the chip labelled `label`, among the chips this process can see.
pub fn find_by_label(label: &str) -> Result<PathBuf, GpioError> {
    pick_by_label(label, &visible_chips())
}

/// The chips this process can see, each with its label or why it could not be read.
fn visible_chips() -> Vec<(PathBuf, Result<String, String>)> {
    let Ok(paths) = gpiocdev::chip::chips() else {
        return Vec::new();
    };
    paths
        .into_iter()
        .map(|path| {
            let label = match open_chip(&path) {
                Ok((chip, _)) => chip
                    .info()
                    .map(|info| info.label)
                    .map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            (path, label)
        })
        .collect()
}

/// The chip among `found` whose label is `label`.
fn pick_by_label(
    label: &str,
    found: &[(PathBuf, Result<String, String>)],
) -> Result<PathBuf, GpioError> {
    if let Some((path, _)) = found
        .iter()
        .find(|(_, found)| found.as_deref() == Ok(label))
    {
        return Ok(path.clone());
    }
    let found = if found.is_empty() {
        "this process sees no /dev/gpiochip* at all".to_owned()
    } else {
        let chips: Vec<String> = found
            .iter()
            .map(|(path, label)| match label {
                Ok(label) => format!("{} ({label})", path.display()),
                Err(why) => format!("{} (unreadable: {why})", path.display()),
            })
            .collect();
        format!("found {}", chips.join(", "))
    };
    Err(GpioError::NoSuchLabel {
        label: label.to_owned(),
        found,
    })
}

/// Opens the node as a GPIO chip, with the precise reason when it cannot be.
fn open_chip(path: &Path) -> Result<(gpiocdev::Chip, fs::Metadata), GpioError> {
    let metadata = fs::metadata(path).map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => GpioError::NotFound {
            path: path.to_path_buf(),
        },
        _ => node_refused(path, None, error.raw_os_error()),
    })?;
    if !metadata.file_type().is_char_device() {
        return Err(GpioError::NotAChip {
            path: path.to_path_buf(),
        });
    }
    // Opened once ourselves for the errno (gpiocdev folds it into its own error), then by
    // gpiocdev, which also checks that the node is a GPIO chip.
    fs::File::open(path)
        .map_err(|error| node_refused(path, Some(&metadata), error.raw_os_error()))?;
    let chip = gpiocdev::Chip::from_path(path).map_err(|_| GpioError::NotAChip {
        path: path.to_path_buf(),
    })?;
    Ok((chip, metadata))
}

/// What an errno opening the node means.
fn node_refused(path: &Path, metadata: Option<&fs::Metadata>, errno: Option<i32>) -> GpioError {
    let path = path.to_path_buf();
    match errno {
        Some(EACCES) => GpioError::PermissionDenied {
            owner: metadata.map_or_else(String::new, |metadata| {
                describe_owner(metadata.gid(), metadata.mode())
            }),
            path,
        },
        Some(EPERM) => GpioError::DeviceNotAllowed { path },
        Some(ENOENT) => GpioError::NotFound { path },
        _ => GpioError::NotAChip { path },
    }
}

/// What a refused line request means; `holder` asks the kernel who holds the line.
fn refused(
    path: &Path,
    metadata: &fs::Metadata,
    chip: &str,
    line: u32,
    source: gpiocdev::Error,
    holder: impl FnOnce() -> Option<String>,
) -> GpioError {
    let chip = chip.to_owned();
    match errno_of(&source) {
        Some(EBUSY) => GpioError::Busy {
            chip,
            line,
            consumer: holder()
                .map_or_else(|| "another process".to_owned(), |name| format!("{name:?}")),
        },
        // uAPI v2 says ENXIO; v1 (JetPack 4.6's 4.9 kernel) says ENODEV.
        Some(ENXIO | ENODEV) => GpioError::NoInterrupt { chip, line },
        Some(errno @ (EACCES | EPERM)) => node_refused(path, Some(metadata), Some(errno)),
        _ => GpioError::Other { chip, line, source },
    }
}

/// Refuses a line the chip does not have.
fn check_line(chip: &str, line: u32, lines: u32) -> Result<(), GpioError> {
    match lines.checked_sub(1) {
        Some(last) if line <= last => Ok(()),
        last => Err(GpioError::NoSuchLine {
            chip: chip.to_owned(),
            line,
            last: last.unwrap_or(0),
        }),
    }
}

/// The kernel's error number inside a gpiocdev error, when there is one.
fn errno_of(error: &gpiocdev::Error) -> Option<i32> {
    match error {
        gpiocdev::Error::Os(errno) => Some(errno.0),
        gpiocdev::Error::Uapi(_, gpiocdev_uapi::Error::Os(errno)) => Some(errno.0),
        _ => None,
    }
}

// Linux's error numbers (the same on x86_64, arm64 and armv7).
const EPERM: i32 = 1;
const ENOENT: i32 = 2;
const EINTR: i32 = 4;
const ENXIO: i32 = 6;
const EACCES: i32 = 13;
const EBUSY: i32 = 16;
const ENODEV: i32 = 19;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    fn uapi_error(errno: i32) -> gpiocdev::Error {
        gpiocdev::Error::Uapi(
            gpiocdev::UapiCall::GetLine,
            gpiocdev_uapi::Error::Os(gpiocdev_uapi::Errno(errno)),
        )
    }

    fn refusal(errno: i32, holder: Option<&str>) -> String {
        let metadata = fs::metadata("/dev/null").unwrap();
        refused(
            Path::new("/dev/gpiochip0"),
            &metadata,
            "/dev/gpiochip0 (pinctrl-bcm2711)",
            24,
            uapi_error(errno),
            || holder.map(str::to_owned),
        )
        .to_string()
    }

    #[test]
    fn a_line_held_by_another_program_names_it_and_says_how_to_find_it() {
        let message = refusal(EBUSY, Some("gpiomon"));
        assert!(
            message.starts_with(
                "line 24 of /dev/gpiochip0 (pinctrl-bcm2711) is in use by \"gpiomon\": "
            ),
            "{message}"
        );
        assert!(message.contains("`gpioinfo`"), "{message}");
        let message = refusal(EBUSY, None);
        assert!(message.contains("in use by another process"), "{message}");
    }

    #[test]
    fn a_line_without_an_interrupt_says_to_wire_another_pin_under_either_uapi() {
        for errno in [ENXIO, ENODEV] {
            let message = refusal(errno, None);
            assert!(
                message.contains("cannot report edges")
                    && message.contains("wire INT to another GPIO"),
                "{message}"
            );
        }
    }

    #[test]
    fn permission_errors_name_the_group_and_the_setting_that_gives_it() {
        let message = refusal(EACCES, None);
        assert!(
            message.starts_with("permission denied opening /dev/gpiochip0, owned by group root"),
            "{message}"
        );
        assert!(
            message.contains("usermod -aG")
                && message.contains("GPIO_GID")
                && message.contains("init_os.sh --int-pin"),
            "{message}"
        );
        let message = refusal(EPERM, None);
        assert!(
            message.contains("EPERM")
                && message.contains("devices:")
                && !message.contains("usermod"),
            "{message}"
        );
    }

    #[test]
    fn other_refusals_keep_what_the_kernel_said() {
        let message = refusal(22, None);
        assert!(
            message.starts_with(
                "cannot watch line 24 of /dev/gpiochip0 (pinctrl-bcm2711): uAPI get_line returned: "
            ),
            "{message}"
        );
    }

    #[test]
    fn a_chip_is_found_by_its_label_whatever_its_number() {
        let found = vec![
            (
                PathBuf::from("/dev/gpiochip0"),
                Ok("raspberrypi-exp-gpio".to_owned()),
            ),
            (
                PathBuf::from("/dev/gpiochip1"),
                Err("permission denied".to_owned()),
            ),
            (
                PathBuf::from("/dev/gpiochip4"),
                Ok("pinctrl-rp1".to_owned()),
            ),
        ];
        assert_eq!(
            pick_by_label("pinctrl-rp1", &found).unwrap(),
            PathBuf::from("/dev/gpiochip4")
        );
        let message = pick_by_label("tegra-gpio", &found).unwrap_err().to_string();
        assert!(
            message.starts_with(
                "no GPIO chip here is labelled \"tegra-gpio\" (found /dev/gpiochip0 (raspberrypi-exp-gpio), /dev/gpiochip1 (unreadable: permission denied), /dev/gpiochip4 (pinctrl-rp1)): "
            ),
            "{message}"
        );
        assert!(message.contains("`gpiodetect`"), "{message}");
    }

    #[test]
    fn no_chip_at_all_says_the_container_needs_it_mapped() {
        // This machine has no GPIO chip: the lookup finds nothing, as in a container given none.
        let message = find_by_label("pinctrl-bcm2711").unwrap_err().to_string();
        assert!(
            message.starts_with(
                "no GPIO chip here is labelled \"pinctrl-bcm2711\" (this process sees no /dev/gpiochip* at all): "
            ),
            "{message}"
        );
        assert!(message.contains("docker-compose.int.yml"), "{message}");
    }

    #[test]
    fn a_missing_node_and_a_node_that_is_not_a_chip_are_told_apart() {
        let missing = GpioLine::open(Path::new("/dev/gpiochip99"), 24).unwrap_err();
        assert!(matches!(missing, GpioError::NotFound { .. }));
        assert!(
            missing
                .to_string()
                .starts_with("/dev/gpiochip99 does not exist: list the chips"),
            "{missing}"
        );
        let null = GpioLine::open(Path::new("/dev/null"), 24).unwrap_err();
        assert!(
            null.to_string()
                .starts_with("/dev/null is not a GPIO chip (a /dev/gpiochipN node): "),
            "{null}"
        );
        let file = GpioLine::open(Path::new("/etc/hostname"), 24).unwrap_err();
        assert!(matches!(file, GpioError::NotAChip { .. }), "{file}");
    }

    #[test]
    fn a_line_beyond_the_chip_says_what_the_line_number_is() {
        assert!(check_line("/dev/gpiochip0 (tegra-gpio)", 255, 256).is_ok());
        let message = check_line("/dev/gpiochip0 (tegra-gpio)", 256, 256)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("/dev/gpiochip0 (tegra-gpio) has lines 0 to 255, not 256: "),
            "{message}"
        );
        assert!(message.contains("header pin 18 is 24"), "{message}");
        assert!(check_line("x", 0, 0).is_err());
    }
}
