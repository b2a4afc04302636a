//! One Qwiic Button as a service owns it: a bus and an address, the button identified before
//! use and again after any failure, transient errors retried, every transaction counted, an
//! outage logged once when it starts and once when it ends, and the health published for
//! `/healthz`. A reading rejected as corrupted is not an outage (the device answered): it is
//! counted, and a burst of them is logged once when it starts and once when it ends. Both services drive their button through a [`DeviceLink`]; what is theirs (the
//! LED settings, the status polling) stays in their own crates.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use qwiic_button::{Address, Corruption, FirmwareVersion, QwiicButton};
use runtime_kit::{Backoff, Burst, Policy};
use tokio::sync::watch;

use crate::layers::{BusCounters, ServiceBus, service_bus};
use crate::{Bus, BusError, BusSpec, OpenError, TcpBusError};

/// The button as a link drives it: over the counted, retrying bus.
pub type LinkedButton = QwiicButton<ServiceBus<Bus>>;

/// Tries per transaction. Every transaction of both services may be repeated: reads, whole LED
/// settings, the status clear (neither service pops a queue).
const ATTEMPTS: u32 = 3;

/// Readings of the identity tried before giving up on two agreeing.
const IDENTITY_READS: u32 = 4;

/// How long an answer from the device counts as proof that it answers: a health check within
/// this time of the last successful transaction needs no transaction of its own.
pub const FRESH: Duration = Duration::from_secs(1);

/// While the button does not answer, it is looked for again after a pause that doubles from
/// 50 ms up to this: every probe of a missing device is a NACK, and L4T's i2c-tegra logs each
/// one to the kernel log and resets the controller (polling every 20 ms wrote ~150 lines a
/// second). A glitch is ridden out in 50 ms; a missing button is probed once a second.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The pauses between looks for a button that does not answer.
const PROBES: Policy = Policy {
    first: Duration::from_millis(50),
    cap: PROBE_INTERVAL,
    jitter: 0.0,
};

/// Whether the button answers, for `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkHealth {
    /// Not tried yet.
    Starting,
    /// Identified; its firmware.
    Answering(FirmwareVersion),
    /// The last attempt failed: why, and what to check.
    Unavailable(String),
}

/// What [`DeviceLink::identify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identified {
    /// The button's firmware.
    pub firmware: FirmwareVersion,
    /// True when the button was (re)identified just now: at start or after a failure, when
    /// whatever the service knew of the device may be stale.
    pub fresh: bool,
}

/// A link's health, readable from any thread without touching the bus.
#[derive(Debug, Clone)]
pub struct HealthView {
    health: watch::Receiver<LinkHealth>,
    /// Milliseconds after `epoch` of the last answer from the device, plus one (0: never).
    last_answer: Arc<AtomicU64>,
    epoch: Instant,
}

impl HealthView {
    /// The outcome of the last attempt.
    pub fn current(&self) -> LinkHealth {
        self.health.borrow().clone()
    }

    /// The firmware, while the device is identified and the last attempt succeeded.
    pub fn firmware(&self) -> Option<FirmwareVersion> {
        match self.current() {
            LinkHealth::Answering(firmware) => Some(firmware),
            _ => None,
        }
    }

    /// The outcome of each attempt that changes what is known, as it comes.
    pub fn updates(&self) -> watch::Receiver<LinkHealth> {
        self.health.clone()
    }

    /// The firmware, if the device is identified and answered within `age`.
    pub fn answered_within(&self, age: Duration) -> Option<FirmwareVersion> {
        let LinkHealth::Answering(firmware) = self.current() else {
            return None;
        };
        let at = self.last_answer.load(Ordering::Relaxed).checked_sub(1)?;
        let elapsed = self.epoch.elapsed().as_millis() as u64;
        (elapsed.saturating_sub(at) < age.as_millis() as u64).then_some(firmware)
    }
}

