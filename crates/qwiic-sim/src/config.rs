//! How a simulated button starts and what its EEPROM holds: [`SimConfig`], [`Settings`],
//! [`LedRegisters`].

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

impl Settings {
    /// How many EEPROM bytes differ between two settings (what `EEPROM.put` would rewrite).
    pub(crate) fn differing_bytes(&self, other: &Settings) -> u32 {
        let bytes = |s: &Settings| {
            let [d0, d1] = s.debounce_ms.to_le_bytes();
            let [c0, c1] = s.led.cycle_time_ms.to_le_bytes();
            let [o0, o1] = s.led.off_time_ms.to_le_bytes();
            [
                s.address,
                s.interrupt_config,
                s.led.brightness,
                s.led.granularity,
                c0,
                c1,
                o0,
                o1,
                d0,
                d1,
            ]
        };
        bytes(self)
            .iter()
            .zip(bytes(other))
            .map(|(a, b)| u32::from(*a != b))
            .sum()
    }
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
    /// The EEPROM content at first power-up.
    pub settings: Settings,
    /// Closed address jumpers, bits 0-3: any closed one sets the address to 0x60-0x6F and
    /// overrides the software address.
    pub jumpers: u8,
    /// Seed of the fault and bounce generator, so a faulty run can be repeated.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            firmware: (1, 3),
            settings: Settings::default(),
            jumpers: 0,
            seed: 0x5EED_5EED,
        }
    }
}
