//! A `no_std` driver for the [SparkFun Qwiic Button] over [`embedded-hal`] 1.0 I2C.
//!
//! It covers the whole device as firmware 1.3 exposes it: identity and firmware version, the button
//! status (pressed, clicked, event available) and clearing it, the debounce time, the pressed and
//! clicked queues (ages in milliseconds, empty/full, explicit pop), the interrupt enables, the LED
//! (steady or pulsing) and the I2C address.
//!
//! What it promises on the bus:
//! - every read is ONE `write_read` (register pointer, then a repeated START) of at most 15 bytes,
//!   so another master sharing the bus cannot move the pointer in between, and the device's 16-byte
//!   TX buffer is never exceeded;
//! - the readings that decide something carry a byte whose value is known, and are rejected
//!   ([`Error::Corrupted`]) when it is wrong: [`QwiicButton::checked_status`] reads ID, firmware
//!   and status in one burst, [`QwiicButton::led`] reads the LED registers with the address
//!   register after them. The Raspberry Pi's I2C controller returns bit-shifted data without an
//!   error when the device stretches the clock, which this device does;
//! - every write is ONE `write` of `[register, bytes...]`; a whole LED setting is a single 7-byte
//!   write starting at `LED_BRIGHTNESS` (0x19), so the LED never shows half a setting;
//! - invalid arguments are rejected before any bus traffic;
//! - nothing pops a queue unless you call [`QwiicButton::pop`]; no getter has side effects.
//!
//! Each register write makes the firmware save its settings to EEPROM (about 100k cycles per
//! byte; only bytes that change are written): do not rewrite the LED in a loop with the value it
//! already holds. Read it with [`QwiicButton::led`] first, and compare.
//!
//! The save pass takes about 3.4 ms per changed byte ([`save_pass_time`]), and a settings write
//! that lands while it runs is shown but not saved where the pass has already been (the firmware
//! clears its update flag when the pass ends): a power cut then brings the older setting back.
//! After a settings write, wait [`save_pass_time`] of the bytes it changed before the next
//! settings write; [`QwiicButton::set_address`] waits out [`LONGEST_SAVE_PASS`] itself.
//!
//! # Example
//!
//! On Linux, with the button on `/dev/i2c-1` (Jetson Nano pins 3/5, Raspberry Pi with I2C enabled):
//!
//! ```no_run
//! use linux_embedded_hal::I2cdev;
//! use qwiic_button::{Address, LedConfig, QwiicButton};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = I2cdev::new("/dev/i2c-1")?;
//! let mut button = QwiicButton::new(bus, Address::DEFAULT);
//! let firmware = button.check_identity()?;
//! println!("Qwiic Button firmware {firmware}");
//!
//! let status = button.checked_status(firmware)?; // rejected if the bus corrupted it
//! let led = if status.is_pressed { LedConfig::steady(255) } else { LedConfig::OFF };
//! if button.led()? != led {
//!     button.set_led(led)?; // one 7-byte write; skipped when nothing changes
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The same code runs against any other `I2c` implementation, such as the in-process simulator
//! of this workspace (`qwiic-sim`), which is how this crate is tested without hardware.
//!
//! [SparkFun Qwiic Button]: https://www.sparkfun.com/products/15932
//! [`embedded-hal`]: https://docs.rs/embedded-hal/1
#![no_std]
#![deny(unsafe_code, missing_docs)]

mod error;
mod types;

use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

pub use error::Error;
pub use types::{
    Address, ButtonReading, ButtonStatus, Corruption, FirmwareVersion, InterruptConfig,
    InvalidAddress, LedConfig, Queue, QueueSnapshot, ZeroGranularity,
};

/// The value of the ID register on every Qwiic Button.
pub const DEVICE_ID: u8 = 0x5D;

/// Register addresses, as offsets into the firmware's packed register map (registers.h).
struct Register;

