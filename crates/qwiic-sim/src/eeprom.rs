//! The button's EEPROM byte for byte, as the firmware lays it out (nvm.h): what survives a power
//! cycle, what a never-written part holds (0xFF in every byte, which the firmware reads as its
//! own set of first-boot defaults), and the address-type flag that a boot with a closed jumper
//! makes sticky.

use crate::{LedRegisters, Settings};

/// Locations, re-declared from nvm.h.
pub(crate) const ADDRESS: usize = 0x00;
pub(crate) const INTERRUPTS: usize = 0x01;
pub(crate) const BRIGHTNESS: usize = 0x02;
pub(crate) const GRANULARITY: usize = 0x03;
pub(crate) const CYCLE_TIME: usize = 0x04;
pub(crate) const OFF_TIME: usize = 0x06;
pub(crate) const DEBOUNCE: usize = 0x08;
pub(crate) const ADDRESS_TYPE: usize = 0x0A;

/// How many bytes the firmware uses.
pub const EEPROM_SIZE: usize = 11;

/// ADDRESS_TYPE: the address comes from the register (0x1F) ...
pub(crate) const SOFTWARE_ADDRESS: u8 = 1;
/// ... or from the jumpers, even when they are all open again (0x6F).
pub(crate) const HARDWARE_ADDRESS: u8 = 0;
/// Never written.
pub(crate) const ERASED: u8 = 0xFF;

/// About 3.4 ms for `EEPROM.put` to write one changed byte, in microseconds.
pub(crate) const BYTE_WRITE_US: u64 = 3_400;

/// The EEPROM content (locations 0x00-0x0A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eeprom {
    bytes: [u8; EEPROM_SIZE],
}

impl Eeprom {
    /// A never-written part, as a button leaves the factory or after SparkFun's erase sketch:
    /// 0xFF everywhere. The firmware boots it with the LED at brightness 255 (the one setting it
    /// does not check for 0xFF), pulse granularity 0, address 0x6F, both interrupts on, 10 ms
    /// debounce, and saves those defaults as it goes (the off time it saves to the wrong
    /// location, so the first save pass writes it again).
    pub const FRESH: Eeprom = Eeprom {
        bytes: [ERASED; EEPROM_SIZE],
    };

    /// An EEPROM that holds `settings` with the software address in use (as after a host
    /// wrote them).
    pub fn holding(settings: Settings) -> Eeprom {
        let mut eeprom = Eeprom::FRESH;
        eeprom.bytes[ADDRESS] = settings.address;
        eeprom.bytes[INTERRUPTS] = settings.interrupt_config;
        eeprom.bytes[BRIGHTNESS] = settings.led.brightness;
        eeprom.bytes[GRANULARITY] = settings.led.granularity;
        eeprom.put_u16(CYCLE_TIME, settings.led.cycle_time_ms);
        eeprom.put_u16(OFF_TIME, settings.led.off_time_ms);
        eeprom.put_u16(DEBOUNCE, settings.debounce_ms);
        eeprom.bytes[ADDRESS_TYPE] = SOFTWARE_ADDRESS;
        eeprom
    }

    /// The stored settings as they are (0xFF/0xFFFF where never written).
    pub fn settings(&self) -> Settings {
        Settings {
            address: self.bytes[ADDRESS],
            interrupt_config: self.bytes[INTERRUPTS],
            debounce_ms: self.get_u16(DEBOUNCE),
            led: LedRegisters {
                brightness: self.bytes[BRIGHTNESS],
                granularity: self.bytes[GRANULARITY],
                cycle_time_ms: self.get_u16(CYCLE_TIME),
                off_time_ms: self.get_u16(OFF_TIME),
            },
        }
    }

    /// Whether the next boot takes its address from the jumpers even if they are all open
    /// (then 0x6F): set by a boot with a closed jumper, cleared when a host writes an address.
    pub fn hardware_address(&self) -> bool {
        self.bytes[ADDRESS_TYPE] == HARDWARE_ADDRESS
    }

    /// The raw bytes, locations 0x00-0x0A.
    pub fn bytes(&self) -> [u8; EEPROM_SIZE] {
        self.bytes
    }

    pub(crate) fn get(&self, at: usize) -> u8 {
        self.bytes[at]
    }

    pub(crate) fn get_u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.bytes[at], self.bytes[at + 1]])
    }

    /// `EEPROM.update` of one byte: true when it changed (a write, ~3.4 ms and wear).
    pub(crate) fn update(&mut self, at: usize, value: u8) -> bool {
        let changed = self.bytes[at] != value;
        self.bytes[at] = value;
        changed
    }

    fn put_u16(&mut self, at: usize, value: u16) {
        self.bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }
}

impl Default for Eeprom {
    /// Holding the firmware's register-map defaults (see [`Settings::default`]).
    fn default() -> Self {
        Eeprom::holding(Settings::default())
    }
}

impl From<Settings> for Eeprom {
    fn from(settings: Settings) -> Self {
        Eeprom::holding(settings)
    }
}
