//! The LED's one owner: a thread that holds the button's [`DeviceLink`], serializes every
//! transaction, keeps blocking I/O off the async runtime, and never rewrites a setting the
//! device already holds (each changed byte costs the firmware an EEPROM write).
//!
//! Handlers talk to it through [`LedDevice`], a cheap handle that sends commands over a bounded
//! channel and waits for the answer with a deadline. The thread ends when the last handle is
//! dropped, after the server has switched the LED off on its way out.
//!
//! Writes are coalesced: a change comes at once when there was no write in the last
//! [`COALESCE_WINDOW`]; changes within the window are held and merged (the last one wins) into
//! one write when it closes, and every request held gets the result. A flood of alternating
//! requests, from the LAN or a browser, so costs at most ten writes a second.

use std::sync::mpsc::{self, RecvTimeoutError, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use qwiic_bus::{DeviceError, DeviceLink, FRESH, HealthView};
use qwiic_button::{FirmwareVersion, LedConfig};
use tokio::sync::{oneshot, watch};

use crate::metrics::Metrics;

/// How many commands may wait for the bus before callers are told it is busy.
const QUEUE_DEPTH: usize = 64;
/// Readings of the LED registers tried before giving up on a bus that corrupts them.
const READ_ATTEMPTS: u32 = 3;
/// At most one LED write per window: later changes within it are merged.
pub const COALESCE_WINDOW: Duration = Duration::from_millis(100);

/// The LED as the device holds it, and who last changed it through this service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedState {
    /// The LED registers.
    pub led: LedConfig,
    /// The last change made through this service, if any.
    pub change: Option<Change>,
    /// EEPROM bytes this service's writes have changed since it started (each costs one of
    /// the ATtiny84's ~100,000 write cycles of that byte).
    pub eeprom_byte_writes: u64,
}

/// How many of the six EEPROM bytes behind the LED registers differ between two settings:
/// what a write of `to` over `from` costs the firmware's EEPROM.
pub fn eeprom_bytes_changed(from: LedConfig, to: LedConfig) -> u64 {
    let bytes = |led: LedConfig| {
        let [c0, c1] = led.cycle_time_ms.to_le_bytes();
        let [o0, o1] = led.off_time_ms.to_le_bytes();
        [led.brightness, led.granularity, c0, c1, o0, o1]
    };
    bytes(from)
        .iter()
        .zip(bytes(to))
        .map(|(a, b)| u64::from(*a != b))
        .sum()
}

/// A change made through this service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// When.
    pub at: SystemTime,
    /// Who: the client's address and User-Agent, or `shutdown`.
    pub by: String,
}

/// Why the device could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceFault {
    /// The button did not answer, or answered wrongly.
    #[error("{0}")]
    Unavailable(String),
    /// Too many requests are waiting for the bus.
    #[error("the I2C bus is busy: {QUEUE_DEPTH} requests are already waiting; retry shortly")]
    Busy,
    /// The bus did not finish in time.
    #[error("the button did not answer within {} ms; check the bus and the cable", .0.as_millis())]
    Timeout(Duration),
    /// The owner thread has stopped (the service is shutting down).
    #[error("the service is shutting down")]
    Stopped,
    /// The LED registers did not read back what was written, twice.
    #[error(
        "the LED registers read back {found:?} after writing {wanted:?} twice: the bus corrupts transfers (on a Raspberry Pi, its clock-stretching bug: see the README)"
    )]
    NotVerified {
        /// What was written.
        wanted: LedConfig,
        /// What was read back the second time.
        found: LedConfig,
    },
}

impl From<DeviceError> for DeviceFault {
    fn from(error: DeviceError) -> Self {
        DeviceFault::Unavailable(error.to_string())
    }
}

/// A handle to the LED's owner thread. Clones share it.
#[derive(Debug, Clone)]
pub struct LedDevice {
    commands: mpsc::SyncSender<Command>,
    updates: watch::Receiver<Option<LedState>>,
    health: HealthView,
    timeout: Duration,
}

enum Command {
    Set {
        led: LedConfig,
        by: String,
        reply: oneshot::Sender<Result<LedState, DeviceFault>>,
    },
    Get {
        reply: oneshot::Sender<Result<LedState, DeviceFault>>,
    },
    Health {
        reply: oneshot::Sender<Result<FirmwareVersion, DeviceFault>>,
    },
}

