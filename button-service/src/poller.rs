//! The button's one owner: a thread that reads the status register every poll period and turns
//! it into the states the LED must show, in order. A press shorter than the period is not lost:
//! the firmware's event and click flags turn it into on-then-off.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qwiic_bus::{Bus, BusError, BusSpec, DeviceError};
use qwiic_button::{ButtonStatus, QwiicButton};
use service_kit::{ServiceBus, service_bus};
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;

/// Tries per transaction: status reads and the status clear may be repeated (this service
/// never pops a queue).
const BUS_ATTEMPTS: u32 = 3;

/// Whether the button answers, for /healthz.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ButtonHealth {
    /// Not polled yet.
    Starting,
    /// The last poll succeeded.
    Ok {
        /// Firmware version of the button.
        firmware: String,
    },
    /// The last poll failed; why, and what to check.
    Unavailable(String),
}

/// The LED states implied by one status reading, given the previous `is_pressed`.
pub fn transitions(previous: Option<bool>, status: ButtonStatus) -> Vec<bool> {
    let now = status.is_pressed;
    match previous {
        None => vec![now],
        Some(before) if before != now => vec![now],
        // Same level as last time, but edges happened in between: a short press (or a short
        // release) the LED must still show.
        Some(before) if status.has_been_clicked || status.event_available => vec![!before, before],
        Some(_) => Vec::new(),
    }
}

/// Starts the poll thread. It stops when `stop` is set or the receiver of `states` is gone.
pub fn spawn(
    button: QwiicButton<Bus>,
    spec: BusSpec,
    period: Duration,
    metrics: Metrics,
    states: mpsc::Sender<bool>,
    health: watch::Sender<ButtonHealth>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let address = button.address();
    let bus = service_bus(
        button.destroy(),
        BUS_ATTEMPTS,
        metrics.i2c_transactions.clone(),
        metrics.i2c_errors.clone(),
    );
    let mut poller = Poller {
        button: QwiicButton::new(bus, address),
        spec,
        metrics,
        states,
        health,
        previous: None,
        identified: false,
        outage_since: None,
    };
    std::thread::Builder::new()
        .name("button-poller".into())
        .spawn(move || {
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if poller.poll().is_err() {
                    return; // nobody listens any more
                }
                next += period;
                let now = Instant::now();
                if next < now {
                    next = now; // the bus was slow: skip the missed ticks instead of bursting
                }
                std::thread::sleep(next - now);
            }
        })
}

struct Poller {
    button: QwiicButton<ServiceBus<Bus>>,
    spec: BusSpec,
    metrics: Metrics,
    states: mpsc::Sender<bool>,
    health: watch::Sender<ButtonHealth>,
    /// `is_pressed` at the last good poll; `None` until the first.
    previous: Option<bool>,
    /// The ID was checked since the last error.
    identified: bool,
    /// Set while the button does not answer, to log an outage once at each end.
    outage_since: Option<Instant>,
}

/// The state receiver is gone: the service is stopping.
struct Closed;

impl Poller {
    fn poll(&mut self) -> Result<(), Closed> {
        self.metrics.polls.inc();
        if !self.identified && !self.identify() {
            return Ok(());
        }
        let status = match self.button.status() {
            Ok(status) => status,
            Err(error) => {
                self.fail(error);
                return Ok(());
            }
        };
        if status.event_available || status.has_been_clicked {
            // One write of 0; if it fails, the flags stay and the next poll sees them again.
            if let Err(error) = self.button.clear_status() {
                self.fail(error);
                return Ok(());
            }
        }
        for state in transitions(self.previous, status) {
            if state && self.previous.is_some() {
                self.metrics.presses.inc();
            }
            self.states.blocking_send(state).map_err(|_| Closed)?;
        }
        self.previous = Some(status.is_pressed);
        Ok(())
    }

    fn identify(&mut self) -> bool {
        let firmware = match self.button.check_identity() {
            Ok(firmware) => firmware,
            Err(error) => {
                self.fail(error);
                return false;
            }
        };
        // Flags from before we looked describe presses nobody waited for: start clean.
        if let Err(error) = self.button.clear_status() {
            self.fail(error);
            return false;
        }
        self.identified = true;
        match self.outage_since.take() {
            Some(since) => tracing::info!(
                bus = %self.spec, outage_ms = since.elapsed().as_millis() as u64,
                "the button answers again"
            ),
            None => {
                tracing::info!(bus = %self.spec, address = %self.button.address(), %firmware, "Qwiic Button found")
            }
        }
        if !firmware.pops_reliably() {
            tracing::warn!(%firmware, "firmware older than 1.3: its queue pop is unreliable (this service does not pop)");
        }
        self.health.send_replace(ButtonHealth::Ok {
            firmware: firmware.to_string(),
        });
        true
    }

    fn fail(&mut self, error: qwiic_button::Error<BusError>) {
        self.metrics.poll_errors.inc();
        self.identified = false;
        self.previous = None;
        let error = DeviceError::new(&self.spec, self.button.address(), error);
        if self.outage_since.is_none() {
            self.outage_since = Some(Instant::now());
            tracing::warn!(%error, "cannot read the button; retrying every poll");
        }
        self.health
            .send_replace(ButtonHealth::Unavailable(error.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(is_pressed: bool, has_been_clicked: bool, event_available: bool) -> ButtonStatus {
        ButtonStatus {
            is_pressed,
            has_been_clicked,
            event_available,
        }
    }

    #[test]
    fn the_first_reading_sets_the_led() {
        assert_eq!(transitions(None, status(true, false, false)), [true]);
        assert_eq!(transitions(None, status(false, true, true)), [false]);
    }

    #[test]
    fn a_change_of_level_is_one_state() {
        assert_eq!(transitions(Some(false), status(true, false, true)), [true]);
        assert_eq!(transitions(Some(true), status(false, true, true)), [false]);
    }

    #[test]
    fn a_press_shorter_than_the_period_is_on_then_off() {
        assert_eq!(
            transitions(Some(false), status(false, true, true)),
            [true, false]
        );
    }

    #[test]
    fn a_release_shorter_than_the_period_is_off_then_on() {
        assert_eq!(
            transitions(Some(true), status(true, true, true)),
            [false, true]
        );
    }

    #[test]
    fn nothing_new_is_nothing_to_send() {
        assert!(transitions(Some(true), status(true, false, false)).is_empty());
        assert!(transitions(Some(false), status(false, false, false)).is_empty());
    }
}
