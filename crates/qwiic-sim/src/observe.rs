//! What tests and pages observe of the simulated device: its [`SimEvent`]s, stamped with the
//! simulator's clock, and its [`SimStats`] counters.

use crate::config::LedRegisters;
use crate::registers::MAP_SIZE;

/// What happened to the simulated device, stamped with the simulator's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimEvent {
    /// When it happened, in whole milliseconds on the simulator's clock (rounded up: the
    /// firmware's steps take microseconds).
    pub at_ms: u64,
    /// When it happened, in microseconds on the simulator's clock ([`Clock::now_us`]): what
    /// latencies are measured with.
    ///
    /// [`Clock::now_us`]: crate::Clock::now_us
    pub at_us: u64,
    /// What happened.
    pub kind: SimEventKind,
}

/// The kinds of [`SimEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimEventKind {
    /// The switch went down.
    Pressed,
    /// The switch came up.
    Released,
    /// The LED's output changed (after the main loop's save pass that follows a write).
    Led(LedRegisters),
    /// A write to the LED registers arrived (the output follows after the next save pass).
    LedWritten,
    /// The device was disconnected.
    Unplugged,
    /// The device was reconnected and powered up.
    Replugged,
    /// The device moved to a new address.
    AddressChanged(u8),
    /// The INT line changed: `low` while the firmware pulls it down (an event to read), high
    /// when released (open drain, the board's pull-up).
    Int {
        /// Whether the line is now low.
        low: bool,
    },
    /// The first read of the status register since the INT line fell: the host answered.
    IntAnswered,
}

/// Counters for tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimStats {
    /// Transactions addressed to the device, including failed ones.
    pub transactions: u64,
    /// Transactions that were not acknowledged or failed by injection.
    pub failed_transactions: u64,
    /// Data bytes read.
    pub bytes_read: u64,
    /// Data bytes written (not counting the register pointer byte).
    pub bytes_written: u64,
    /// Write transactions that stored at least one byte in 0x19-0x1E.
    pub led_writes: u64,
    /// Bytes written to each register address.
    pub register_writes: [u64; MAP_SIZE],
    /// EEPROM bytes rewritten because a setting changed.
    pub eeprom_byte_writes: u64,
    /// Reads returned bit-shifted by the injected clock-stretching fault.
    pub corrupted_reads: u64,
    /// Writes lost or misapplied by the injected clock-stretching fault.
    pub corrupted_writes: u64,
}

impl Default for SimStats {
    fn default() -> Self {
        SimStats {
            transactions: 0,
            failed_transactions: 0,
            bytes_read: 0,
            bytes_written: 0,
            led_writes: 0,
            register_writes: [0; MAP_SIZE],
            eeprom_byte_writes: 0,
            corrupted_reads: 0,
            corrupted_writes: 0,
        }
    }
}