impl Register {
    const ID: u8 = 0x00;
    const BUTTON_STATUS: u8 = 0x03;
    const INTERRUPT_CONFIG: u8 = 0x04;
    const BUTTON_DEBOUNCE_TIME: u8 = 0x05;
    const PRESSED_QUEUE_STATUS: u8 = 0x07;
    const CLICKED_QUEUE_STATUS: u8 = 0x10;
    const LED_BRIGHTNESS: u8 = 0x19;
    const I2C_ADDRESS: u8 = 0x1F;
}

/// Bits of `BUTTON_STATUS`.
const STATUS_EVENT_AVAILABLE: u8 = 0b001;
const STATUS_HAS_BEEN_CLICKED: u8 = 0b010;
const STATUS_IS_PRESSED: u8 = 0b100;
/// Bits of `INTERRUPT_CONFIG`.
const INTERRUPT_CLICKED_ENABLE: u8 = 0b01;
const INTERRUPT_PRESSED_ENABLE: u8 = 0b10;
/// Bits of the queue status registers.
const QUEUE_POP_REQUEST: u8 = 0b001;
const QUEUE_IS_EMPTY: u8 = 0b010;
const QUEUE_IS_FULL: u8 = 0b100;

/// The device answers with at most this many bytes per read (16-byte TX buffer, minus one).
const MAX_READ: usize = 15;
/// Status bits the firmware never sets: all but the three above.
const STATUS_UNUSED: u8 = 0b1111_1000;
/// Interrupt config bits the firmware never sets (its write mask keeps bits 0-1).
const INTERRUPT_UNUSED: u8 = 0b1111_1100;
/// Queue status bits that never read 1: the pop request (cleared at once) and bits 3-7.
const QUEUE_UNUSED: u8 = 0b1111_1001;
/// How long the firmware may take to save a new address to EEPROM and restart I2C on it (the
/// address type, the address and the type again: 10.2 ms).
const ADDRESS_SETTLE_MS: u32 = 20;

/// How long the firmware takes to save one changed settings byte to EEPROM: about 3.4 ms, on
/// an RC oscillator that may run 10% slow, so 4 ms.
pub const EEPROM_BYTE_SAVE: core::time::Duration = core::time::Duration::from_millis(4);

/// The longest save pass: the nine settings bytes, the address and its type twice.
pub const LONGEST_SAVE_PASS: core::time::Duration = save_pass_time(12);

/// How long the firmware's save pass after a write runs when `changed_bytes` of the settings
/// differ from what its EEPROM holds (0 for a write that changes none, such as a status clear).
pub const fn save_pass_time(changed_bytes: u32) -> core::time::Duration {
    core::time::Duration::from_millis(EEPROM_BYTE_SAVE.as_millis() as u64 * changed_bytes as u64)
}

/// A SparkFun Qwiic Button on an I2C bus.
#[derive(Debug)]
pub struct QwiicButton<I2C> {
    i2c: I2C,
    address: Address,
}

impl<I2C: I2c> QwiicButton<I2C> {
    /// Creates a driver for the button at `address`. No bus traffic happens here: call
    /// [`check_identity`](Self::check_identity) to find out whether a button answers.
    pub fn new(i2c: I2C, address: Address) -> Self {
        Self { i2c, address }
    }

    /// Gives the bus back.
    pub fn destroy(self) -> I2C {
        self.i2c
    }

    /// The address this driver talks to.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Reads the ID and firmware version in one transaction and checks the ID.
    ///
    /// Returns [`Error::WrongId`] when something else answers at the address. Firmware older than
    /// 1.3 is accepted; check [`FirmwareVersion::can_pop`] before relying on queue pops.
    pub fn check_identity(&mut self) -> Result<FirmwareVersion, Error<I2C::Error>> {
        let [id, minor, major] = self.read::<3>(Register::ID)?;
        if id != DEVICE_ID {
            return Err(Error::WrongId {
                address: self.address,
                found: id,
            });
        }
        Ok(FirmwareVersion { major, minor })
    }

