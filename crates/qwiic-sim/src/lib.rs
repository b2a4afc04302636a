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

mod clock;
mod device;
mod queue;
mod registers;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use embedded_hal::i2c::{self, ErrorKind, I2c, NoAcknowledgeSource, Operation};

pub use clock::{Clock, ManualClock, SystemClock};
use device::Device;
pub use registers::MAP_SIZE;

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
    fn differing_bytes(&self, other: &Settings) -> u32 {
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

/// What happened to the simulated device, stamped with the simulator's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimEvent {
    /// [`Clock::now_ms`] when it happened.
    pub at_ms: u64,
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
    /// A write changed the LED registers.
    Led(LedRegisters),
    /// The device was disconnected.
    Unplugged,
    /// The device was reconnected and powered up.
    Replugged,
    /// The device moved to a new address.
    AddressChanged(u8),
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
        }
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

type Observer = Arc<dyn Fn(&SimEvent) + Send + Sync>;
type Waker = Arc<dyn Fn() + Send + Sync>;

struct Shared {
    device: Mutex<Device>,
    /// Transactions currently inside their injected delay, so tests can act while one is
    /// in flight.
    delayed: std::sync::atomic::AtomicUsize,
    clock: Arc<dyn Clock>,
    observers: Mutex<Vec<Observer>>,
    wakers: Mutex<Vec<Waker>>,
}

/// A handle to one simulated Qwiic Button. Clones share the device.
#[derive(Clone)]
pub struct SimButton {
    shared: Arc<Shared>,
}

impl fmt::Debug for SimButton {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimButton")
            .field("clock", &self.shared.clock)
            .finish_non_exhaustive()
    }
}

impl Default for SimButton {
    fn default() -> Self {
        Self::new()
    }
}

impl SimButton {
    /// A factory-fresh button at 0x6F, firmware 1.3, on the host's clock.
    pub fn new() -> Self {
        Self::with_config(SimConfig::default(), SystemClock::new())
    }

    /// A factory-fresh button on the given clock.
    pub fn with_clock(clock: impl Clock + 'static) -> Self {
        Self::with_config(SimConfig::default(), clock)
    }