impl LedDevice {
    /// Starts the owner thread for the button behind `link`. Every call is answered within
    /// `timeout` or reported as [`DeviceFault::Timeout`].
    pub fn spawn(
        link: DeviceLink,
        metrics: &Metrics,
        timeout: Duration,
    ) -> std::io::Result<LedDevice> {
        let (commands, receiver) = mpsc::sync_channel(QUEUE_DEPTH);
        let (updates_tx, updates) = watch::channel(None);
        let health = link.health();
        let owner = Owner {
            link,
            last_write: None,
            held: None,
            cached: None,
            last_change: None,
            eeprom_byte_writes: 0,
            updates: updates_tx,
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name("led-owner".into())
            .spawn(move || owner.run(receiver))?;
        Ok(LedDevice {
            commands,
            updates,
            health,
            timeout,
        })
    }

    /// Sets the LED unless it already holds `led`; `by` is recorded as who changed it.
    pub async fn set(&self, led: LedConfig, by: String) -> Result<LedState, DeviceFault> {
        self.ask(|reply| Command::Set { led, by, reply }).await
    }

    /// Reads the LED from the device.
    pub async fn get(&self) -> Result<LedState, DeviceFault> {
        self.ask(|reply| Command::Get { reply }).await
    }

    /// Ok while a Qwiic Button answers: at once when a transaction succeeded within the last
    /// second (so a busy service never queues its health check behind requests), else after a
    /// read of its ID.
    pub async fn health(&self) -> Result<FirmwareVersion, DeviceFault> {
        if let Some(firmware) = self.health.answered_within(FRESH) {
            return Ok(firmware);
        }
        self.ask(|reply| Command::Health { reply }).await
    }

    /// The LED after every change, for live updates; `None` until first known.
    pub fn updates(&self) -> watch::Receiver<Option<LedState>> {
        self.updates.clone()
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, DeviceFault>>) -> Command,
    ) -> Result<T, DeviceFault> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .try_send(command(reply))
            .map_err(|error| match error {
                TrySendError::Full(_) => DeviceFault::Busy,
                TrySendError::Disconnected(_) => DeviceFault::Stopped,
            })?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(DeviceFault::Stopped),
            Err(_) => Err(DeviceFault::Timeout(self.timeout)),
        }
    }
}

/// Replies to requests waiting for the LED.
type Reply = oneshot::Sender<Result<LedState, DeviceFault>>;

/// Changes held until the window closes: the last one wins; everyone waiting gets its result.
struct Held {
    led: LedConfig,
    by: String,
    replies: Vec<Reply>,
}

struct Owner {
    link: DeviceLink,
    /// When the LED was last written, for the coalescing window.
    last_write: Option<Instant>,
    held: Option<Held>,
    /// What the LED registers hold, while we are sure of it; `None` after any error and
    /// after every re-identification, because the device may have been power-cycled or
    /// replaced meanwhile.
    cached: Option<LedConfig>,
    last_change: Option<Change>,
    eeprom_byte_writes: u64,
    updates: watch::Sender<Option<LedState>>,
    metrics: Metrics,
}

impl Owner {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        loop {
            let command = match self.window_end() {
                Some(end) => {
                    match commands.recv_timeout(end.saturating_duration_since(Instant::now())) {
                        Ok(command) => command,
                        Err(RecvTimeoutError::Timeout) => {
                            self.flush();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => return self.flush(),
                    }
                }
                None => match commands.recv() {
                    Ok(command) => command,
                    Err(_) => return,
                },
            };
            // A send error means the caller gave up waiting (timeout): nothing to do.
            match command {
                Command::Set { led, by, reply } => self.request(led, by, reply),
                Command::Get { reply } => {
                    let _ = reply.send(self.get());
                }
                Command::Health { reply } => {
                    let _ = reply.send(self.check());
                }
            }
        }
    }

    /// When the held changes are due: the end of the window after the last write.
    fn window_end(&self) -> Option<Instant> {
        self.held.as_ref()?;
        self.last_write.map(|at| at + COALESCE_WINDOW)
    }