/// A Qwiic Button on a bus, owned by one thread of a service.
pub struct DeviceLink {
    button: LinkedButton,
    /// Whether the bus tries a NACK again: while the button is identified.
    nacks: Arc<AtomicBool>,
    spec: BusSpec,
    firmware: Option<FirmwareVersion>,
    /// The button not answering, logged once at each end.
    outage: Burst,
    /// After a failed identification: when to look again, and why it failed.
    resting: Option<Resting>,
    /// The pause before the next look, growing while the button does not answer.
    probes: Backoff,
    /// How the service goes on during an outage, for its log line ("retrying every poll").
    retrying: &'static str,
    health: watch::Sender<LinkHealth>,
    counters: BusCounters,
    /// Readings rejected as corrupted, logged once at each end of a burst.
    rejected: Burst,
    last_answer: Arc<AtomicU64>,
    epoch: Instant,
}

impl fmt::Debug for DeviceLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceLink")
            .field("spec", &self.spec)
            .field("address", &self.button.address())
            .field("firmware", &self.firmware)
            .finish_non_exhaustive()
    }
}

impl DeviceLink {
    /// A link to the button at `address` on `bus` (opened from `spec`). No traffic yet.
    pub fn new(
        bus: Bus,
        spec: BusSpec,
        address: Address,
        counters: BusCounters,
        retrying: &'static str,
    ) -> Self {
        let bus = service_bus(bus, ATTEMPTS, counters.clone());
        DeviceLink {
            nacks: bus.nack_retries(),
            button: QwiicButton::new(bus, address),
            spec,
            firmware: None,
            outage: Burst::default(),
            resting: None,
            probes: Backoff::new(PROBES),
            retrying,
            health: watch::channel(LinkHealth::Starting).0,
            counters,
            rejected: Burst::default(),
            last_answer: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    /// The health, updated on every identification and every failure, and when the device
    /// last answered.
    pub fn health(&self) -> HealthView {
        HealthView {
            health: self.health.subscribe(),
            last_answer: Arc::clone(&self.last_answer),
            epoch: self.epoch,
        }
    }

    fn answered(&self) {
        let at = self.epoch.elapsed().as_millis() as u64 + 1;
        self.last_answer.store(at, Ordering::Relaxed);
    }

    /// Whether the button answers now: the firmware from the last transaction when it was
    /// within [`FRESH`], else from a read of the ID. One read that shows the identity already
    /// known is proof enough (a corrupted read shifts bits and cannot show it, and an absent
    /// device cannot answer at all), so a health check at idle costs one transaction; any
    /// other reading is decided by agreeing readings, as at identification.
    pub fn check(&mut self) -> Result<FirmwareVersion, DeviceError> {
        let Some(firmware) = self.firmware else {
            return self.identify().map(|identified| identified.firmware);
        };
        if self.health().answered_within(FRESH).is_some() {
            return Ok(firmware);
        }
        match self.button.check_identity() {
            Ok(found) if found == firmware => {
                self.clean_reading();
                self.answered();
                return Ok(firmware);
            }
            Ok(found) => {
                self.rejected(qwiic_button::Error::Corrupted(Corruption::Firmware(found)));
            }
            Err(error @ qwiic_button::Error::WrongId { .. }) => {
                self.rejected(error);
            }
            Err(error) => return Err(self.fail(error)),
        }
        match self.read_identity() {
            Ok(firmware) => {
                self.answered();
                Ok(firmware)
            }
            Err(error) => Err(self.fail(error)),
        }
    }

    /// The button's address.
    pub fn address(&self) -> Address {
        self.button.address()
    }

    /// Identifies the button unless it is identified already (since the last failure). After
    /// a failed identification the button is looked for again only [`PROBE_INTERVAL`] later;
    /// until then the failure is answered without a transaction.
    pub fn identify(&mut self) -> Result<Identified, DeviceError> {
        if let Some(firmware) = self.firmware {
            return Ok(Identified {
                firmware,
                fresh: false,
            });
        }
        if let Some(resting) = &self.resting {
            let now = Instant::now();
            if now < resting.until {
                return Err(DeviceError {
                    bus: self.spec.clone(),
                    address: self.address(),
                    cause: Cause::Resting {
                        last: resting.why.clone(),
                        absent: resting.absent,
                        retry_in: resting.until - now,
                    },
                });
            }
        }
        let firmware = match self.read_identity() {
            Ok(firmware) => firmware,
            Err(error) => {
                let error = self.fail(error);
                self.resting = Some(Resting {
                    until: Instant::now() + self.probes.next_delay(),
                    why: error.to_string(),
                    absent: error.is_absent(),
                });
                return Err(error);
            }
        };
        self.resting = None;
        self.probes.reset();
        self.nacks.store(true, Ordering::Relaxed);
        self.firmware = Some(firmware);
        self.answered();
        match self.outage.end() {
            Some(outage) => tracing::info!(
                bus = %self.spec, %firmware, outage_ms = outage.lasted_ms(),
                "the button answers again"
            ),
            None => tracing::info!(
                bus = %self.spec, address = %self.address(), %firmware, "Qwiic Button found"
            ),
        }
        self.health.send_replace(LinkHealth::Answering(firmware));
        self.counters.button_answering.set(1);
        Ok(Identified {
            firmware,
            fresh: true,
        })
    }

    /// The ID and firmware, believed only when two readings in a row agree and the firmware is
    /// one SparkFun released (1.x): on a Raspberry Pi a corrupted read shifts a byte (0x5D reads
    /// 0x2E, or the ID reads right and the firmware does not), and an identity taken from one
    /// corrupted reading would make every later reading look corrupted. Each rejected reading
    /// is counted; after [`IDENTITY_READS`] without two agreeing, the last error stands (a
    /// wrong ID every time is another device). A bus error ends it at once.
    fn read_identity(&mut self) -> Result<FirmwareVersion, qwiic_button::Error<BusError>> {
        let mut previous = None;
        let mut last = None;
        for _ in 0..IDENTITY_READS {
            let error = match self.button.check_identity() {
                Ok(firmware) if firmware.major == 1 && firmware.minor < 16 => {
                    if previous == Some(firmware) {
                        self.clean_reading();
                        return Ok(firmware);
                    }
                    previous = Some(firmware);
                    continue;
                }
                Ok(firmware) => {
                    qwiic_button::Error::Corrupted(Corruption::UnknownFirmware(firmware))
                }
                Err(error @ qwiic_button::Error::WrongId { .. }) => error,
                Err(error) => return Err(error),
            };
            previous = None;
            last = Some(self.rejected(error));
        }
        Err(match last.map(|error| error.cause) {
            Some(Cause::Driver(error)) => error,
            // Two readings were taken every time and never agreed.
            _ => qwiic_button::Error::Corrupted(Corruption::Disagreeing),
        })
    }

    /// Runs `operation` on the identified button (identifying it first if needed). A failure
    /// ends the identification (the next call identifies the button again), except a reading
    /// rejected as corrupted.
    pub fn run<T>(
        &mut self,
        operation: impl FnOnce(
            &mut LinkedButton,
            FirmwareVersion,
        ) -> Result<T, qwiic_button::Error<BusError>>,
    ) -> Result<T, DeviceError> {
        let Identified { firmware, .. } = self.identify()?;
        match operation(&mut self.button, firmware) {
            Ok(value) => {
                self.answered();
                self.clean_reading();
                Ok(value)
            }
            Err(error) if error.is_corrupted() => Err(self.rejected(error)),
            Err(error) => Err(self.fail(error)),
        }
    }

    /// Counts a rejected reading; the first of a burst is logged.
    fn rejected(&mut self, error: qwiic_button::Error<BusError>) -> DeviceError {
        self.counters.rejected_readings.inc();
        let error = DeviceError::new(&self.spec, self.address(), error);
        if self.rejected.hit() {
            tracing::warn!(%error, "rejecting corrupted readings until they come back clean");
        }
        error
    }

    /// Ends a burst of rejected readings, logging how many there were.
    fn clean_reading(&mut self) {
        if let Some(burst) = self.rejected.end() {
            tracing::info!(rejected = burst.count, "readings are clean again");
        }
    }

    /// Forgets the identification, publishes the reason, and logs the start of an outage once.
    fn fail(&mut self, error: qwiic_button::Error<BusError>) -> DeviceError {
        self.firmware = None;
        self.nacks.store(false, Ordering::Relaxed);
        let error = DeviceError::new(&self.spec, self.address(), error);
        if self.outage.hit() {
            tracing::warn!(%error, "the button stopped answering; {}", self.retrying);
        }
        self.health
            .send_replace(LinkHealth::Unavailable(error.to_string()));
        self.counters.button_answering.set(0);
        error
    }
}

/// After a failed identification: when the button is looked for again, and why it failed.
#[derive(Debug, Clone)]
struct Resting {
    until: Instant,
    why: String,
    absent: bool,
}

/// A driver error in context: which bus, which address, and what to check.
#[derive(Debug)]
pub struct DeviceError {
    /// The bus, as given.
    pub bus: BusSpec,
    /// The button's address.
    pub address: Address,
    /// What went wrong.
    pub cause: Cause,
}

/// What went wrong with the button.
#[derive(Debug)]
pub enum Cause {
    /// The driver failed now.
    Driver(qwiic_button::Error<BusError>),
    /// The button did not answer lately and is not looked for again before `retry_in`.
    Resting {
        /// Why the last attempt failed, in words.
        last: String,
        /// The last attempt found no device at all.
        absent: bool,
        /// Until the next attempt.
        retry_in: Duration,
    },
}

impl DeviceError {
    /// Puts a driver error in context.
    pub fn new(bus: &BusSpec, address: Address, error: qwiic_button::Error<BusError>) -> Self {
        DeviceError {
            bus: bus.clone(),
            address,
            cause: Cause::Driver(error),
        }
    }

    /// True when a reading was rejected as corrupted (the device answered).
    pub fn is_corrupted(&self) -> bool {
        matches!(&self.cause, Cause::Driver(error) if error.is_corrupted())
    }

    /// True when the device did not answer at all (absent, unplugged, simulator down).
    pub fn is_absent(&self) -> bool {
        match &self.cause {
            Cause::Driver(qwiic_button::Error::I2C(BusError::Tcp(
                TcpBusError::Connect { .. } | TcpBusError::Io { .. },
            ))) => true,
            Cause::Driver(error) => error.is_no_acknowledge(),
            Cause::Resting { absent, .. } => *absent,
        }
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (bus, address, hint) = (&self.bus, self.address, self.bus.hint());
        let error = match &self.cause {
            Cause::Driver(error) => error,
            Cause::Resting { last, retry_in, .. } => {
                return write!(
                    f,
                    "{last} (looked for again in {} ms)",
                    retry_in.as_millis()
                );
            }
        };
        match error {
            qwiic_button::Error::WrongId { found, .. }
                if *found == qwiic_button::DEVICE_ID >> 1 =>
            {
                write!(
                    f,
                    "the Qwiic Button at {address} on {bus} read its ID as {found:#04x}, which is 0x5d shifted by one bit: the bus corrupts reads (a Raspberry Pi's clock-stretching bug: use the i2c-gpio overlay or a lower bus speed, see the README)"
                )
            }
            qwiic_button::Error::WrongId { found, .. } => write!(
                f,
                "no Qwiic Button at {address} on {bus}: ID register read {found:#04x}, expected {:#04x}; {hint}",
                qwiic_button::DEVICE_ID
            ),
            qwiic_button::Error::I2C(BusError::Tcp(error)) if !error.is_device_answer() => {
                write!(f, "no Qwiic Button at {address} on {bus}: {error}")
            }
            error if error.is_no_acknowledge() => write!(
                f,
                "no Qwiic Button answers at {address} on {bus} (no acknowledge); {hint}"
            ),
            qwiic_button::Error::I2C(error) => {
                write!(f, "Qwiic Button at {address} on {bus}: I2C error: {error}")
            }
            error => write!(f, "Qwiic Button at {address} on {bus}: {error}"),
        }
    }
}

impl std::error::Error for DeviceError {}

/// Opens `bus` and checks that a Qwiic Button answers at `address`, returning the driver and
/// the firmware version (for tools and tests; services use a [`DeviceLink`]).
pub fn connect(
    bus: &BusSpec,
    address: Address,
) -> Result<(QwiicButton<Bus>, FirmwareVersion), ConnectError> {
    let mut button = QwiicButton::new(bus.open()?, address);
    let firmware = button
        .check_identity()
        .map_err(|error| DeviceError::new(bus, address, error))?;
    Ok((button, firmware))
}

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The bus could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The bus opened but no Qwiic Button answered.
    #[error(transparent)]
    Device(#[from] DeviceError),
}
