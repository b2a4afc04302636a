//! The button's one owner in this service: a thread that reads the button every poll period
//! through the [`DeviceLink`] and publishes what changed as [`Events`]. It stops when the
//! shutdown token is cancelled.
//!
//! Edges are told from the level and from the firmware's pressed queue, not from the status
//! flags: each reading is one burst that holds the level and the age of the newest edge the
//! firmware recorded ([`QwiicButton::checked_reading`](qwiic_button::QwiicButton::checked_reading)).
//! What the device may do wrong, and what is done about it (see the README's device notes):
//! - a read that the bus corrupted without an error (the Raspberry Pi's clock-stretching bug,
//!   from any byte on): a reading is rejected unless every register in it is possible, and a
//!   change of level, or a newer edge on the queue, is acted on only when a second reading,
//!   at once, agrees;
//! - a write that the bus lost (the same bug): a status clear that did not clear leaves the
//!   flags set, but the queue shows no newer edge, so nothing is invented from them;
//! - a switch that bounces: `is_pressed` is the raw pin and flickers for a while after an
//!   edge, so after an edge the level is not read again for the firmware's debounce time
//!   (read from the device, which keeps it in EEPROM); an edge the firmware took within
//!   [`BOUNCE_MARGIN`] after its lockout ended, with the level back where it was, is the switch
//!   bouncing once more, not a press; and a newer edge with an unchanged level is resolved once
//!   the switch has settled: a press (or release) shorter than the poll period, told in order.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qwiic_bus::DeviceLink;
use qwiic_button::ButtonReading;
use service_kit::CancellationToken;

use crate::events::{EventKind, Events};
use crate::metrics::Metrics;

/// The debounce time of a firmware left at its factory setting, until the device is read.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(10);
/// A late bounce comes right after the debounce lockout: an edge within this much after it,
/// with the level where it was, is taken for one. (A person cannot press and release again so
/// soon: a click lasts 50 ms or more.)
pub const BOUNCE_MARGIN: Duration = Duration::from_millis(20);
/// How far two readings' times of the same edge may differ (the age is whole milliseconds,
/// and a reading is timed when it returns).
const SAME_EDGE: Duration = Duration::from_millis(5);

/// What one poll learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The level, confirmed by a second reading when it changed.
    pub pressed: bool,
    /// When the newest edge on the firmware's pressed queue happened, by this poller's clock
    /// (confirmed by a second reading when it changed); `None` while the queue is empty.
    pub newest_edge: Option<Instant>,
}

/// Turns readings into events; pure (time is given), so its rules are tested without a bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edges {
    /// The level of the last reading; `None` until the first (no edge can be told then).
    level: Option<bool>,
    /// When the last edge was told: the level is not trusted for the debounce time after it.
    last_edge: Option<Instant>,
    /// The newest edge of the firmware's queue the events told so far account for.
    accounted: Option<Instant>,
    /// A newer edge was seen with an unchanged level: at which level, and when first.
    unresolved: Option<(bool, Instant)>,
    /// The firmware's debounce time.
    debounce: Duration,
}

impl Default for Edges {
    fn default() -> Self {
        Edges::new(DEFAULT_DEBOUNCE)
    }
}

impl Edges {
    /// For a button that debounces for `debounce`.
    pub fn new(debounce: Duration) -> Self {
        Edges {
            level: None,
            last_edge: None,
            accounted: None,
            unresolved: None,
            debounce,
        }
    }

    /// The level of the last reading.
    pub fn level(&self) -> Option<bool> {
        self.level
    }

    /// The firmware's debounce time, as the device said (until then the factory's).
    pub fn set_debounce(&mut self, debounce: Duration) {
        self.debounce = debounce;
    }

