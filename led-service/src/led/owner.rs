//! The owner thread: the one holder of the button's [`DeviceLink`] in this service. It
//! coalesces changes within a window, writes only what differs and only within the wear
//! budget, reads back every write, and publishes the LED after every change.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use qwiic_bus::{DeviceLink, FRESH, HealthView};
use qwiic_button::{FirmwareVersion, LedConfig};
use runtime_kit::TokenBucket;
use tokio::sync::{oneshot, watch};

use super::{
    COALESCE_WINDOW, Change, Command, DeviceFault, LedState, READ_ATTEMPTS, eeprom_bytes_changed,
};
use crate::metrics::Metrics;

/// Replies to requests waiting for the LED.
type Reply = oneshot::Sender<Result<LedState, DeviceFault>>;

/// Changes held until the window closes: the last one whose caller still waits wins; everyone
/// waiting gets its result.
#[derive(Default)]
struct Held {
    changes: Vec<(LedConfig, String, Reply)>,
}

pub(super) struct Owner {
    link: DeviceLink,
    /// Whether the device answered lately: the cache is trusted only within [`FRESH`] of an
    /// answer, so a repeat reads the device about once a second (and a handle, seeing that
    /// answer, may answer repeats itself).
    freshness: HealthView,
    /// When the LED was last written, for the coalescing window.
    last_write: Option<Instant>,
    /// When the firmware will have saved the last write to EEPROM. A write that lands before
    /// is shown but not saved where the save pass has been, so a power cut would bring the
    /// older setting back: the next write waits for this.
    saved_at: Option<Instant>,
    held: Option<Held>,
    /// What the LED registers hold, while we are sure of it; `None` after any error and
    /// after every re-identification, because the device may have been power-cycled or
    /// replaced meanwhile.
    cached: Option<LedConfig>,
    last_change: Option<Change>,
    eeprom_byte_writes: u64,
    /// LED writes allowed from now on (EEPROM wear); shared with the handles, which read it.
    budget: Arc<Mutex<TokenBucket>>,
    updates: watch::Sender<Option<LedState>>,
    metrics: Metrics,
    /// Shared with the handles: counted down here once a change is answered.
    changes_in_flight: Arc<AtomicUsize>,
    /// Shared with the handles: cleared before a write, set again when a state is published.
    published_is_held: Arc<AtomicBool>,
}

impl Owner {
    /// The owner of `link`, publishing on `updates`, sharing the two flags with the handles.
    pub(super) fn new(
        link: DeviceLink,
        budget: Arc<Mutex<TokenBucket>>,
        updates: watch::Sender<Option<LedState>>,
        metrics: Metrics,
        changes_in_flight: Arc<AtomicUsize>,
        published_is_held: Arc<AtomicBool>,
    ) -> Self {
        Owner {
            freshness: link.health(),
            link,
            last_write: None,
            saved_at: None,
            held: None,
            cached: None,
            last_change: None,
            eeprom_byte_writes: 0,
            budget,
            updates,
            metrics,
            changes_in_flight,
            published_is_held,
        }
    }

