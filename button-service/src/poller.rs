//! The button's one owner in this service: a thread that reads the button every poll period
//! through the [`DeviceLink`] and publishes what changed as [`Events`]. It stops when the
//! shutdown token is cancelled.
//!
//! What the device may do wrong, and what is done about it (see the README's device notes):
//! - a read that the bus corrupted without an error (the Raspberry Pi's clock-stretching bug):
//!   every reading is one burst of ID, firmware and status, rejected unless all three are
//!   possible ([`QwiicButton::checked_status`](qwiic_button::QwiicButton::checked_status)), and a
//!   change of level is acted on only when a second reading, at once, agrees;
//! - a switch that bounces: `is_pressed` is the raw pin and flickers for a few ms after an
//!   edge, while the event and click flags come from the debounced interrupt. So after an edge
//!   the level is not read again for [`SETTLE`] (the firmware's own debounce time), and flags
//!   seen with an unchanged level are resolved once [`SETTLE`] has passed: if the level changed
//!   meanwhile, they were the bounce around that edge (one event); if not, a press (or release)
//!   shorter than the poll period happened (both events, in order).

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qwiic_bus::DeviceLink;
use qwiic_button::ButtonStatus;
use service_kit::CancellationToken;

use crate::events::{EventKind, Events};
use crate::metrics::Metrics;

/// How long a switch may bounce after an edge: the firmware's default debounce time, during
/// which its interrupt ignores further edges too.
pub const SETTLE: Duration = Duration::from_millis(10);

/// What one poll learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The level, confirmed by a second reading when it changed.
    pub pressed: bool,
    /// Edges happened since the flags were last cleared.
    pub flags: bool,
}

/// Turns readings into events; pure (time is given), so its rules are tested without a bus.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Edges {
    /// The level of the last reading; `None` until the first (no edge can be told then).
    level: Option<bool>,
    /// When the last edge was told: readings are not trusted for [`SETTLE`] after it.
    last_edge: Option<Instant>,
    /// Flags were seen with an unchanged level: at which level, and when first.
    unresolved: Option<(bool, Instant)>,
}

impl Edges {
    /// The level of the last reading.
    pub fn level(&self) -> Option<bool> {
        self.level
    }

    /// The events a reading taken at `now` implies.
    pub fn next(&mut self, reading: Reading, now: Instant) -> Vec<EventKind> {
        let edge = |pressed| {
            if pressed {
                EventKind::Pressed
            } else {
                EventKind::Released
            }
        };
        let Some(before) = self.level else {
            self.level = Some(reading.pressed);
            return Vec::new();
        };
        let settled = |since: Instant| now.duration_since(since) >= SETTLE;
        if self.last_edge.is_some_and(|at| !settled(at)) {
            return Vec::new(); // the switch may still bounce from the last edge
        }
        if reading.pressed != before {
            // A real edge; flags and an unresolved reading were its bounce.
            self.level = Some(reading.pressed);
            self.last_edge = Some(now);
            self.unresolved = None;
            return vec![edge(reading.pressed)];
        }
        let mut events = Vec::new();
        if let Some((level, _)) = self.unresolved.filter(|&(_, since)| settled(since)) {
            // The level held: what the flags said was a press (or release) shorter than the
            // poll period, over by now.
            events.extend([edge(!level), edge(level)]);
            self.unresolved = None;
        }
        if reading.flags && self.unresolved.is_none() {
            self.unresolved = Some((reading.pressed, now));
        }
        events
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
        edges: Edges::default(),
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
    edges: Edges,
}

/// This poll decided nothing (the device did not answer, or a reading was rejected or not
/// confirmed); the next one tries again.
struct Undecided;

impl Poller {
    fn poll(&mut self) {
        self.metrics.polls.inc();
        if let Err(Undecided) = self.poll_once() {
            self.metrics.poll_errors.inc();
        }
    }

