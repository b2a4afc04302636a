//! The button's one owner in this service: a thread that reads the status register every poll
//! period through the [`DeviceLink`] and publishes what changed as [`Events`]. A press shorter
//! than the period is not lost: the firmware's event and click flags turn it into a press and a
//! release, in order. The thread stops when the shutdown token is cancelled.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qwiic_bus::DeviceLink;
use qwiic_button::ButtonStatus;
use service_kit::CancellationToken;

use crate::events::{EventKind, Events};
use crate::metrics::Metrics;

/// The events implied by one status reading, given the level of the previous one (`None`:
/// no reading yet, so no edge can be told).
pub fn transitions(previous: Option<bool>, status: ButtonStatus) -> Vec<EventKind> {
    let level = |pressed| {
        if pressed {
            EventKind::Pressed
        } else {
            EventKind::Released
        }
    };
    match previous {
        None => Vec::new(),
        Some(before) if before != status.is_pressed => vec![level(status.is_pressed)],
        // Same level as last time, but edges happened in between: a short press (or a short
        // release) that listeners must still see.
        Some(before) if status.has_been_clicked || status.event_available => {
            vec![level(!before), level(before)]
        }
        Some(_) => Vec::new(),
    }
}

/// Starts the poll thread.
pub fn spawn(
    link: DeviceLink,
    period: Duration,
    events: Events,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    let mut poller = Poller {
        link,
        events,
        metrics,
        previous: None,
    };
    std::thread::Builder::new()
        .name("button-poller".into())
        .spawn(move || {
            let mut next = Instant::now();
            while !shutdown.is_cancelled() {
                poller.poll();
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
    link: DeviceLink,
    events: Events,
    metrics: Metrics,
    /// `is_pressed` at the last good reading; kept through an outage, so that a level that
    /// changed meanwhile is still an edge.
    previous: Option<bool>,
}

impl Poller {
    fn poll(&mut self) {
        self.metrics.polls.inc();
        if let Err(()) = self.poll_once() {
            self.metrics.poll_errors.inc();
        }
    }

    fn poll_once(&mut self) -> Result<(), ()> {
        let identified = self.link.identify().map_err(drop)?;
        if identified.fresh {
            if !identified.firmware.pops_reliably() {
                tracing::warn!(firmware = %identified.firmware, "firmware older than 1.3: its queue pop is unreliable (this service does not pop)");
            }
            // Flags from before we looked describe presses nobody waited for: start clean.
            self.link
                .run(|button, _| button.clear_status())
                .map_err(drop)?;
        }
        let status = self.link.run(|button, _| button.status()).map_err(drop)?;
        if status.event_available || status.has_been_clicked {
            // One write of 0; if it fails, the flags stay and the next poll sees them again.
            self.link
                .run(|button, _| button.clear_status())
                .map_err(drop)?;
        }
        for kind in transitions(self.previous, status) {
            if kind == EventKind::Pressed {
                self.metrics.presses.inc();
            }
            self.events.publish(kind);
        }
        if self.previous.is_none() {
            self.events.set_level(status.is_pressed);
        }
        self.previous = Some(status.is_pressed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind::{Pressed, Released};

    fn status(is_pressed: bool, has_been_clicked: bool, event_available: bool) -> ButtonStatus {
        ButtonStatus {
            is_pressed,
            has_been_clicked,
            event_available,
        }
    }

    #[test]
    fn the_first_reading_is_a_level_not_an_edge() {
        assert!(transitions(None, status(true, false, false)).is_empty());
        assert!(transitions(None, status(false, true, true)).is_empty());
    }

    #[test]
    fn a_change_of_level_is_one_event() {
        assert_eq!(
            transitions(Some(false), status(true, false, true)),
            [Pressed]
        );
        assert_eq!(
            transitions(Some(true), status(false, true, true)),
            [Released]
        );
    }

    #[test]
    fn a_press_shorter_than_the_period_is_a_press_and_a_release() {
        assert_eq!(
            transitions(Some(false), status(false, true, true)),
            [Pressed, Released]
        );
    }

    #[test]
    fn a_release_shorter_than_the_period_is_a_release_and_a_press() {
        assert_eq!(
            transitions(Some(true), status(true, true, true)),
            [Released, Pressed]
        );
    }

    #[test]
    fn nothing_new_is_no_event() {
        assert!(transitions(Some(true), status(true, false, false)).is_empty());
        assert!(transitions(Some(false), status(false, false, false)).is_empty());
    }
}