    /// Takes every edge up to `newest` as told: after the button did not answer for a while,
    /// what it recorded meanwhile is history (the level still tells where it is now).
    pub fn forget_history(&mut self, newest: Option<Instant>) {
        self.accounted = newest.max(self.accounted);
        self.unresolved = None;
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
            // Edges from before we looked are history.
            self.level = Some(reading.pressed);
            self.accounted = reading.newest_edge;
            return Vec::new();
        };
        let settled = |since: Instant| now.duration_since(since) >= self.debounce;
        if self.last_edge.is_some_and(|at| !settled(at)) {
            return Vec::new(); // the switch may still bounce from the last edge
        }
        if reading.pressed != before {
            // A real edge; whatever the queue holds up to now is its doing.
            self.level = Some(reading.pressed);
            self.last_edge = Some(now);
            self.unresolved = None;
            self.accounted = reading.newest_edge.max(self.accounted);
            return vec![edge(reading.pressed)];
        }
        let mut events = Vec::new();
        if let Some((level, _)) = self.unresolved.filter(|&(_, since)| settled(since)) {
            // The level held: the newer edge was a press (or release) shorter than the poll
            // period, over by now.
            events.extend([edge(!level), edge(level)]);
            self.unresolved = None;
        }
        if let Some(newest) = reading.newest_edge {
            let new = self
                .accounted
                .is_none_or(|accounted| newest > accounted + SAME_EDGE);
            if new {
                let late_bounce = self.accounted.is_some_and(|accounted| {
                    newest.saturating_duration_since(accounted) < self.debounce + BOUNCE_MARGIN
                });
                self.accounted = Some(newest);
                if !late_bounce && self.unresolved.is_none() {
                    self.unresolved = Some((reading.pressed, now));
                }
            }
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
    let mut poller = Poller::new(link, events, metrics, Box::new(Instant::now));
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

/// The clock the poller times readings by (a test's follows its simulated button).
type Clock = Box<dyn FnMut() -> Instant + Send>;

struct Poller {
    link: DeviceLink,
    events: Events,
    metrics: Metrics,
    edges: Edges,
    clock: Clock,
}

/// This poll decided nothing (the device did not answer, or a reading was rejected or not
/// confirmed); the next one tries again.
struct Undecided;

/// A reading, and when it was taken by the poller's clock.
struct Taken {
    reading: ButtonReading,
    at: Instant,
}

impl Taken {
    fn newest_edge(&self) -> Option<Instant> {
        let age = Duration::from_millis(u64::from(self.reading.newest_edge_age_ms?));
        Some(self.at.checked_sub(age).unwrap_or(self.at))
    }
}

impl Poller {
    fn new(link: DeviceLink, events: Events, metrics: Metrics, clock: Clock) -> Self {
        Poller {
            link,
            events,
            metrics,
            edges: Edges::default(),
            clock,
        }
    }

    fn poll(&mut self) {
        self.metrics.polls.inc();
        if let Err(Undecided) = self.poll_once() {
            self.metrics.poll_errors.inc();
        }
    }

    fn poll_once(&mut self) -> Result<(), Undecided> {
        let identified = self.link.identify().map_err(|_| Undecided)?;
        let first = self.read()?;
        if identified.fresh {
            if !identified.firmware.pops_reliably() {
                tracing::warn!(firmware = %identified.firmware, "firmware older than 1.3: its queue pop is unreliable (this service does not pop)");
            }
            let debounce = Duration::from_millis(u64::from(first.reading.debounce_ms));
            if debounce != DEFAULT_DEBOUNCE {
                tracing::info!(
                    debounce_ms = first.reading.debounce_ms,
                    "the button debounces for other than the factory's 10 ms: edges are read with its time"
                );
            }
            self.edges.set_debounce(debounce);
            // Edges from before it answered again describe presses nobody waited for.
            self.edges.forget_history(first.newest_edge());
        }
        let changed = self
            .edges
            .level()
            .is_some_and(|level| level != first.reading.status.is_pressed);
        let newer = first.newest_edge().is_some_and(|edge| {
            self.edges
                .accounted
                .is_none_or(|seen| edge > seen + SAME_EDGE)
        });
        if changed || newer {
            // A change counts only when a second reading at once agrees on it.
            let second = self.read()?;
            let agree = second.reading.status.is_pressed == first.reading.status.is_pressed
                && same_edge(first.newest_edge(), second.newest_edge());
            if !agree {
                return Err(Undecided);
            }
        }
        let status = first.reading.status;
        if status.event_available || status.has_been_clicked {
            // Only to release the INT pin and keep the flags meaningful: decisions come from
            // the queue. A clear that fails or is lost changes nothing here.
            let _ = self.clear_flags();
        }
        let first_reading = self.edges.level().is_none();
        let reading = Reading {
            pressed: status.is_pressed,
            newest_edge: first.newest_edge(),
        };
        for kind in self.edges.next(reading, first.at) {
            if kind == EventKind::Pressed {
                self.metrics.presses.inc();
            }
            self.events.publish(kind);
        }
        if first_reading {
            self.events.set_level(status.is_pressed);
        }
        Ok(())
    }

    fn read(&mut self) -> Result<Taken, Undecided> {
        let reading = self
            .link
            .run(|button, firmware| button.checked_reading(firmware))
            .map_err(|_| Undecided)?;
        Ok(Taken {
            reading,
            at: (self.clock)(),
        })
    }

    fn clear_flags(&mut self) -> Result<(), Undecided> {
        self.link
            .run(|button, _| button.clear_status())
            .map_err(|_| Undecided)
    }
}

/// Two readings' times of the newest edge are the same edge.
fn same_edge(a: Option<Instant>, b: Option<Instant>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.max(b).duration_since(a.min(b)) <= SAME_EDGE,
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind::{Pressed, Released};

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// A reading: the level, and the newest edge on the queue `edge_ms` after the test began.
    fn reading(pressed: bool, edge_ms: Option<u64>) -> (bool, Option<u64>) {
        (pressed, edge_ms)
    }

    /// The events of readings taken 20 ms apart.
    fn edges_after(levels: &[(bool, Option<u64>)]) -> (Edges, Vec<EventKind>) {
        readings_every(MS(20), levels)
    }

    fn readings_every(period: Duration, levels: &[(bool, Option<u64>)]) -> (Edges, Vec<EventKind>) {
        let start = Instant::now();
        let mut edges = Edges::default();
        let mut events = Vec::new();
        let mut now = start + Duration::from_secs(1);
        for &(pressed, edge_ms) in levels {
            let reading = Reading {
                pressed,
                newest_edge: edge_ms.map(|ms| start + Duration::from_secs(1) - MS(40) + MS(ms)),
            };
            events.extend(edges.next(reading, now));
            now += period;
        }
        (edges, events)
    }

    #[test]
    fn the_first_reading_is_a_level_not_an_edge() {
        for first in [reading(true, None), reading(false, Some(5))] {
            let (edges, events) = edges_after(&[first]);
            assert!(events.is_empty());
            assert_eq!(edges.level(), Some(first.0));
        }
    }

    #[test]
    fn a_change_of_level_is_one_event() {
        let (_, events) = edges_after(&[reading(false, None), reading(true, Some(30))]);
        assert_eq!(events, [Pressed]);
        let (_, events) = edges_after(&[reading(true, Some(0)), reading(false, Some(30))]);
        assert_eq!(events, [Released]);
    }

    #[test]
    fn a_press_shorter_than_the_period_is_a_press_and_a_release_once_the_switch_settled() {
        let (_, events) = edges_after(&[reading(false, None), reading(false, Some(30))]);
        assert!(
            events.is_empty(),
            "not yet: it may be the bounce of a press"
        );
        let (_, events) = edges_after(&[
            reading(false, None),
            reading(false, Some(30)),
            reading(false, Some(30)),
        ]);
        assert_eq!(events, [Pressed, Released]);
    }

    #[test]
    fn a_release_shorter_than_the_period_is_a_release_and_a_press() {
        let (_, events) = edges_after(&[
            reading(true, Some(0)),
            reading(true, Some(30)),
            reading(true, Some(30)),
        ]);
        assert_eq!(events, [Released, Pressed]);
    }

    #[test]
    fn a_bouncing_press_read_as_released_is_one_press() {
        // The queue has a new edge, the raw pin flickered back: next poll it is held.
        let (_, events) = edges_after(&[
            reading(false, None),
            reading(false, Some(30)),
            reading(true, Some(30)),
            reading(true, Some(30)),
        ]);
        assert_eq!(events, [Pressed]);
    }

    #[test]
    fn a_bouncing_release_read_as_pressed_is_one_release() {
        let (_, events) = edges_after(&[
            reading(true, Some(0)),
            reading(true, Some(30)),
            reading(false, Some(30)),
        ]);
        assert_eq!(events, [Released]);
    }

    #[test]
    fn short_presses_in_two_polls_in_a_row_are_two_presses() {
        let (_, events) = edges_after(&[
            reading(false, None),
            reading(false, Some(30)),
            reading(false, Some(75)),
            reading(false, Some(75)),
        ]);
        assert_eq!(events, [Pressed, Released, Pressed, Released]);
    }

    #[test]
    fn while_the_switch_bounces_after_an_edge_its_flicker_is_not_read() {
        // Polled every 2 ms: pressed, then the raw pin flickers for 6 ms, then holds.
        let (_, events) = readings_every(
            MS(2),
            &[
                reading(false, None),
                reading(true, Some(39)),  // the press
                reading(false, Some(39)), // flicker
                reading(true, Some(39)),
                reading(false, Some(39)), // flicker
                reading(true, Some(39)),
                reading(true, Some(39)),
                reading(true, Some(39)),
                reading(true, Some(39)),
            ],
        );
        assert_eq!(events, [Pressed]);
    }

    #[test]
    fn a_newer_edge_is_resolved_only_once_the_switch_settled() {
        let (_, events) = readings_every(
            MS(2),
            &[
                reading(false, None),
                reading(false, Some(39)),
                reading(false, Some(39)),
                reading(false, Some(39)),
            ],
        );
        assert!(events.is_empty(), "6 ms: it may still be a bouncing press");
        let mut levels = vec![reading(false, None), reading(false, Some(39))];
        levels.extend([reading(false, Some(39)); 5]);
        let (_, events) = readings_every(MS(2), &levels);
        assert_eq!(events, [Pressed, Released], "10 ms later: a short press");
    }

    #[test]
    fn nothing_new_is_no_event_and_an_edge_already_told_is_never_told_again() {
        let (_, events) = edges_after(&[reading(true, None), reading(true, None)]);
        assert!(events.is_empty());
        // A status clear that was lost left the flags set: the queue shows no newer edge.
        let (_, events) = edges_after(&[
            reading(false, Some(0)),
            reading(true, Some(25)),
            reading(true, Some(25)),
            reading(true, Some(25)),
            reading(true, Some(27)), // the same edge, timed 2 ms apart by two readings
        ]);
        assert_eq!(events, [Pressed]);
    }

    #[test]
    fn a_bounce_just_after_the_lockout_is_not_a_press() {
        // Pressed at 25 ms; 11 ms later the contact bounced open and back, and the firmware
        // took one more edge: the level stays pressed.
        let (_, events) = edges_after(&[
            reading(false, Some(0)),
            reading(true, Some(25)),
            reading(true, Some(36)),
            reading(true, Some(36)),
            reading(true, Some(36)),
        ]);
        assert_eq!(events, [Pressed]);
        // Well after the lockout, an edge with the level unchanged is a real short release.
        let (_, events) = edges_after(&[
            reading(false, Some(0)),
            reading(true, Some(25)),
            reading(true, Some(70)),
            reading(true, Some(70)),
            reading(true, Some(70)),
        ]);
        assert_eq!(events, [Pressed, Released, Pressed]);
    }

    #[test]
    fn the_devices_own_debounce_time_decides_how_long_the_switch_may_bounce() {
        let start = Instant::now();
        let mut edges = Edges::new(MS(50));
        let at = |ms| start + MS(ms);
        let read = |pressed, edge: u64| Reading {
            pressed,
            newest_edge: Some(at(edge)),
        };
        assert!(edges.next(read(false, 0), at(100)).is_empty());
        assert_eq!(edges.next(read(true, 110), at(120)), [Pressed]);
        assert!(
            edges.next(read(false, 110), at(160)).is_empty(),
            "40 ms after the edge: still the switch's bounce"
        );
        assert_eq!(edges.next(read(false, 171), at(180)), [Released]);
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

    /// A poller on `sim`, timing its readings by `clock` (the simulated button's).
    fn poller_on(sim: &SimButton, clock: &ManualClock) -> (Poller, Subscription) {
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
        let (base, clock) = (Instant::now(), clock.clone());
        let poller = Poller::new(
            link,
            events,
            metrics,
            Box::new(move || base + Duration::from_millis(qwiic_sim::Clock::now_ms(&clock))),
        );
        (poller, subscription)
    }

    /// A poller that has read a resting button once (its level is known), a second before
    /// anything happens, past the debounce lockout of power-up.
    fn polled_once() -> (ManualClock, SimButton, Poller, Subscription) {
        let clock = ManualClock::new();
        let sim = SimButton::with_clock(clock.clone());
        let (mut poller, events) = poller_on(&sim, &clock);
        poller.poll();
        clock.advance(Duration::from_secs(1));
        (clock, sim, poller, events)
    }

    /// Polls a period apart (by the simulated clock) for six debounce times; what was
    /// published.
    fn poll_until_settled(
        clock: &ManualClock,
        poller: &mut Poller,
        events: &mut Subscription,
    ) -> Vec<EventKind> {
        for _ in 0..(6 * DEFAULT_DEBOUNCE.as_millis() / PERIOD.as_millis()) {
            poller.poll();
            clock.advance(PERIOD);
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
            let clock = ManualClock::new();
            let sim = SimButton::with_clock(clock.clone());
            if held {
                sim.press();
            }
            let (mut poller, mut events) = poller_on(&sim, &clock);
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
            poll_until_settled(&clock, &mut poller, &mut events),
            [EventKind::Pressed, EventKind::Released]
        );
        assert_eq!(
            status_flags(&sim),
            0,
            "the poller cleared what it saw (the INT pin)"
        );
        assert_eq!(poll_until_settled(&clock, &mut poller, &mut events), []);
        assert_eq!(poller.metrics.presses.get(), 1);
    }

    #[test]
    fn a_press_and_its_release_seen_a_poll_apart_are_one_press_and_their_flags_are_cleared() {
        let (clock, sim, mut poller, mut events) = polled_once();
        sim.press(); // raises eventAvailable only
        assert_eq!(
            poll_until_settled(&clock, &mut poller, &mut events),
            [EventKind::Pressed]
        );
        assert_eq!(status_flags(&sim), 0, "the poller cleared the event flag");
        assert_eq!(poller.metrics.presses.get(), 1);
        clock.advance(Duration::from_secs(1));
        sim.release();
        assert_eq!(
            poll_until_settled(&clock, &mut poller, &mut events),
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
        assert_eq!(poll_until_settled(&clock, &mut poller, &mut events), []);
        assert_eq!(status_flags(&sim), 0);
    }

    #[test]
    fn a_clear_the_bus_lost_invents_no_press() {
        let (clock, sim, mut poller, mut events) = polled_once();
        sim.lose_next_writes(3); // every clear of this click
        sim.click(Duration::from_millis(60));
        clock.advance(Duration::from_millis(100));
        assert_ne!(status_flags(&sim), 0);
        assert_eq!(
            poll_until_settled(&clock, &mut poller, &mut events),
            [EventKind::Pressed, EventKind::Released]
        );
        // The flags may still be set: nothing more is told from them.
        for _ in 0..3 {
            clock.advance(Duration::from_millis(100));
            assert_eq!(poll_until_settled(&clock, &mut poller, &mut events), []);
        }
        assert_eq!(poller.metrics.presses.get(), 1);
    }

    #[test]
    fn a_bounce_just_after_the_lockout_invents_no_press() {
        let (clock, sim, mut poller, mut events) = polled_once();
        sim.set_late_bounce_rate(1.0).unwrap();
        for _ in 0..5 {
            sim.press();
            let told = poll_until_settled(&clock, &mut poller, &mut events);
            assert_eq!(told, [EventKind::Pressed]);
            clock.advance(Duration::from_millis(200));
            sim.release();
            let told = poll_until_settled(&clock, &mut poller, &mut events);
            assert_eq!(told, [EventKind::Released]);
            clock.advance(Duration::from_millis(200));
        }
        assert_eq!(poller.metrics.presses.get(), 5);
    }

    #[test]
    fn the_devices_own_debounce_time_is_read_when_it_is_found() {
        let clock = ManualClock::new();
        let config = qwiic_sim::SimConfig {
            settings: qwiic_sim::Settings {
                debounce_ms: 50,
                ..qwiic_sim::Settings::default()
            },
            ..qwiic_sim::SimConfig::default()
        };
        let sim = SimButton::with_config(config, clock.clone());
        let (mut poller, _events) = poller_on(&sim, &clock);
        poller.poll();
        assert_eq!(poller.edges.debounce, Duration::from_millis(50));
    }

    #[tokio::test]
    async fn polls_are_a_period_apart_and_after_a_slow_read_the_missed_ones_are_skipped() {
        let period = Duration::from_millis(10);
        let sim = SimButton::new();
        let (poller, _events) = poller_on(&sim, &ManualClock::new());
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
