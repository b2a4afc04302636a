//! Faults the simulator injects, as a Linux adapter reports them or as a misbehaving bus makes
//! them: [`Fault`] kinds, the [`SimError`] a transaction fails with, and the injection state
//! the device draws from (seeded, so a faulty run can be repeated).

use std::fmt;

use embedded_hal::i2c::{self, ErrorKind, NoAcknowledgeSource};

/// A failure to inject into transactions, as each kind arrives from a Linux adapter (see
/// `qwiic_bus::linux`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Not acknowledged (EREMOTEIO on a Raspberry Pi or a Jetson): a loose cable.
    Nack,
    /// A bus error (ETIMEDOUT, EIO, EBUSY): noise, a clock-stretch timeout.
    Bus,
    /// Arbitration lost (EAGAIN): another master on the bus.
    ArbitrationLoss,
    /// Anything else (EOPNOTSUPP, EPROTO, ...).
    Other,
}

impl Fault {
    /// Every kind, in order.
    pub const ALL: [Fault; 4] = [
        Fault::Nack,
        Fault::Bus,
        Fault::ArbitrationLoss,
        Fault::Other,
    ];

    fn kind(self) -> ErrorKind {
        match self {
            Fault::Nack => ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown),
            Fault::Bus => ErrorKind::Bus,
            Fault::ArbitrationLoss => ErrorKind::ArbitrationLoss,
            Fault::Other => ErrorKind::Other,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::Nack => "no acknowledge",
            Fault::Bus => "bus error",
            Fault::ArbitrationLoss => "arbitration lost",
            Fault::Other => "other error",
        })
    }
}

/// The error the simulated bus returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// Nothing acknowledged the address: wrong address, or the device is unplugged.
    NoAcknowledge {
        /// The address that was tried.
        address: u8,
    },
    /// A data byte of a write was not acknowledged: the firmware's receive buffer holds 15
    /// bytes, the register byte included (the first 15 were kept).
    DataNotAcknowledged {
        /// How many bytes the write had.
        length: usize,
    },
    /// An injected fault.
    Injected(Fault),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::NoAcknowledge { address } => write!(
                f,
                "simulated bus: no device acknowledged address {address:#04x} (unplugged or another address)"
            ),
            SimError::DataNotAcknowledged { length } => write!(
                f,
                "simulated bus: byte 16 of a {length}-byte write was not acknowledged (the device takes 15)"
            ),
            SimError::Injected(fault) => write!(f, "simulated bus: injected fault: {fault}"),
        }
    }
}

impl std::error::Error for SimError {}

impl i2c::Error for SimError {
    fn kind(&self) -> ErrorKind {
        match self {
            SimError::NoAcknowledge { .. } => {
                ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
            }
            SimError::DataNotAcknowledged { .. } => {
                ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data)
            }
            SimError::Injected(fault) => fault.kind(),
        }
    }
}

/// A fault rate outside 0.0-1.0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvalidRate(pub f64);

impl fmt::Display for InvalidRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fault rate {} is out of range: give a fraction from 0.0 (never) to 1.0 (always)",
            self.0
        )
    }
}

impl std::error::Error for InvalidRate {}

/// What is injected, and the generator that decides when.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub(crate) fail_next: u32,
    pub(crate) fail_next_kind: Option<Fault>,
    pub(crate) rate: f64,
    pub(crate) rate_kind: Option<Fault>,
    pub(crate) delay_ms: u64,
    pub(crate) corrupt_rate: f64,
    pub(crate) bounce_ms: u64,
    pub(crate) lose_writes: u32,
    pub(crate) rng: u64,
}

impl FaultState {
    /// xorshift64: deterministic for a given seed, good enough to spread faults.
    pub(crate) fn draw(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl FaultState {
    /// The next `count` transactions fail with `fault`.
    pub(crate) fn fail_next(&mut self, count: u32, fault: Fault) {
        self.fail_next = count;
        self.fail_next_kind = Some(fault);
    }

    /// Each transaction fails with `fault` with probability `rate`.
    pub(crate) fn set_rate(&mut self, rate: f64, fault: Fault) {
        self.rate = rate;
        self.rate_kind = (rate > 0.0).then_some(fault);
    }
}