    /// A button with the given firmware, EEPROM content and clock.
    pub fn with_config(config: SimConfig, clock: impl Clock + 'static) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let device = Device::new(config, clock.now_ms());
        SimButton {
            shared: Arc::new(Shared {
                device: Mutex::new(device),
                delayed: std::sync::atomic::AtomicUsize::new(0),
                clock,
                observers: Mutex::new(Vec::new()),
                wakers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The simulator clock's current reading, the timebase of every [`SimEvent`].
    pub fn now_ms(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    /// Runs `f` on the device with pending edges applied, then tells observers what happened.
    fn with_device<T>(&self, f: impl FnOnce(&mut Device, u64) -> T) -> T {
        let (result, events, scheduled) = {
            let mut device = self.lock();
            let now = self.now_ms();
            device.sync(now);
            let result = f(&mut device, now);
            let scheduled = std::mem::take(&mut device.scheduled);
            (result, std::mem::take(&mut device.outbox), scheduled)
        };
        if scheduled {
            let wakers = self
                .shared
                .wakers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            for waker in &wakers {
                waker();
            }
        }
        if !events.is_empty() {
            let observers = self
                .shared
                .observers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            for event in &events {
                for observer in &observers {
                    observer(event);
                }
            }
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, Device> {
        // A panic while holding the lock cannot leave the register file half-written in a way
        // the firmware could not, so carry on with the data.
        self.shared
            .device
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Presses the button now (and holds it).
    pub fn press(&self) {
        self.with_device(|device, now| {
            device.schedule_edge(now, true);
            device.sync(now);
        });
    }

    /// Releases the button now.
    pub fn release(&self) {
        self.with_device(|device, now| {
            device.schedule_edge(now, false);
            device.sync(now);
        });
    }

    /// Presses now and releases `hold` later by the simulator's clock. The release is applied
    /// when the clock gets there, whoever looks next.
    pub fn click(&self, hold: Duration) {
        let hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX);
        self.with_device(|device, now| {
            device.schedule_edge(now, true);
            device.schedule_edge(now.saturating_add(hold_ms), false);
            device.sync(now);
        });
    }

    /// True while the switch is held down.
    pub fn is_held(&self) -> bool {
        self.with_device(|device, _| device.is_held())
    }

    /// Disconnects the device: every transaction is NACKed until [`replug`](Self::replug).
    pub fn unplug(&self) {
        self.with_device(|device, now| device.unplug(now));
    }

    /// Reconnects the device, which powers up from its EEPROM (status and queues are lost).
    pub fn replug(&self) {
        self.with_device(|device, now| device.replug(now));
    }

    /// True unless unplugged.
    pub fn is_plugged(&self) -> bool {
        self.with_device(|device, _| device.is_plugged())
    }

    /// Restarts the firmware: registers reload from EEPROM, status and queues are cleared.
    pub fn power_cycle(&self) {
        self.with_device(|device, now| device.power_cycle(now));
    }

    /// Makes the next `count` transactions fail with `fault`.
    pub fn fail_next(&self, count: u32, fault: Fault) {
        self.with_device(|device, _| device.fail_next(count, fault));
    }

    /// Makes each transaction fail with `fault` with probability `rate` (0.0-1.0).
    pub fn set_fault_rate(&self, rate: f64, fault: Fault) -> Result<(), InvalidRate> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(InvalidRate(rate));
        }
        self.with_device(|device, _| device.set_fault_rate(rate, fault));
        Ok(())
    }

    /// Makes the next `count` writes with data be acknowledged but lost: the registers keep
    /// their values, as after a transfer the device did not take. A writer that reads back what
    /// it wrote sees it.
    pub fn lose_next_writes(&self, count: u32) {
        self.with_device(|device, _| device.lose_next_writes(count));
    }

    /// Makes each read come back, with probability `rate` (0.0-1.0), shifted right by one bit
    /// with no error: what a Raspberry Pi's I2C controller does when it mishandles this
    /// device's clock stretching (the ID 0x5D reads 0x2E).
    pub fn set_corrupt_rate(&self, rate: f64) -> Result<(), InvalidRate> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(InvalidRate(rate));
        }
        self.with_device(|device, _| device.set_corrupt_rate(rate));
        Ok(())
    }

    /// Makes the switch chatter for `bounce` after each physical edge: reads of `isPressed` (the
    /// raw pin) then flicker. The interrupt's debounce lockout keeps the events clean.
    pub fn set_bounce(&self, bounce: Duration) {
        let bounce_ms = u64::try_from(bounce.as_millis()).unwrap_or(u64::MAX);
        self.with_device(|device, _| device.set_bounce_ms(bounce_ms));
    }

    /// Closes address jumpers (bits 0-3; 0 opens them all). The firmware reads them when it
    /// (re)starts I2C: at power-up and after an address write.
    pub fn set_jumpers(&self, jumpers: u8) {
        self.with_device(|device, _| device.set_jumpers(jumpers));
    }

    /// When the firmware's main loop will have saved and applied every write so far, on the
    /// simulator's clock (the LED and a new address take effect then).
    pub fn settled_at_ms(&self) -> u64 {
        self.with_device(|device, _| device.settled_at_ms())
    }

    /// Adds `delay` to every transaction (a slow, clock-stretching device).
    pub fn set_delay(&self, delay: Duration) {
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.with_device(|device, _| device.set_delay_ms(delay_ms));
    }

    /// The LED registers (what a read returns; the light follows after the EEPROM save, see
    /// [`led_level`](Self::led_level)).
    pub fn led(&self) -> LedRegisters {
        self.with_device(|device, _| device.led())
    }

    /// The LED's light output (0-255) right now, following the pulse.
    pub fn led_level(&self) -> u8 {
        self.with_device(|device, now| device.led_level(now))
    }

    /// The address the device answers on.
    pub fn address(&self) -> u8 {
        self.with_device(|device, _| device.address())
    }

    /// The register map as a read would return it now.
    pub fn registers(&self) -> [u8; MAP_SIZE] {
        self.with_device(|device, now| device.registers(now))
    }

    /// What the EEPROM holds.
    pub fn settings(&self) -> Settings {
        self.with_device(|device, _| device.settings())
    }

    /// Transaction and write counters.
    pub fn stats(&self) -> SimStats {
        self.with_device(|device, _| device.stats())
    }

    /// The last 64 events, oldest first.
    pub fn recent_events(&self) -> Vec<SimEvent> {
        self.with_device(|device, _| device.history())
    }

    /// When the next scheduled change is due on the simulator's clock: a click's release, or
    /// an LED setting or address the firmware applies after its EEPROM save. Changes happen
    /// when something looks at the device after they are due; a live simulator calls
    /// [`catch_up`](Self::catch_up) then, so that observers hear of them on time.
    pub fn next_change_at_ms(&self) -> Option<u64> {
        self.with_device(|device, _| device.next_change_at_ms())
    }

    /// Applies every scheduled change the clock has reached (any look at the device does).
    pub fn catch_up(&self) {
        self.with_device(|_, _| ());
    }

    /// Calls `waker`, outside the device lock, whenever a change is scheduled for later (see
    /// [`next_change_at_ms`](Self::next_change_at_ms)).
    pub fn on_schedule(&self, waker: impl Fn() + Send + Sync + 'static) {
        self.shared
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(waker));
    }

    /// Calls `observer` for every future event, outside the device lock.
    pub fn subscribe(&self, observer: impl Fn(&SimEvent) + Send + Sync + 'static) {
        self.shared
            .observers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(observer));
    }
}

impl i2c::ErrorType for SimButton {
    type Error = SimError;
}

impl I2c for SimButton {
    /// Sleeps for the injected delay, then applies the transaction atomically.
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let delay = self.transaction_delay();
        if !delay.is_zero() {
            use std::sync::atomic::Ordering;
            self.shared.delayed.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(delay);
            self.shared.delayed.fetch_sub(1, Ordering::SeqCst);
        }
        self.apply_transaction(address, operations)
    }
}