    fn poll_once(&mut self) -> Result<(), Undecided> {
        let identified = self.link.identify().map_err(|_| Undecided)?;
        if identified.fresh {
            if !identified.firmware.pops_reliably() {
                tracing::warn!(firmware = %identified.firmware, "firmware older than 1.3: its queue pop is unreliable (this service does not pop)");
            }
            // Flags from before we looked describe presses nobody waited for: start clean.
            self.clear_flags()?;
        }
        let first = self.read()?;
        if self
            .edges
            .level()
            .is_some_and(|level| level != first.is_pressed)
        {
            // A change of level counts only when a second reading agrees.
            let second = self.read()?;
            if second.is_pressed != first.is_pressed {
                return Err(Undecided);
            }
        }
        let flags = first.event_available || first.has_been_clicked;
        if flags {
            // If the clear fails, the flags stay, and the next poll sees them again.
            self.clear_flags()?;
        }
        let first_reading = self.edges.level().is_none();
        let reading = Reading {
            pressed: first.is_pressed,
            flags,
        };
        for kind in self.edges.next(reading, Instant::now()) {
            if kind == EventKind::Pressed {
                self.metrics.presses.inc();
            }
            self.events.publish(kind);
        }
        if first_reading {
            self.events.set_level(first.is_pressed);
        }
        Ok(())
    }

    fn read(&mut self) -> Result<ButtonStatus, Undecided> {
        self.link
            .run(|button, firmware| button.checked_status(firmware))
            .map_err(|_| Undecided)
    }

