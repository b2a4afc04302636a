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
#[derive(Debug, Clone, Default)]
pub(crate) struct FaultState {
    pub(crate) fail_next: u32,
    pub(crate) fail_next_kind: Option<Fault>,
    pub(crate) rate: f64,
    pub(crate) rate_kind: Option<Fault>,
    pub(crate) delay_ms: u64,
    pub(crate) corrupt_rate: f64,
    /// Share of writes with data that are acknowledged and then lost or misapplied.
    pub(crate) write_corrupt_rate: f64,
    pub(crate) bounce_ms: u64,
    /// Share of physical edges followed, just after the debounce lockout, by one more bounce
    /// that the ISR takes for an edge.
    pub(crate) late_bounce_rate: f64,
    pub(crate) lose_writes: u32,
    /// Whether each fault happens.
    pub(crate) rng: u64,
    /// How it happens (which byte, lost or misapplied): a stream of its own, so that the
    /// sequence of whether stays what a seed gave in earlier versions.
    pub(crate) detail: u64,
}

impl FaultState {
    /// True with probability `rate` (never draws for a rate of 0, so a fault-free run keeps
    /// the generator's sequence).
    pub(crate) fn happens(&mut self, rate: f64) -> bool {
        rate > 0.0 && self.draw() < rate
    }

    /// A position in `0..len`, from the detail stream.
    pub(crate) fn position(&mut self, len: usize) -> usize {
        ((xorshift(&mut self.detail) * len as f64) as usize).min(len.saturating_sub(1))
    }

    /// True half the time, from the detail stream.
    pub(crate) fn either(&mut self) -> bool {
        xorshift(&mut self.detail) < 0.5
    }

    /// The next number in `0.0..1.0` of the whether stream.
    pub(crate) fn draw(&mut self) -> f64 {
        xorshift(&mut self.rng)
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

/// xorshift64: deterministic for a given seed, good enough to spread faults.
fn xorshift(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// The phase from byte `from` on, transferred one bit late (a clock stretch the master missed
/// there): each byte takes the low bit of the one before it as its high bit, the first of them
/// the low bit of the byte before it (0 at the start: 0x5D, 0x03 read 0x2E, 0x81). From a
/// later byte, the ID before it reads right.
pub(crate) fn shift_right_one_bit(bytes: &mut [u8], from: usize) {
    let Some(before) = from.checked_sub(1) else {
        return shift(bytes, 0);
    };
    let carry = bytes.get(before).map_or(0, |byte| byte << 7);
    if let Some(tail) = bytes.get_mut(from..) {
        shift(tail, carry);
    }
}

fn shift(bytes: &mut [u8], mut carry: u8) {
    for byte in bytes {
        let next = *byte << 7;
        *byte = (*byte >> 1) | carry;
        carry = next;
    }
}
