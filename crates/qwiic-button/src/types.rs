//! Values read from and written to the device.

use core::fmt;

/// A Qwiic Button's 7-bit I2C address, checked to be one the firmware accepts (0x08-0x77).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(u8);

/// An address outside 0x08-0x77.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidAddress(pub u8);

impl fmt::Display for InvalidAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "I2C address {:#04x} is out of range: the Qwiic Button accepts 0x08 to 0x77",
            self.0
        )
    }
}

impl core::error::Error for InvalidAddress {}

impl Address {
    /// The factory address, 0x6F (all address jumpers open).
    pub const DEFAULT: Address = Address(0x6F);
    /// The lowest address the firmware accepts.
    pub const MIN: u8 = 0x08;
    /// The highest address the firmware accepts.
    pub const MAX: u8 = 0x77;

    /// Checks that `address` is one the firmware accepts.
    pub const fn new(address: u8) -> Result<Address, InvalidAddress> {
        if address >= Self::MIN && address <= Self::MAX {
            Ok(Address(address))
        } else {
            Err(InvalidAddress(address))
        }
    }

    /// The 7-bit address.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl Default for Address {
    fn default() -> Self {
        Address::DEFAULT
    }
}

impl TryFrom<u8> for Address {
    type Error = InvalidAddress;

    fn try_from(address: u8) -> Result<Self, Self::Error> {
        Address::new(address)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x}", self.0)
    }
}

/// The firmware version, as the ID, FIRMWARE_MINOR and FIRMWARE_MAJOR registers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FirmwareVersion {
    /// Major version (1 on every released firmware).
    pub major: u8,
    /// Minor version.
    pub minor: u8,
}

impl FirmwareVersion {
    /// True from firmware 1.3 on. Firmware 1.2 declared the queue status protection bits in
    /// the wrong order: the pop request bit is read-only there, so a pop never happens (the
    /// write clears `isFull` instead, until the next push).
    pub fn can_pop(self) -> bool {
        (self.major, self.minor) >= (1, 3)
    }
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Why a reading was rejected: what came back cannot be what the device holds. The Raspberry Pi
/// (4 and older) mishandles the clock stretching this device uses, and then returns data shifted
/// by one bit with no error (the ID 0x5D reads as 0x2E), so every reading that decides something
/// carries a byte whose value is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The ID register did not read 0x5D.
    Id(u8),
    /// The firmware registers did not read the version identified.
    Firmware(FirmwareVersion),
    /// The status register had bits set that the firmware never sets (3-7).
    StatusBits(u8),
    /// The I2C_ADDRESS register, read after the LED registers, did not hold the address the
    /// device answered on.
    Address(u8),
    /// The firmware registers held a version SparkFun never released (1.x).
    UnknownFirmware(FirmwareVersion),
    /// Readings of the identity taken one after another kept disagreeing.
    Disagreeing,
    /// The interrupt config had bits set that the firmware never sets (2-7).
    InterruptBits(u8),
    /// The pressed queue's status had bits set that never read 1 (0, 3-7).
    QueueBits(u8),
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::Id(found) => write!(f, "ID {found:#04x}, expected 0x5d"),
            Corruption::Firmware(found) => write!(f, "firmware {found}, not the one identified"),
            Corruption::StatusBits(found) => {
                write!(f, "status {found:#04x}, with bits the firmware never sets")
            }
            Corruption::Address(found) => {
                write!(f, "I2C_ADDRESS {found:#04x}, not the address that answered")
            }
            Corruption::UnknownFirmware(found) => {
                write!(f, "firmware {found}, which was never released")
            }
            Corruption::Disagreeing => f.write_str("the identity read differently every time"),
            Corruption::InterruptBits(found) => {
                write!(
                    f,
                    "interrupt config {found:#04x}, with bits the firmware never sets"
                )
            }
            Corruption::QueueBits(found) => {
                write!(f, "queue status {found:#04x}, with bits that never read 1")
            }
        }
    }
}