    /// Reads the button status: pressed now, clicked since last cleared, event available.
    ///
    /// One unchecked byte: a corrupted read cannot be told from a real one. Decide on
    /// [`checked_status`](Self::checked_status) instead.
    pub fn status(&mut self) -> Result<ButtonStatus, Error<I2C::Error>> {
        let [bits] = self.read::<1>(Register::BUTTON_STATUS)?;
        Ok(decode_status(bits))
    }

    /// Reads ID, firmware and status in ONE 4-byte burst from 0x00, and rejects the reading
    /// ([`Error::Corrupted`]) unless the ID is 0x5D, the firmware is `firmware` (what
    /// [`check_identity`](Self::check_identity) found) and the status bits the firmware never sets
    /// (3-7) are 0.
    pub fn checked_status(
        &mut self,
        firmware: FirmwareVersion,
    ) -> Result<ButtonStatus, Error<I2C::Error>> {
        let [id, minor, major, bits] = self.read::<4>(Register::ID)?;
        let found = FirmwareVersion { major, minor };
        let corruption = if id != DEVICE_ID {
            Some(Corruption::Id(id))
        } else if found != firmware {
            Some(Corruption::Firmware(found))
        } else if bits & STATUS_UNUSED != 0 {
            Some(Corruption::StatusBits(bits))
        } else {
            None
        };
        match corruption {
            Some(corruption) => Err(Error::Corrupted(corruption)),
            None => Ok(decode_status(bits)),
        }
    }

    /// Reads ID, firmware, status, interrupt config, debounce time, the pressed queue's status
    /// and the age of its newest entry in ONE 12-byte burst from 0x00: one consistent snapshot
    /// of what a poller needs. Rejected ([`Error::Corrupted`]) unless the ID is 0x5D, the
    /// firmware is `firmware`, and the status, interrupt config and queue status registers have
    /// none of the bits the firmware never sets.
    ///
    /// The newest entry's age says when the last edge happened, whatever the status flags say:
    /// a clear that was lost leaves the flags set, but the queue shows no newer edge.
    pub fn checked_reading(
        &mut self,
        firmware: FirmwareVersion,
    ) -> Result<ButtonReading, Error<I2C::Error>> {
        let bytes = self.read::<12>(Register::ID)?;
        let [
            id,
            minor,
            major,
            bits,
            interrupt,
            debounce_lo,
            debounce_hi,
            queue,
        ] = [0, 1, 2, 3, 4, 5, 6, 7].map(|at| bytes[at]);
        let found = FirmwareVersion { major, minor };
        let corruption = if id != DEVICE_ID {
            Some(Corruption::Id(id))
        } else if found != firmware {
            Some(Corruption::Firmware(found))
        } else if bits & STATUS_UNUSED != 0 {
            Some(Corruption::StatusBits(bits))
        } else if interrupt & INTERRUPT_UNUSED != 0 {
            Some(Corruption::InterruptBits(interrupt))
        } else if queue & QUEUE_UNUSED != 0 {
            Some(Corruption::QueueBits(queue))
        } else {
            None
        };
        if let Some(corruption) = corruption {
            return Err(Error::Corrupted(corruption));
        }
        let age = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        Ok(ButtonReading {
            status: decode_status(bits),
            interrupt: decode_interrupt(interrupt),
            debounce_ms: u16::from_le_bytes([debounce_lo, debounce_hi]),
            newest_edge_age_ms: (queue & QUEUE_IS_EMPTY == 0).then_some(age),
        })
    }

    /// Clears `event_available` and `has_been_clicked` with one write of 0. It clears
    /// `is_pressed` too, but the firmware samples the switch again on every read.
    ///
    /// An edge that lands between your last [`status`](Self::status) and this call is cleared
    /// too; its timestamp stays on the queues, so read those if no edge may be missed.
    pub fn clear_status(&mut self) -> Result<(), Error<I2C::Error>> {
        self.write(Register::BUTTON_STATUS, [0])
    }