    /// A change: at once outside the window, held and merged inside it.
    fn request(&mut self, led: LedConfig, by: String, reply: Reply) {
        let in_window = self
            .last_write
            .is_some_and(|at| at.elapsed() < COALESCE_WINDOW);
        if !in_window && self.held.is_none() {
            let _ = reply.send(self.set(led, by));
            return;
        }
        if self.held.is_some() {
            // The change held so far is superseded: it never gets its own write.
            self.metrics.led_writes_coalesced.inc();
        }
        let held = self.held.get_or_insert_with(|| Held {
            led,
            by: String::new(),
            replies: Vec::new(),
        });
        held.led = led;
        held.by = by;
        held.replies.push(reply);
    }

    /// Writes what is held, once, and answers everyone who waited for it.
    fn flush(&mut self) {
        if let Some(held) = self.held.take() {
            let result = self.set(held.led, held.by);
            for reply in held.replies {
                let _ = reply.send(result.clone());
            }
        }
    }

    fn set(&mut self, wanted: LedConfig, by: String) -> Result<LedState, DeviceFault> {
        let current = self.current()?;
        if current == wanted {
            self.metrics.led_writes_skipped.inc();
            return Ok(self.publish(wanted));
        }
        self.cached = None;
        self.write(current, wanted)?;
        // Read back what the device holds; on a mismatch write once more, then give up.
        let found = self.read_led()?;
        if found != wanted {
            self.metrics.led_write_mismatches.inc();
            tracing::warn!(
                ?wanted,
                ?found,
                "the LED read back something else; writing again"
            );
            self.write(found, wanted)?;
            let again = self.read_led()?;
            if again != wanted {
                self.metrics.led_write_mismatches.inc();
                return Err(DeviceFault::NotVerified {
                    wanted,
                    found: again,
                });
            }
        }
        self.cached = Some(wanted);
        tracing::info!(brightness = wanted.brightness, pulse_ms = wanted.cycle_time_ms, %by, "LED changed");
        self.last_change = Some(Change {
            at: SystemTime::now(),
            by,
        });
        self.metrics.led_changes.inc();
        Ok(self.publish(wanted))
    }

    /// One write of the whole setting over `from` (what the device held), counting the EEPROM
    /// bytes it changes.
    fn write(&mut self, from: LedConfig, to: LedConfig) -> Result<(), DeviceFault> {
        self.last_write = Some(Instant::now());
        self.link.run(|button, _| button.set_led(to))?;
        let changed = eeprom_bytes_changed(from, to);
        self.eeprom_byte_writes += changed;
        self.metrics.eeprom_byte_writes.inc_by(changed);
        Ok(())
    }

    fn get(&mut self) -> Result<LedState, DeviceFault> {
        self.cached = None; // a GET reads the device, not our memory
        let led = self.current()?;
        Ok(self.publish(led))
    }

    /// The LED registers: from the cache, or read from the device.
    fn current(&mut self) -> Result<LedConfig, DeviceFault> {
        if self
            .link
            .identify()
            .inspect_err(|_| self.cached = None)?
            .fresh
        {
            self.cached = None;
        }
        if let Some(led) = self.cached {
            return Ok(led);
        }
        let led = self.read_led()?;
        self.cached = Some(led);
        Ok(led)
    }

    /// The LED registers, read until a reading is not rejected as corrupted (a few tries).
    fn read_led(&mut self) -> Result<LedConfig, DeviceFault> {
        let mut attempt = 1;
        loop {
            match self.link.run(|button, _| button.led()) {
                Err(error) if error.is_corrupted() && attempt < READ_ATTEMPTS => attempt += 1,
                result => return Ok(result?),
            }
        }
    }

    /// Whether the button answers (a read of its ID unless one just succeeded).
    fn check(&mut self) -> Result<FirmwareVersion, DeviceFault> {
        let firmware = self.link.check().inspect_err(|_| self.cached = None)?;
        Ok(firmware)
    }

    fn publish(&self, led: LedConfig) -> LedState {
        let state = LedState {
            led,
            change: self.last_change.clone(),
            eeprom_byte_writes: self.eeprom_byte_writes,
        };
        self.updates.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&state);
            if changed {
                *current = Some(state.clone());
            }
            changed
        });
        state
    }
}