/// The BUTTON_STATUS register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ButtonStatus {
    /// An edge (press or release) happened since the host last cleared the status.
    pub event_available: bool,
    /// A release (a completed click) happened since the host last cleared the status.
    pub has_been_clicked: bool,
    /// The button is held down: the raw switch pin, sampled by the firmware on every read (so
    /// it flickers while the switch bounces). Writable: writing 0 clears it until the next read.
    pub is_pressed: bool,
}

/// What a poller reads in one burst: [`QwiicButton::checked_reading`](crate::QwiicButton::checked_reading).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ButtonReading {
    /// The status register.
    pub status: ButtonStatus,
    /// Which events pull the INT pin down.
    pub interrupt: InterruptConfig,
    /// The debounce time, in ms: the firmware ignores edges this long after one.
    pub debounce_ms: u16,
    /// Milliseconds since the newest edge on the pressed queue (a press or a release; the
    /// firmware stamps it its debounce time early); `None` when the queue is empty.
    pub newest_edge_age_ms: Option<u32>,
}

/// Which events pull the active-low INT pin down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InterruptConfig {
    /// While `has_been_clicked` is set.
    pub clicked: bool,
    /// While the button is held.
    pub pressed: bool,
}

/// The button's two timestamp queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    /// Every edge: press and release.
    Pressed,
    /// Every release.
    Clicked,
}

/// One consistent reading of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueSnapshot {
    /// No entries.
    pub is_empty: bool,
    /// 15 entries: the next push overwrites the oldest.
    pub is_full: bool,
    /// Milliseconds since the newest entry (wraps after about 49.7 days); `None` when empty.
    pub newest_age_ms: Option<u32>,
    /// Milliseconds since the oldest entry, the one [`pop`](crate::QwiicButton::pop) removes.
    pub oldest_age_ms: Option<u32>,
}

/// The LED registers, 0x19-0x1E.
///
/// With `cycle_time_ms == 0` the LED is steady at `brightness`. Otherwise it ramps 0 ->
/// `brightness` -> 0 over `cycle_time_ms`, then stays dark for `off_time_ms`, in steps that
/// `granularity` sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LedConfig {
    /// 0-255.
    pub brightness: u8,
    /// Pulse step size; must be at least 1 when pulsing.
    pub granularity: u8,
    /// Length of one ramp up and down, in ms; 0 means steady.
    pub cycle_time_ms: u16,
    /// Dark time between pulses, in ms.
    pub off_time_ms: u16,
}

impl LedConfig {
    /// The LED dark (granularity left at the safe 1, as SparkFun's libraries do).
    pub const OFF: LedConfig = LedConfig::steady(0);

    /// A steady LED at `brightness`.
    pub const fn steady(brightness: u8) -> LedConfig {
        LedConfig {
            brightness,
            granularity: 1,
            cycle_time_ms: 0,
            off_time_ms: 0,
        }
    }

    /// A pulsing LED. Fails when `granularity` is 0 and `cycle_time_ms` is not.
    pub fn pulse(
        brightness: u8,
        cycle_time_ms: u16,
        off_time_ms: u16,
        granularity: u8,
    ) -> Result<LedConfig, ZeroGranularity> {
        let led = LedConfig {
            brightness,
            granularity,
            cycle_time_ms,
            off_time_ms,
        };
        led.validate()?;
        Ok(led)
    }

    /// True when the LED gives any light.
    pub fn is_on(&self) -> bool {
        self.brightness > 0
    }

    /// Checks what the firmware needs: granularity >= 1 whenever the LED pulses.
    pub fn validate(&self) -> Result<(), ZeroGranularity> {
        if self.cycle_time_ms != 0 && self.granularity == 0 {
            return Err(ZeroGranularity);
        }
        Ok(())
    }
}

/// A pulsing LED setting with granularity 0, which would make the firmware divide by zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroGranularity;

impl fmt::Display for ZeroGranularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "LED pulse granularity must be 1 to 255 when the cycle time is not 0 (0 would make the firmware divide by zero)",
        )
    }
}

impl core::error::Error for ZeroGranularity {}