    /// Reads the debounce time in milliseconds.
    pub fn debounce_time(&mut self) -> Result<u16, Error<I2C::Error>> {
        Ok(u16::from_le_bytes(
            self.read::<2>(Register::BUTTON_DEBOUNCE_TIME)?,
        ))
    }

    /// Sets the debounce time in milliseconds (the firmware saves it to EEPROM).
    pub fn set_debounce_time(&mut self, ms: u16) -> Result<(), Error<I2C::Error>> {
        self.write(Register::BUTTON_DEBOUNCE_TIME, ms.to_le_bytes())
    }

    /// Reads which events drive the INT pin.
    pub fn interrupt_config(&mut self) -> Result<InterruptConfig, Error<I2C::Error>> {
        let [bits] = self.read::<1>(Register::INTERRUPT_CONFIG)?;
        Ok(decode_interrupt(bits))
    }

    /// Chooses which events drive the INT pin (the firmware saves it to EEPROM).
    pub fn set_interrupt_config(
        &mut self,
        config: InterruptConfig,
    ) -> Result<(), Error<I2C::Error>> {
        let mut bits = 0;
        if config.clicked {
            bits |= INTERRUPT_CLICKED_ENABLE;
        }
        if config.pressed {
            bits |= INTERRUPT_PRESSED_ENABLE;
        }
        self.write(Register::INTERRUPT_CONFIG, [bits])
    }

    /// Reads a queue's status and the ages of its newest and oldest entries in ONE transaction,
    /// so the three agree. Ages are `None` when the queue is empty (the device then reports
    /// its uptime and a stale value). Nothing is popped.
    pub fn queue(&mut self, queue: Queue) -> Result<QueueSnapshot, Error<I2C::Error>> {
        let bytes = self.read::<9>(queue_status_register(queue))?;
        let status = bytes[0];
        let is_empty = status & QUEUE_IS_EMPTY != 0;
        let age = |at: usize| {
            let age = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            (!is_empty).then_some(age)
        };
        Ok(QueueSnapshot {
            is_empty,
            is_full: status & QUEUE_IS_FULL != 0,
            newest_age_ms: age(1),
            oldest_age_ms: age(5),
        })
    }

    /// Removes the oldest entry of a queue. Popping an empty queue does nothing.
    ///
    /// Firmware 1.2 and older mask the pop request out, so nothing is popped there: see
    /// [`FirmwareVersion::can_pop`].
    pub fn pop(&mut self, queue: Queue) -> Result<(), Error<I2C::Error>> {
        self.write(queue_status_register(queue), [QUEUE_POP_REQUEST])
    }

    /// Reads the whole LED setting in one transaction, with the I2C_ADDRESS register after it
    /// as a check: the reading is rejected ([`Error::Corrupted`]) unless that register holds the
    /// address the device answered on (the firmware keeps it there, jumpers or not).
    pub fn led(&mut self) -> Result<LedConfig, Error<I2C::Error>> {
        let [
            brightness,
            granularity,
            cycle_lo,
            cycle_hi,
            off_lo,
            off_hi,
            address,
        ] = self.read::<7>(Register::LED_BRIGHTNESS)?;
        if address != self.address.get() {
            return Err(Error::Corrupted(Corruption::Address(address)));
        }
        Ok(LedConfig {
            brightness,
            granularity,
            cycle_time_ms: u16::from_le_bytes([cycle_lo, cycle_hi]),
            off_time_ms: u16::from_le_bytes([off_lo, off_hi]),
        })
    }

