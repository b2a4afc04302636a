//! A register-accurate simulated SparkFun Qwiic Button that implements embedded-hal 1.0 [`I2c`].
//!
//! It runs SparkFun's firmware 1.3 logic in-process: the 32-byte register map with its
//! write-protection masks, the register pointer, reads that recompute `isPressed` and the queue
//! ages, 0xFF past 0x1F, the switch ISR with its debounce lockout, the two 15-entry timestamp
//! queues (press and release onto PRESSED, release onto CLICKED, overwrite when full, pop on
//! request), settings saved to a simulated EEPROM and reloaded on power-up, the address change,
//! and a NACK for every other address.
//!
//! A [`SimButton`] is a cheap handle: clones share one device, so a test keeps one clone to press
//! the button and hands another to the code under test as its bus. Each I2C transaction is applied
//! under one lock, so it is atomic with respect to every other clone, as the kernel's adapter lock
//! makes a real `I2C_RDWR` atomic.
//!
//! Time comes from a [`Clock`]: [`SystemClock`] for a live simulator, [`ManualClock`] for tests
//! that must never sleep.
//!
//! ```
//! use std::time::Duration;
//! use embedded_hal::i2c::I2c;
//! use qwiic_sim::{ManualClock, SimButton};
//!
//! let clock = ManualClock::new();
//! let button = SimButton::with_clock(clock.clone());
//! let mut bus = button.clone();
//!
//! clock.advance(Duration::from_secs(1));
//! button.press();
//! let mut status = [0];
//! bus.write_read(0x6F, &[0x03], &mut status).unwrap();
//! assert_eq!(status[0], 0b101); // isPressed | eventAvailable
//! ```
#![deny(unsafe_code, missing_docs)]

mod button;
mod clock;
mod config;
mod device;
mod eeprom;
mod fault;
mod observe;
mod queue;
mod registers;
mod transaction;

pub use button::SimButton;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{LedRegisters, Settings, SimConfig};
pub use eeprom::{EEPROM_SIZE, Eeprom};
pub use fault::{Fault, InvalidRate, SimError};
pub use observe::{SimEvent, SimEventKind, SimStats};
pub use registers::MAP_SIZE;
