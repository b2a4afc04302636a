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
//!
//! A request for the setting the LED already holds is answered by the handle itself, without
//! the thread, when nothing else is on its way to the device and the device answered within
//! [`FRESH`]: the LED registers have one writer, this service, so what it last read or wrote
//! is what they hold. That is the common case (the button service and `curl` repeat states).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use qwiic_bus::{DeviceError, DeviceLink, FRESH, HealthView};
use qwiic_button::{FirmwareVersion, LedConfig};
use tokio::sync::{oneshot, watch};

use crate::metrics::Metrics;

/// How many commands may wait for the bus before callers are told it is busy: more than the
/// API admits at once ([`Limits::requests`](crate::Limits::requests), 512), so that an admitted request waits its turn
/// (changes within a window are merged, see [`COALESCE_WINDOW`]) instead of being refused,
/// and the health check and MQTT still find room. About 40 kB at most.
const QUEUE_DEPTH: usize = 576;
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
    /// Changes sent to the thread and not yet answered (held ones included).
    changes_in_flight: Arc<AtomicUsize>,
    /// False while the published state may not be what the device holds (a write whose
    /// read-back failed may or may not have landed).
    published_is_held: Arc<AtomicBool>,
    metrics: Metrics,
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
        let changes_in_flight = Arc::new(AtomicUsize::new(0));
        let published_is_held = Arc::new(AtomicBool::new(true));
        let owner = Owner {
            freshness: health.clone(),
            link,
            last_write: None,
            held: None,
            cached: None,
            last_change: None,
            eeprom_byte_writes: 0,
            updates: updates_tx,
            metrics: metrics.clone(),
            changes_in_flight: changes_in_flight.clone(),
            published_is_held: published_is_held.clone(),
        };
        std::thread::Builder::new()
            .name("led-owner".into())
            .spawn(move || owner.run(receiver))?;
        Ok(LedDevice {
            commands,
            updates,
            health,
            timeout,
            changes_in_flight,
            published_is_held,
            metrics: metrics.clone(),
        })
    }

    /// Sets the LED unless it already holds `led`; `by` is recorded as who changed it (written
    /// out only then).
    pub async fn set(
        &self,
        led: LedConfig,
        by: impl fmt::Display,
    ) -> Result<LedState, DeviceFault> {
        if let Some(state) = self.already(led) {
            self.metrics.led_writes_skipped.inc();
            return Ok(state);
        }
        let by = by.to_string();
        let (reply, answer) = oneshot::channel();
        self.changes_in_flight.fetch_add(1, Ordering::SeqCst);
        if let Err(refused) = self.send(Command::Set { led, by, reply }) {
            // It never reached the thread, which counts down what it answers.
            self.changes_in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(refused);
        }
        self.wait(answer).await
    }

    /// The LED's state, when it holds `led` for sure: no change on its way, the state the
    /// thread last published and still vouches for, and a device that answered within
    /// [`FRESH`].
    fn already(&self, led: LedConfig) -> Option<LedState> {
        if self.changes_in_flight.load(Ordering::SeqCst) != 0
            || !self.published_is_held.load(Ordering::SeqCst)
        {
            return None;
        }
        self.health.answered_within(FRESH)?;
        let state = self.updates.borrow().clone()?;
        (state.led == led).then_some(state)
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

    /// The button's link, as the thread sees it (its firmware, for announcements).
    pub fn button(&self) -> HealthView {
        self.health.clone()
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
        self.send(command(reply))?;
        self.wait(answer).await
    }

    /// Queues a command for the thread, unless the queue is full or the thread has ended.
    fn send(&self, command: Command) -> Result<(), DeviceFault> {
        self.commands
            .try_send(command)
            .map_err(|error| match error {
                TrySendError::Full(_) => DeviceFault::Busy,
                TrySendError::Disconnected(_) => DeviceFault::Stopped,
            })
    }

    /// The thread's answer, or a timeout.
    async fn wait<T>(
        &self,
        answer: oneshot::Receiver<Result<T, DeviceFault>>,
    ) -> Result<T, DeviceFault> {
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
    /// Whether the device answered lately: the cache is trusted only within [`FRESH`] of an
    /// answer, so a repeat reads the device about once a second (and a handle, seeing that
    /// answer, may answer repeats itself).
    freshness: HealthView,
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
    /// Shared with the handles: counted down here once a change is answered.
    changes_in_flight: Arc<AtomicUsize>,
    /// Shared with the handles: cleared before a write, set again when a state is published.
    published_is_held: Arc<AtomicBool>,
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
            let result = self.set(led, by);
            self.answered(1);
            let _ = reply.send(result);
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
            self.answered(held.replies.len());
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
        // Until a state is published again, the published one may not be what the LED holds.
        self.published_is_held.store(false, Ordering::SeqCst);
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
            || self.freshness.answered_within(FRESH).is_none()
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

    /// `count` changes are answered: after the state they leave is published, so a handle
    /// that sees none in flight sees their outcome.
    fn answered(&self, count: usize) {
        self.changes_in_flight.fetch_sub(count, Ordering::SeqCst);
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
        self.published_is_held.store(true, Ordering::SeqCst);
        state
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use qwiic_bus::Bus;
    use qwiic_button::Address;
    use qwiic_sim::SimButton;

    use super::*;

    fn device(sim: &SimButton, metrics: &Metrics) -> LedDevice {
        let link = DeviceLink::new(
            Bus::Sim(sim.clone()),
            "sim".parse().unwrap(),
            Address::default(),
            metrics.bus.clone(),
            "retrying on the next request",
        );
        LedDevice::spawn(link, metrics, Duration::from_secs(2)).unwrap()
    }

    const ON: LedConfig = LedConfig::steady(255);
    const OFF: LedConfig = LedConfig::steady(0);

    #[tokio::test]
    async fn after_a_write_whose_read_back_failed_a_repeat_is_not_answered_from_memory() {
        let (sim, metrics) = (SimButton::new(), Metrics::default());
        let led = device(&sim, &metrics);
        led.set(ON, "first").await.unwrap();
        // The write lands, every read-back is corrupted: the outcome is unknown to the service.
        sim.set_corrupt_rate(1.0).unwrap();
        assert!(led.set(OFF, "lost").await.is_err());
        assert_eq!(sim.led().brightness, 0, "the write itself landed");
        sim.set_corrupt_rate(0.0).unwrap();
        // ON is what the service last published; the LED must be written again, not skipped.
        led.set(ON, "again").await.unwrap();
        assert_eq!(sim.led().brightness, 255, "ON written again");
    }

    #[test]
    fn the_queue_holds_every_request_the_api_admits_and_more() {
        let admitted = crate::Limits::default().requests;
        assert!(QUEUE_DEPTH >= admitted + 64, "{QUEUE_DEPTH} for {admitted}");
    }

    #[tokio::test]
    async fn a_setting_the_led_already_holds_is_answered_without_the_bus() {
        let (sim, metrics) = (SimButton::new(), Metrics::default());
        let led = device(&sim, &metrics);
        led.set(ON, "first").await.unwrap();
        let before = sim.stats().transactions;
        for _ in 0..100 {
            let state = led.set(ON, "again").await.unwrap();
            assert_eq!(state.led, ON);
            assert_eq!(state.change.as_ref().unwrap().by, "first");
        }
        assert_eq!(
            sim.stats().transactions,
            before,
            "no transaction for a repeat"
        );
        assert_eq!(metrics.led_writes_skipped.get(), 100);
    }

    #[tokio::test]
    async fn a_repeat_behind_a_held_change_waits_for_it_and_the_last_request_wins() {
        let (sim, metrics) = (SimButton::new(), Metrics::default());
        let led = device(&sim, &metrics);
        led.set(ON, "first").await.unwrap();
        // Within the window after that write, OFF is held for its end; ON asked after it
        // must not be answered from the state published before OFF (still ON), or OFF would
        // land last.
        let mut off = std::pin::pin!(led.set(OFF, "second"));
        assert!(
            futures_util::poll!(off.as_mut()).is_pending(),
            "OFF is held until the window closes"
        );
        let on = led.set(ON, "third").await.unwrap();
        assert_eq!(on.led, ON);
        assert_eq!(off.await.unwrap().led, ON, "OFF was superseded");
        assert_eq!(sim.led().brightness, 255);
        assert_eq!(metrics.led_writes_coalesced.get(), 1);
    }

    #[tokio::test]
    async fn after_a_failed_transaction_a_repeat_goes_to_the_bus() {
        let (sim, metrics) = (SimButton::new(), Metrics::default());
        let led = device(&sim, &metrics);
        led.set(ON, "first").await.unwrap();
        sim.set_fault_rate(1.0, qwiic_sim::Fault::Nack).unwrap();
        assert!(led.get().await.is_err());
        // The device failed since it last answered: the repeat is not taken on trust.
        let error = led.set(ON, "again").await.unwrap_err();
        assert!(matches!(error, DeviceFault::Unavailable(_)), "{error:?}");
        sim.set_fault_rate(0.0, qwiic_sim::Fault::Nack).unwrap();
        let before = sim.stats().transactions;
        assert_eq!(led.set(ON, "again").await.unwrap().led, ON);
        assert!(sim.stats().transactions > before, "read from the device");
    }
}