    pub(super) fn run(mut self, commands: mpsc::Receiver<Command>) {
        loop {
            let command = match self.window_end() {
                // The window has closed: what is held goes first, whatever else is queued.
                Some(end) if end <= Instant::now() => {
                    self.flush();
                    continue;
                }
                Some(end) => match commands.recv_timeout(end - Instant::now()) {
                    Ok(command) => command,
                    Err(RecvTimeoutError::Timeout) => {
                        self.flush();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return self.flush(),
                },
                None => match commands.recv() {
                    Ok(command) => command,
                    Err(_) => return,
                },
            };
            // A caller that has gone (answered 504 at its deadline, or hung up) gets nothing
            // done: above all, its change is not written later.
            match command {
                Command::Set { reply, .. } if reply.is_closed() => self.answered(1),
                Command::Set {
                    led,
                    by,
                    essential,
                    reply,
                } => self.request(led, by, essential, reply),
                Command::Get { reply } if !reply.is_closed() => {
                    let _ = reply.send(self.get());
                }
                Command::Health { reply } if !reply.is_closed() => {
                    let _ = reply.send(self.check());
                }
                Command::Get { .. } | Command::Health { .. } => {}
            }
        }
    }

    /// When the held changes are due: the end of the window after the last write.
    fn window_end(&self) -> Option<Instant> {
        self.held.as_ref()?;
        self.last_write.map(|at| at + COALESCE_WINDOW)
    }

    /// A change: at once outside the window (or when essential), held and merged inside it.
    fn request(&mut self, led: LedConfig, by: String, essential: bool, reply: Reply) {
        let in_window = self
            .last_write
            .is_some_and(|at| at.elapsed() < COALESCE_WINDOW);
        if essential || (!in_window && self.held.is_none()) {
            let result = self.set(led, by, essential, &|| !reply.is_closed());
            self.answered(1);
            let _ = reply.send(result);
            return;
        }
        if self.held.is_some() {
            // The change held so far is superseded: it never gets its own write.
            self.metrics.led_writes_coalesced.inc();
        }
        self.held
            .get_or_insert_with(Held::default)
            .changes
            .push((led, by, reply));
    }

    /// Writes what is held, once, and answers everyone who waited for it: the latest change
    /// whose caller still waits; nothing when every caller has gone.
    fn flush(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        let waiting = held.changes.len();
        let (replies, wanted): (Vec<Reply>, Option<(LedConfig, String)>) = held
            .changes
            .into_iter()
            .filter(|(_, _, reply)| !reply.is_closed())
            .fold((Vec::new(), None), |(mut replies, _), (led, by, reply)| {
                replies.push(reply);
                (replies, Some((led, by)))
            });
        if let Some((led, by)) = wanted {
            let result = self.set(led, by, false, &|| {
                replies.iter().any(|reply| !reply.is_closed())
            });
            for reply in replies {
                let _ = reply.send(result.clone());
            }
        }
        self.answered(waiting);
    }

    /// Writes `wanted` unless the LED holds it, within the wear budget unless `essential`,
    /// and only while `still_wanted` (a caller still waits: reading the LED first can outlast
    /// a caller's deadline).
    fn set(
        &mut self,
        wanted: LedConfig,
        by: String,
        essential: bool,
        still_wanted: &dyn Fn() -> bool,
    ) -> Result<LedState, DeviceFault> {
        let current = self.current()?;
        if current == wanted {
            self.metrics.led_writes_skipped.inc();
            return Ok(self.publish(wanted));
        }
        if !still_wanted() {
            self.metrics.led_writes_abandoned.inc();
            return Err(DeviceFault::Abandoned);
        }
        let taken = self
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(Instant::now());
        if let Err(retry_after) = taken {
            if !essential {
                self.metrics.led_writes_refused.inc();
                return Err(DeviceFault::WearLimit(retry_after));
            }
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
        Ok(self.publish(wanted))
    }

    /// One write of the whole setting over `from` (what the device held), after the save pass
    /// of the last one, counting it and the EEPROM bytes it changes: it reached the device,
    /// whatever a read-back says afterwards.
    fn write(&mut self, from: LedConfig, to: LedConfig) -> Result<(), DeviceFault> {
        if let Some(wait) = self
            .saved_at
            .and_then(|at| at.checked_duration_since(Instant::now()))
        {
            std::thread::sleep(wait);
        }
        let changed = eeprom_bytes_changed(from, to);
        let now = Instant::now();
        self.last_write = Some(now);
        // Even a write that failed may have reached the device.
        self.saved_at = Some(now + qwiic_button::save_pass_time(changed as u32));
        self.link.run(|button, _| button.set_led(to))?;
        self.metrics.led_changes.inc();
        self.eeprom_byte_writes += changed;
        self.metrics.eeprom_byte_writes.inc_by(changed);
        Ok(())
    }

    fn get(&mut self) -> Result<LedState, DeviceFault> {
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