impl SimButton {
    /// How many transactions are inside their injected delay right now.
    pub fn delayed_transactions(&self) -> usize {
        self.shared
            .delayed
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The delay injected by [`set_delay`](Self::set_delay); an async server sleeps it itself
    /// before [`apply_transaction`](Self::apply_transaction) instead of blocking a thread.
    pub fn transaction_delay(&self) -> Duration {
        Duration::from_millis(self.with_device(|device, _| device.delay_ms()))
    }

    /// Applies one I2C transaction under the device lock, without the injected delay.
    /// Adjacent operations of one kind are one bus phase (no repeated START between them),
    /// as embedded-hal specifies.
    pub fn apply_transaction(
        &self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), SimError> {
        self.with_device(|device, now| {
            if !device.acknowledges(address) {
                if address == device.address() {
                    device.count_transaction(true);
                }
                return Err(SimError::NoAcknowledge { address });
            }
            if let Some(fault) = device.injected_fault() {
                device.count_transaction(true);
                return Err(SimError::Injected(fault));
            }
            device.count_transaction(false);
            apply(device, now, operations)
        })
    }
}

/// Splits the operations into bus phases and runs each through the firmware's handlers.
fn apply(device: &mut Device, now: u64, operations: &mut [Operation<'_>]) -> Result<(), SimError> {
    let mut index = 0;
    while index < operations.len() {
        match &operations[index] {
            Operation::Write(_) => {
                let mut bytes = Vec::new();
                while let Some(Operation::Write(chunk)) = operations.get(index) {
                    bytes.extend_from_slice(chunk);
                    index += 1;
                }
                if bytes.len() > device::RX_LIMIT {
                    // The 16th byte is not acknowledged: the master stops, the first 15 land.
                    device.write(now, &bytes[..device::RX_LIMIT]);
                    return Err(SimError::DataNotAcknowledged {
                        length: bytes.len(),
                    });
                }
                device.write(now, &bytes);
            }
            Operation::Read(_) => {
                let mut phase = Vec::new();
                let mut end = index;
                while let Some(Operation::Read(chunk)) = operations.get(end) {
                    phase.resize(phase.len() + chunk.len(), 0);
                    end += 1;
                }
                device.read(now, &mut phase);
                if device.corrupts_this_read() {
                    shift_right_one_bit(&mut phase);
                }
                let mut from = 0;
                for operation in &mut operations[index..end] {
                    if let Operation::Read(chunk) = operation {
                        chunk.copy_from_slice(&phase[from..from + chunk.len()]);
                        from += chunk.len();
                    }
                }
                index = end;
            }
        }
    }
    Ok(())
}

/// The whole phase, read one bit late: every byte takes the low bit of the one before it as its
/// high bit, and the first gets a 0 (0x5D, 0x03 reads 0x2E, 0x81).
fn shift_right_one_bit(bytes: &mut [u8]) {
    let mut carry = 0;
    for byte in bytes {
        let next = *byte << 7;
        *byte = (*byte >> 1) | carry;
        carry = next;
    }
}
