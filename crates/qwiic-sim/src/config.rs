//! How a simulated button starts and what its settings are: [`SimConfig`], [`Settings`],
//! [`LedRegisters`] (the bytes that hold them are [`Eeprom`]'s).

use crate::Eeprom;

/// The settings the firmware keeps in EEPROM, so they survive a power cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The software I2C address.
    pub address: u8,
    /// INTERRUPT_CONFIG: bit 0 clicked, bit 1 pressed.
    pub interrupt_config: u8,
    /// Debounce time in ms.
    pub debounce_ms: u16,
    /// The LED registers.
    pub led: LedRegisters,
}

impl Default for Settings {
    /// The firmware's register map initializer: 0x6F, both interrupts on, 10 ms, LED off.
    fn default() -> Self {
        Settings {
            address: 0x6F,
            interrupt_config: 0x03,
            debounce_ms: 10,
            led: LedRegisters::default(),
        }
    }
}

/// The LED registers 0x19-0x1E.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedRegisters {
    /// 0-255.
    pub brightness: u8,
    /// Pulse step size.
    pub granularity: u8,
    /// Ramp time in ms; 0 = steady.
    pub cycle_time_ms: u16,
    /// Dark time between pulses in ms.
    pub off_time_ms: u16,
}

impl Default for LedRegisters {
    fn default() -> Self {
        LedRegisters {
            brightness: 0,
            granularity: 1,
            cycle_time_ms: 0,
            off_time_ms: 0,
        }
    }
}

/// How a simulated button starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    /// Firmware version as (major, minor); 1.2 and older reproduce the masked pop request.
    pub firmware: (u8, u8),
    /// The EEPROM content at first power-up ([`Eeprom::FRESH`] for a never-written part).
    pub eeprom: Eeprom,
    /// Closed address jumpers, bits 0-3: any closed one sets the address to 0x60-0x6F and
    /// overrides the software address, from the next boot on.
    pub jumpers: u8,
    /// Seed of the fault and bounce generator, so a faulty run can be repeated.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            firmware: (1, 3),
            eeprom: Eeprom::default(),
            jumpers: 0,
            seed: 0x5EED_5EED,
        }
    }
}