    /// Writes the whole LED setting as one 7-byte write starting at `LED_BRIGHTNESS`.
    ///
    /// Rejects a pulsing setting with granularity 0 (the firmware would divide by zero) before
    /// touching the bus. Every call costs an EEPROM write on the device: skip it when
    /// [`led`](Self::led) already reads back the same setting.
    pub fn set_led(&mut self, led: LedConfig) -> Result<(), Error<I2C::Error>> {
        led.validate()?;
        let [cycle_lo, cycle_hi] = led.cycle_time_ms.to_le_bytes();
        let [off_lo, off_hi] = led.off_time_ms.to_le_bytes();
        self.write(
            Register::LED_BRIGHTNESS,
            [
                led.brightness,
                led.granularity,
                cycle_lo,
                cycle_hi,
                off_lo,
                off_hi,
            ],
        )
    }

    /// Moves the button to a new I2C address and follows it there.
    ///
    /// The address must be 0x08-0x77 ([`Address::new`] checks that). First this waits out any
    /// save pass that may be under way ([`LONGEST_SAVE_PASS`]): an address written during one
    /// is not taken. The firmware takes it only after its main loop has saved it to EEPROM and
    /// restarted I2C, so this waits 20 ms, then checks the ID at the new address. The firmware
    /// reads its address jumpers then: if one is closed, the button still answers on the old
    /// address, which the driver keeps, and the error says so ([`Error::AddressNotTaken`]).
    pub fn set_address(
        &mut self,
        address: Address,
        delay: &mut impl DelayNs,
    ) -> Result<(), Error<I2C::Error>> {
        let old = self.address;
        delay.delay_ms(LONGEST_SAVE_PASS.as_millis() as u32);
        self.write(Register::I2C_ADDRESS, [address.get()])?;
        delay.delay_ms(ADDRESS_SETTLE_MS);
        self.address = address;
        let moved = self.check_identity();
        if moved.is_ok() {
            return Ok(());
        }
        self.address = old;
        match self.check_identity() {
            Ok(_) => Err(Error::AddressNotTaken {
                requested: address,
                kept: old,
            }),
            // Neither answers: report what the new address said, and stay there.
            Err(_) => {
                self.address = address;
                moved.map(drop)
            }
        }
    }

    /// One `write_read` of `N` bytes from `register`.
    fn read<const N: usize>(&mut self, register: u8) -> Result<[u8; N], Error<I2C::Error>> {
        const {
            assert!(
                N <= MAX_READ,
                "the device's TX buffer holds at most 15 bytes"
            )
        };
        let mut buffer = [0; N];
        self.i2c
            .write_read(self.address.get(), &[register], &mut buffer)
            .map_err(Error::I2C)?;
        Ok(buffer)
    }

    /// One `write` of `[register, bytes...]` (never two adjacent write operations: Linux
    /// adapters reject the NO_START flag that would join them). At most 7 data bytes, checked
    /// at compile time.
    fn write<const N: usize>(
        &mut self,
        register: u8,
        bytes: [u8; N],
    ) -> Result<(), Error<I2C::Error>> {
        const { assert!(N <= 7, "the longest write is a whole LED setting") };
        let mut frame = [0; 8];
        frame[0] = register;
        frame[1..=N].copy_from_slice(&bytes);
        self.i2c
            .write(self.address.get(), &frame[..=N])
            .map_err(Error::I2C)
    }
}

fn decode_status(bits: u8) -> ButtonStatus {
    ButtonStatus {
        event_available: bits & STATUS_EVENT_AVAILABLE != 0,
        has_been_clicked: bits & STATUS_HAS_BEEN_CLICKED != 0,
        is_pressed: bits & STATUS_IS_PRESSED != 0,
    }
}

fn decode_interrupt(bits: u8) -> InterruptConfig {
    InterruptConfig {
        clicked: bits & INTERRUPT_CLICKED_ENABLE != 0,
        pressed: bits & INTERRUPT_PRESSED_ENABLE != 0,
    }
}

fn queue_status_register(queue: Queue) -> u8 {
    match queue {
        Queue::Pressed => Register::PRESSED_QUEUE_STATUS,
        Queue::Clicked => Register::CLICKED_QUEUE_STATUS,
    }
}