    fn clear_flags(&mut self) -> Result<(), Undecided> {
        self.link
            .run(|button, _| button.clear_status())
            .map_err(|_| Undecided)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind::{Pressed, Released};

    fn reading(pressed: bool, flags: bool) -> Reading {
        Reading { pressed, flags }
    }

    /// The events of readings taken 20 ms apart.
    fn edges_after(levels: &[Reading]) -> (Edges, Vec<EventKind>) {
        readings_every(Duration::from_millis(20), levels)
    }

    fn readings_every(period: Duration, levels: &[Reading]) -> (Edges, Vec<EventKind>) {
        let mut edges = Edges::default();
        let mut events = Vec::new();
        let mut now = Instant::now();
        for level in levels {
            events.extend(edges.next(*level, now));
            now += period;
        }
        (edges, events)
    }

    #[test]
    fn the_first_reading_is_a_level_not_an_edge() {
        for first in [reading(true, false), reading(false, true)] {
            let (edges, events) = edges_after(&[first]);
            assert!(events.is_empty());
            assert_eq!(edges.level(), Some(first.pressed));
        }
    }

    #[test]
    fn a_change_of_level_is_one_event() {
        let (_, events) = edges_after(&[reading(false, false), reading(true, true)]);
        assert_eq!(events, [Pressed]);
        let (_, events) = edges_after(&[reading(true, false), reading(false, true)]);
        assert_eq!(events, [Released]);
    }

    #[test]
    fn a_press_shorter_than_the_period_is_a_press_and_a_release_one_poll_later() {
        let (_, events) = edges_after(&[reading(false, false), reading(false, true)]);
        assert!(
            events.is_empty(),
            "not yet: it may be the bounce of a press"
        );
        let (_, events) = edges_after(&[
            reading(false, false),
            reading(false, true),
            reading(false, false),
        ]);
        assert_eq!(events, [Pressed, Released]);
    }

    #[test]
    fn a_release_shorter_than_the_period_is_a_release_and_a_press() {
        let (_, events) = edges_after(&[
            reading(true, false),
            reading(true, true),
            reading(true, false),
        ]);
        assert_eq!(events, [Released, Pressed]);
    }

    #[test]
    fn a_bouncing_press_read_as_released_is_one_press() {
        // The flags say an edge happened, the raw pin flickered back: next poll it is held.
        let (_, events) = edges_after(&[
            reading(false, false),
            reading(false, true),
            reading(true, false),
            reading(true, false),
        ]);
        assert_eq!(events, [Pressed]);
    }

    #[test]
    fn a_bouncing_release_read_as_pressed_is_one_release() {
        let (_, events) = edges_after(&[
            reading(true, false),
            reading(true, true),
            reading(false, false),
        ]);
        assert_eq!(events, [Released]);
    }

    #[test]
    fn short_presses_in_two_polls_in_a_row_are_two_presses() {
        let (_, events) = edges_after(&[
            reading(false, false),
            reading(false, true),
            reading(false, true),
            reading(false, false),
        ]);
        assert_eq!(events, [Pressed, Released, Pressed, Released]);
    }

    #[test]
    fn while_the_switch_bounces_after_an_edge_its_flicker_is_not_read() {
        // Polled every 2 ms: pressed, then the raw pin flickers for 6 ms, then holds.
        let (_, events) = readings_every(
            Duration::from_millis(2),
            &[
                reading(false, false),
                reading(false, true),  // flicker: the flags say pressed
                reading(true, false),  // the press
                reading(false, false), // flicker
                reading(true, false),
                reading(false, false), // flicker
                reading(true, false),
                reading(true, false),
                reading(true, false),
                reading(true, false),
            ],
        );
        assert_eq!(events, [Pressed]);
    }

    #[test]
    fn flags_are_resolved_only_once_the_switch_settled() {
        let period = Duration::from_millis(2);
        let (_, events) = readings_every(
            period,
            &[
                reading(false, false),
                reading(false, true),
                reading(false, false),
                reading(false, false),
            ],
        );
        assert!(events.is_empty(), "6 ms: it may still be a bouncing press");
        let mut levels = vec![reading(false, false), reading(false, true)];
        levels.extend([reading(false, false); 5]);
        let (_, events) = readings_every(period, &levels);
        assert_eq!(events, [Pressed, Released], "10 ms later: a short press");
    }

    #[test]
    fn nothing_new_is_no_event() {
        let (_, events) = edges_after(&[reading(true, false), reading(true, false)]);
        assert!(events.is_empty());
        let (_, events) = edges_after(&[reading(false, false), reading(false, false)]);
        assert!(events.is_empty());
    }

    // The poller itself, over a simulated button whose clock moves only when told to. The
    // switch's settle time is real time (the poller's own clock), so a test that waits for a
    // verdict polls, a poll period apart, until that much time has passed.

    use qwiic_bus::{Bus, BusSpec, DeviceLink};
    use qwiic_button::Address;
    use qwiic_sim::{Fault, ManualClock, SimButton};
    use test_kit::{scaled, wait_until};

    use crate::events::{Received, Subscription};

    const PERIOD: Duration = Duration::from_millis(2);

    fn poller_on(sim: &SimButton) -> (Poller, Subscription) {
        let events = Events::default();
        let subscription = events.subscribe();
        let metrics = Metrics::default();
        let link = DeviceLink::new(
            Bus::Sim(sim.clone()),
            BusSpec::Sim,
            Address::DEFAULT,
            metrics.bus.clone(),
            "retrying every poll",
        );
        let poller = Poller {
            link,
            events,
            metrics,
            edges: Edges::default(),
        };
        (poller, subscription)
    }

    /// A poller that has read a resting button once (its level is known), a second before
    /// anything happens, past the debounce lockout of power-up.
    fn polled_once() -> (ManualClock, SimButton, Poller, Subscription) {
        let clock = ManualClock::new();
        let sim = SimButton::with_clock(clock.clone());
        let (mut poller, events) = poller_on(&sim);
        poller.poll();
        clock.advance(Duration::from_secs(1));
        (clock, sim, poller, events)
    }

    /// Polls a period apart until three settle times have passed; what was published.
    fn poll_until_settled(poller: &mut Poller, events: &mut Subscription) -> Vec<EventKind> {
        let until = Instant::now() + 3 * SETTLE;
        while Instant::now() < until {
            poller.poll();
            std::thread::sleep(PERIOD);
        }
        std::iter::from_fn(|| events.try_recv())
            .map(|received| match received {
                Received::Event(event) => event.kind,
                other => panic!("expected only events, got {other:?}"),
            })
            .collect()
    }

    fn status_flags(sim: &SimButton) -> u8 {
        const BUTTON_STATUS: usize = 0x03;
        const EVENT_AVAILABLE_AND_CLICKED: u8 = 0b011;
        sim.registers()[BUTTON_STATUS] & EVENT_AVAILABLE_AND_CLICKED
    }

    #[test]
    fn the_first_poll_publishes_the_level_and_no_event() {
        for held in [false, true] {
            let sim = SimButton::with_clock(ManualClock::new());
            if held {
                sim.press();
            }
            let (mut poller, mut events) = poller_on(&sim);
            poller.poll();
            assert_eq!(poller.events.level(), Some(held));
            assert_eq!(events.try_recv(), None, "held: {held}");
        }
    }

    #[test]
    fn a_click_between_polls_is_told_once_and_its_flags_are_cleared() {
        let (clock, sim, mut poller, mut events) = polled_once();
        sim.click(Duration::from_millis(30));
        clock.advance(Duration::from_millis(100));
        assert_ne!(status_flags(&sim), 0, "the click raised the flags");
        assert_eq!(
            poll_until_settled(&mut poller, &mut events),
            [EventKind::Pressed, EventKind::Released]
        );
        assert_eq!(status_flags(&sim), 0, "the poller cleared what it saw");
        assert_eq!(poll_until_settled(&mut poller, &mut events), []);
        assert_eq!(poller.metrics.presses.get(), 1);
    }

    #[test]
    fn a_press_and_its_release_seen_a_poll_apart_are_one_press_and_their_flags_are_cleared() {
        let (clock, sim, mut poller, mut events) = polled_once();
        sim.press(); // raises eventAvailable only
        assert_eq!(
            poll_until_settled(&mut poller, &mut events),
            [EventKind::Pressed]
        );
        assert_eq!(status_flags(&sim), 0, "the poller cleared the event flag");
        assert_eq!(poller.metrics.presses.get(), 1);
        clock.advance(Duration::from_secs(1));
        sim.release();
        assert_eq!(
            poll_until_settled(&mut poller, &mut events),
            [EventKind::Released]
        );
        assert_eq!(status_flags(&sim), 0);
        assert_eq!(poller.metrics.presses.get(), 1, "a release is not a press");
    }

    #[test]
    fn flags_raised_while_the_button_did_not_answer_are_cleared_not_replayed() {
        let (clock, sim, mut poller, mut events) = polled_once();
        sim.fail_next(1, Fault::Other); // one failed read: the button is identified again
        poller.poll();
        assert_eq!(poller.metrics.poll_errors.get(), 1);
        clock.advance(Duration::from_secs(1));
        sim.click(Duration::from_millis(30));
        clock.advance(Duration::from_millis(100));
        assert_eq!(poll_until_settled(&mut poller, &mut events), []);
        assert_eq!(status_flags(&sim), 0);
    }

    #[tokio::test]
    async fn polls_are_a_period_apart_and_after_a_slow_read_the_missed_ones_are_skipped() {
        let period = Duration::from_millis(10);
        let sim = SimButton::new();
        let (poller, _events) = poller_on(&sim);
        let (polls, metrics) = (poller.metrics.polls.clone(), poller.metrics.clone());
        let shutdown = CancellationToken::new();
        let started = Instant::now();
        let thread = spawn(
            poller.link,
            period,
            poller.events,
            metrics,
            shutdown.clone(),
        )
        .unwrap();
        wait_until("6 polls", scaled(Duration::from_secs(5)), || {
            polls.get() >= 6
        })
        .await;
        let elapsed = started.elapsed();
        assert!(elapsed >= 5 * period, "6 polls in {elapsed:?}");

        // One read takes six periods; the ticks it missed are not made up for in a burst.
        sim.set_delay(6 * period);
        wait_until("a slow read", scaled(Duration::from_secs(5)), || {
            sim.delayed_transactions() > 0
        })
        .await;
        sim.set_delay(Duration::ZERO);
        let slow = polls.get();
        wait_until(
            "the poll after the slow one",
            scaled(Duration::from_secs(5)),
            || polls.get() > slow,
        )
        .await;
        let after = Instant::now();
        wait_until("3 more polls", scaled(Duration::from_secs(5)), || {
            polls.get() >= slow + 4
        })
        .await;
        let elapsed = after.elapsed();
        assert!(elapsed >= 2 * period, "3 polls in {elapsed:?}: a burst");
        shutdown.cancel();
        thread.join().unwrap();
    }
}
