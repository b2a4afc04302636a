//! The button's one owner in this service: a thread that reads the button every poll period
//! through the [`DeviceLink`] and publishes what changed as [`Events`]. It stops when the
//! shutdown token is cancelled.
//!
//! With the INT line wired ([`Wake::Int`]), it reads the button when the line changes instead,
//! and at least every heartbeat; after an edge it polls every period until the edge has
//! settled (a second sighting, the debounce time), then waits on the line again. The button
//! is set to pull INT low for presses only (written when a reading shows other enables: an
//! EEPROM write, tried at most three times per identification), so that the line follows the switch and the poller's own
//! reads never move it (`qwiic_bus::int` says why); and the status flags are cleared only once
//! the button is released, when the clear leaves the line where it is.
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
//!   (read from the device, which keeps it in EEPROM, when two readings agree on it; set on it
//!   first when the service is asked for another); an edge the firmware took within
//!   [`BOUNCE_MARGIN`] after its lockout ended, with the level back where it was, is the switch
//!   bouncing once more, not a press; and a newer edge with an unchanged level is resolved once
//!   the switch has settled: a press (or release) shorter than the poll period, told in order.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qwiic_bus::{DeviceLink, IntLine};
use qwiic_button::{ButtonReading, InterruptConfig};
use service_kit::CancellationToken;

use crate::events::{EventKind, Events};
use crate::metrics::Metrics;

/// The debounce time of a firmware left at its factory setting, until the device is read.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(10);
/// A late bounce comes right after the debounce lockout: an edge within this much after it,
/// with the level where it was, is taken for one. (A person cannot press and release again so
/// soon: a click lasts 50 ms or more.)
pub const BOUNCE_MARGIN: Duration = Duration::from_millis(20);
/// Writes of the debounce time, and of the interrupt enables, tried per identification of the
/// button (each an EEPROM write, and the bus may lose one) before the service settles for what
/// the button holds.
const DEBOUNCE_WRITES: u8 = 3;
/// How far two readings' times of the same edge may differ (the age is whole milliseconds,
/// and a reading is timed when it returns).
const SAME_EDGE: Duration = Duration::from_millis(5);
/// Readings that confirm a newer edge are at least this far apart: an age the bus corrupted
/// (shifted by one bit) drifts by half the time between two readings, more than
/// [`SAME_EDGE`] over this, so it cannot confirm itself.
const SIGHTINGS_APART: Duration = Duration::from_millis(20);

/// What one poll learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The level, confirmed by a second reading when it changed.
    pub pressed: bool,
    /// The status flags said an edge happened since they were last cleared (they stay set when
    /// a clear was lost).
    pub flags: bool,
    /// When the newest edge on the firmware's pressed queue happened, by this poller's clock;
    /// `None` while the queue is empty.
    pub newest_edge: Option<Instant>,
}

/// An edge as told: which, and when it happened by the poller's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    /// Press or release.
    pub kind: EventKind,
    /// When the switch moved: from the firmware's queue where it says, else when it was read.
    pub at: Instant,
}

/// A newer edge on the queue with the level unchanged: a press (or release) shorter than the
/// poll period, once it is believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    /// When it happened.
    edge: Instant,
    /// The last reading before it was first seen: its first half happened after that.
    after: Instant,
    /// The level it came back to.
    level: bool,
    /// When it was first seen.
    since: Instant,
    /// Readings at least [`SIGHTINGS_APART`] apart that put it at the same time.
    sightings: u32,
    /// The last of them.
    sighted: Instant,
    /// Whether one of them also had the status flags set.
    flagged: bool,
}

/// Turns readings into events; pure (time is given), so its rules are tested without a bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edges {
    /// The level of the last reading; `None` until the first (no edge can be told then).
    level: Option<bool>,
    /// When the last edge was told: the level is not trusted for the debounce time after it.
    last_edge: Option<Instant>,
    /// Every edge of the firmware's queue up to this time is accounted for by the events told.
    accounted: Option<Instant>,
    /// A newer edge seen with an unchanged level, not believed yet.
    candidate: Option<Candidate>,
    /// The last reading whose queue was looked at: a newer edge happened after it.
    examined: Option<Instant>,
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
            candidate: None,
            examined: None,
            debounce,
        }
    }

    /// The level of the last reading.
    pub fn level(&self) -> Option<bool> {
        self.level
    }

    /// Whether nothing is left to decide by reading again soon: no newer edge waits for its
    /// sightings, and the debounce time after the last edge is over (until then the level is
    /// not read, so an edge within it is seen only by a later reading).
    pub fn is_settled(&self, now: Instant) -> bool {
        self.candidate.is_none()
            && self
                .last_edge
                .is_none_or(|at| now.duration_since(at) >= self.debounce)
    }

    /// The firmware's debounce time, as the device said (until then the factory's).
    pub fn set_debounce(&mut self, debounce: Duration) {
        self.debounce = debounce;
    }

    /// Takes every edge up to `now` as told: after the button did not answer for a while,
    /// what it recorded meanwhile is history (the level still tells where it is now).
    pub fn forget_history(&mut self, now: Instant) {
        self.accounted = Some(now).max(self.accounted);
        self.examined = Some(now).max(self.examined);
        self.candidate = None;
    }

    /// The edges a reading taken at `now` implies, with when each happened.
    ///
    /// A change of level is an edge at once (the poller confirmed the level), and accounts for
    /// every edge of the queue up to now. A newer edge on the queue with the level unchanged is
    /// believed only once two readings [`SIGHTINGS_APART`] apart put it at the same time (and
    /// three when the status flags never showed it: the clear may have raced it), once the switch has
    /// settled, and unless it came within [`BOUNCE_MARGIN`] after the debounce lockout of the
    /// last edge (the switch bouncing once more). An age the bus corrupted reads as a time that
    /// moves from one poll to the next, or goes back, and is dropped.
    ///
    /// Times come from the queue, which stamps every edge (press and release) to the
    /// millisecond on both firmware 1.2 and 1.3 (nothing is popped), so gestures do not depend
    /// on the poll period or on INT latency. A change of level happened when the queue's newest
    /// edge says, if that is between the last reading and this one (else an age the bus
    /// corrupted: then when it was read). A press shorter than the period shows only its
    /// second edge on the queue; its first is put halfway between the last reading without it
    /// and a debounce time before the second (the firmware ignores the switch that long after
    /// an edge). Each time lies between the last reading looked at and this one, so edges come
    /// out in the order they happened.
    pub fn next(&mut self, reading: Reading, now: Instant) -> Vec<Edge> {
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
            self.accounted = Some(now);
            self.examined = Some(now);
            return Vec::new();
        };
        let settled = |since: Instant| now.duration_since(since) >= self.debounce;
        if self.last_edge.is_some_and(|at| !settled(at)) {
            return Vec::new(); // the switch may still bounce from the last edge
        }
        let after = self.examined.replace(now).unwrap_or(now);
        let newer = reading
            .newest_edge
            .filter(|newest| self.accounted.is_none_or(|accounted| *newest > accounted));
        if reading.pressed != before {
            // A real edge; whatever the queue holds up to now is its doing.
            let at = newer
                .filter(|newest| within(*newest, after, now))
                .map_or(now, |newest| newest.clamp(after, now));
            self.level = Some(reading.pressed);
            self.last_edge = Some(now);
            self.candidate = None;
            self.accounted = Some(now);
            return vec![Edge {
                kind: edge(reading.pressed),
                at,
            }];
        }
        let Some(newest) = newer else {
            // Nothing newer: a candidate that the queue no longer shows was a corrupted age.
            self.candidate = None;
            return Vec::new();
        };
        let candidate = match self.candidate {
            Some(mut seen) if same_edge(Some(seen.edge), Some(newest)) => {
                if now.duration_since(seen.sighted) >= SIGHTINGS_APART {
                    seen.sightings += 1;
                    seen.sighted = now;
                }
                seen.flagged |= reading.flags;
                seen
            }
            _ => Candidate {
                edge: newest,
                after,
                level: reading.pressed,
                since: now,
                sightings: 1,
                sighted: now,
                flagged: reading.flags,
            },
        };
        let believed = candidate.sightings >= if candidate.flagged { 2 } else { 3 };
        if !(believed && settled(candidate.since)) {
            self.candidate = Some(candidate);
            return Vec::new();
        }
        self.candidate = None;
        let late_bounce = self.last_edge.is_some_and(|last| {
            candidate.edge.saturating_duration_since(last) < self.debounce + BOUNCE_MARGIN
        });
        self.accounted = Some(candidate.edge.max(now));
        if late_bounce {
            return Vec::new();
        }
        // The level held: the newer edge was a press (or release) shorter than the poll
        // period, over by now.
        let second = candidate.edge.clamp(candidate.after, now);
        let latest_first = second
            .checked_sub(self.debounce)
            .unwrap_or(second)
            .max(candidate.after);
        let first = candidate.after + (latest_first - candidate.after) / 2;
        vec![
            Edge {
                kind: edge(!candidate.level),
                at: first,
            },
            Edge {
                kind: edge(candidate.level),
                at: second,
            },
        ]
    }
}

/// Whether a queue time is between two readings, give or take the millisecond the ages are
/// rounded to.
fn within(time: Instant, after: Instant, now: Instant) -> bool {
    time + SAME_EDGE >= after && time <= now + SAME_EDGE
}

/// What a reading and the one confirming it take on the bus, at most, as this poller counts
/// lateness (two 15-byte bursts at 100 kHz are about 3 ms).
const READINGS_TAKE: Duration = Duration::from_millis(5);

/// How long after an edge happened this poller tells it, at worst while the button answers
/// and reads clean (at the factory's debounce time), when it reads every `period` (with INT:
/// while an edge settles): a change of level at the next reading and the one confirming it; a
/// press shorter than the period once a third sighting believes it, each at least
/// [`SIGHTINGS_APART`] after the last (a reading that returned a little early counts at the
/// next: three). Listeners that decide by time (gestures) wait this long past a deadline: 85 ms
/// at the 20 ms default, about 4 s at the original's 1 s poll.
pub fn lateness(period: Duration) -> Duration {
    period + 3 * period.max(SIGHTINGS_APART) + READINGS_TAKE
}

/// How the poll thread waits between readings.
#[derive(Debug)]
pub enum Wake {
    /// Every period.
    Poll(Duration),
    /// When the INT line changes, and at least every `heartbeat`; every `period` while an edge
    /// settles.
    Int {
        /// The line.
        line: Box<IntLine>,
        /// The longest time between two readings.
        heartbeat: Duration,
        /// Between readings while an edge settles.
        period: Duration,
    },
}

/// The longest single wait on the INT line: how soon the thread sees a shutdown.
const INT_SLICE: Duration = Duration::from_millis(200);

/// Starts the poll thread.
pub fn spawn(
    link: DeviceLink,
    wake: Wake,
    debounce_ms: Option<u16>,
    events: Events,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    let mut poller = Poller::new(link, events, metrics, Box::new(Instant::now));
    poller.debounce.wanted = debounce_ms;
    poller.int_mode = matches!(wake, Wake::Int { .. });
    std::thread::Builder::new()
        .name("button-poller".into())
        .spawn(move || match wake {
            Wake::Poll(period) => {
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
            }
            Wake::Int {
                mut line,
                heartbeat,
                period,
            } => {
                let mut failing = runtime_kit::Burst::default();
                // Edges are counted from the line's first wait: make it before the first
                // reading, so that none between the two is missed. (A failure shows later.)
                let _ = line.wait_edge(Duration::ZERO);
                while !shutdown.is_cancelled() {
                    let decided = poller.poll();
                    if !decided || !poller.edges.is_settled(Instant::now()) {
                        std::thread::sleep(period);
                        continue;
                    }
                    wait_for_int(&mut line, heartbeat, period, &shutdown, &mut failing);
                }
            }
        })
}

/// Waits until the INT line changes, `heartbeat` passes or `shutdown` comes. A failing line
/// (the simulator restarting, say) is said once per burst and ridden out by polling every
/// `period` until it answers again; the first wait that works counts edges from then on, and
/// returns for a reading at once (what happened while the line was down).
fn wait_for_int(
    line: &mut IntLine,
    heartbeat: Duration,
    period: Duration,
    shutdown: &CancellationToken,
    failing: &mut runtime_kit::Burst,
) {
    let until = Instant::now() + heartbeat;
    while !shutdown.is_cancelled() {
        let left = until.saturating_duration_since(Instant::now());
        match line.wait_edge(left.min(INT_SLICE)) {
            Ok(changed) => {
                if let Some(ended) = failing.end() {
                    tracing::info!(lasted_ms = ended.lasted_ms(), "the INT line answers again");
                    return;
                }
                if changed || left <= INT_SLICE {
                    return;
                }
            }
            Err(error) => {
                if failing.hit() {
                    tracing::warn!(%error, "cannot wait for the INT line: polling every period until it answers");
                }
                std::thread::sleep(period);
                return;
            }
        }
    }
}

/// The clock the poller times readings by (a test's follows its simulated button).
type Clock = Box<dyn FnMut() -> Instant + Send>;

struct Poller {
    link: DeviceLink,
    events: Events,
    metrics: Metrics,
    edges: Edges,
    debounce: Debounce,
    clock: Clock,
    /// Woken by the INT line: it must follow the switch (the pressed interrupt only, no clear
    /// while held).
    int_mode: bool,
    /// Writes of the interrupt enables tried since the button was identified.
    enable_writes: u8,
}

/// The button's debounce time: learned at every identification, and set when another is
/// wanted.
#[derive(Debug, Default)]
struct Debounce {
    /// What to set on the button, in ms.
    wanted: Option<u16>,
    /// Whether the edges use what this identification of the button holds.
    known: bool,
    /// Writes tried since the button was identified.
    writes: u8,
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
    /// When the newest edge on the queue happened. The firmware stamps an edge its debounce
    /// time early, so that much is added back.
    fn newest_edge(&self) -> Option<Instant> {
        let age = Duration::from_millis(u64::from(self.reading.newest_edge_age_ms?));
        let debounce = Duration::from_millis(u64::from(self.reading.debounce_ms));
        let stamped = self.at.checked_sub(age).unwrap_or(self.at);
        Some(stamped + debounce)
    }
}

impl Poller {
    fn new(link: DeviceLink, events: Events, metrics: Metrics, clock: Clock) -> Self {
        Poller {
            link,
            events,
            metrics,
            edges: Edges::default(),
            debounce: Debounce::default(),
            clock,
            int_mode: false,
            enable_writes: 0,
        }
    }

    /// One reading; false when it decided nothing.
    fn poll(&mut self) -> bool {
        self.metrics.polls.inc();
        let decided = self.poll_once().is_ok();
        if !decided {
            self.metrics.poll_errors.inc();
        }
        decided
    }

    fn poll_once(&mut self) -> Result<(), Undecided> {
        let identified = self.link.identify().map_err(|_| Undecided)?;
        let first = self.read()?;
        if identified.fresh {
            if !identified.firmware.can_pop() {
                tracing::warn!(firmware = %identified.firmware, "firmware older than 1.3: its queue pop never works (the pop bit is read-only there); this service does not pop");
            }
            self.debounce.known = false;
            self.debounce.writes = 0;
            self.enable_writes = 0;
            // Edges from before it answered again describe presses nobody waited for.
            self.edges.forget_history(first.at);
        }
        if !self.debounce.known {
            self.learn_debounce(&first)?;
        }
        if self.int_mode {
            self.enable_interrupts(&first);
        }
        let changed = self
            .edges
            .level()
            .is_some_and(|level| level != first.reading.status.is_pressed);
        if changed {
            // A change of level counts only when a second reading at once agrees.
            let second = self.read()?;
            if second.reading.status.is_pressed != first.reading.status.is_pressed {
                return Err(Undecided);
            }
        }
        let status = first.reading.status;
        let flags = status.event_available || status.has_been_clicked;
        // With INT, not while held: the clear would zero isPressed and move the line.
        if flags && !(self.int_mode && status.is_pressed) {
            // Only to release the INT pin and to see the next edge's flags: decisions come
            // from the level and the queue. A clear that fails or is lost changes nothing here.
            let _ = self.clear_flags();
        }
        let first_reading = self.edges.level().is_none();
        let reading = Reading {
            pressed: status.is_pressed,
            flags,
            newest_edge: first.newest_edge(),
        };
        for edge in self.edges.next(reading, first.at) {
            if edge.kind == EventKind::Pressed {
                self.metrics.presses.inc();
            }
            self.events
                .publish(edge.kind, tokio::time::Instant::from_std(edge.at));
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

    /// Learns the button's debounce time when a second reading agrees with `first` (the bus
    /// may corrupt one), after setting the wanted one if it holds another: the edges are read
    /// with what the button holds.
    fn learn_debounce(&mut self, first: &Taken) -> Result<(), Undecided> {
        let held = first.reading.debounce_ms;
        if self.read()?.reading.debounce_ms != held {
            return Err(Undecided);
        }
        match self.debounce.wanted {
            Some(wanted) if wanted != held && self.debounce.writes < DEBOUNCE_WRITES => {
                self.debounce.writes += 1;
                let _ = self.link.run(|button, _| button.set_debounce_time(wanted));
                // The next poll reads what the button holds now.
                return Err(Undecided);
            }
            Some(wanted) if wanted != held => tracing::warn!(
                wanted_ms = wanted,
                held_ms = held,
                "the button did not take the debounce time asked for: edges are read with the one it holds"
            ),
            Some(_) if self.debounce.writes > 0 => tracing::info!(
                debounce_ms = held,
                "set the button's debounce time (saved in its EEPROM)"
            ),
            _ if Duration::from_millis(u64::from(held)) != DEFAULT_DEBOUNCE => tracing::info!(
                debounce_ms = held,
                "the button debounces for other than the factory's 10 ms: edges are read with its time (DEBOUNCE sets another)"
            ),
            _ => {}
        }
        self.edges
            .set_debounce(Duration::from_millis(u64::from(held)));
        self.debounce.known = true;
        Ok(())
    }

    /// Makes INT follow the switch: the pressed interrupt on, the clicked one off (module
    /// docs), whenever a reading shows the button holding other enables (each write is an
    /// EEPROM write: only when they differ), at most [`DEBOUNCE_WRITES`] times per
    /// identification, so that a write that failed or that the bus lost is tried again.
    fn enable_interrupts(&mut self, first: &Taken) {
        let wanted = InterruptConfig {
            clicked: false,
            pressed: true,
        };
        if first.reading.interrupt == wanted || self.enable_writes >= DEBOUNCE_WRITES {
            return;
        }
        self.enable_writes += 1;
        match self
            .link
            .run(|button, _| button.set_interrupt_config(wanted))
        {
            Ok(()) => tracing::info!(
                was = ?first.reading.interrupt,
                "set the button's INT to follow the switch: the pressed interrupt on, the clicked one off (saved in its EEPROM)"
            ),
            Err(_) => tracing::warn!(
                "could not set the button's interrupt enables: tried again at the next reading (until they are set, a release may wait for the heartbeat)"
            ),
        }
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

    /// A reading: the level, whether the flags are set, and the newest edge on the queue
    /// `edge_ms` after the test's origin (readings come every period from 1 s after it).
    fn reading(pressed: bool, flags: bool, edge_ms: Option<u64>) -> (bool, bool, Option<u64>) {
        (pressed, flags, edge_ms)
    }

    /// The events of readings taken 20 ms apart, from 1 s after the origin.
    fn edges_after(levels: &[(bool, bool, Option<u64>)]) -> (Edges, Vec<EventKind>) {
        readings_every(MS(20), levels)
    }

    fn readings_every(
        period: Duration,
        levels: &[(bool, bool, Option<u64>)],
    ) -> (Edges, Vec<EventKind>) {
        let (edges, timed) = timed_readings_every(period, levels);
        (edges, timed.into_iter().map(|(kind, _)| kind).collect())
    }

    /// The events of readings taken 20 ms apart, with when each happened (ms from the origin).
    fn timed_edges_after(levels: &[(bool, bool, Option<u64>)]) -> Vec<(EventKind, u64)> {
        timed_readings_every(MS(20), levels).1
    }

    fn timed_readings_every(
        period: Duration,
        levels: &[(bool, bool, Option<u64>)],
    ) -> (Edges, Vec<(EventKind, u64)>) {
        let origin = Instant::now();
        let mut edges = Edges::default();
        let mut events = Vec::new();
        let mut now = origin + Duration::from_secs(1);
        for &(pressed, flags, edge_ms) in levels {
            let reading = Reading {
                pressed,
                flags,
                newest_edge: edge_ms.map(|ms| origin + MS(ms)),
            };
            events.extend(edges.next(reading, now).into_iter().map(|edge| {
                let ms = u64::try_from((edge.at - origin).as_millis()).unwrap_or(u64::MAX);
                (edge.kind, ms)
            }));
            now += period;
        }
        (edges, events)
    }

    /// Only which edges, not when.
    fn kinds(edges: Vec<Edge>) -> Vec<EventKind> {
        edges.into_iter().map(|edge| edge.kind).collect()
    }

    /// Milliseconds from the origin: the first reading is at 1000.
    const T: u64 = 1000;

    #[test]
    fn the_first_reading_is_a_level_not_an_edge() {
        for first in [
            reading(true, false, None),
            reading(false, true, Some(T - 5)),
        ] {
            let (edges, events) = edges_after(&[first]);
            assert!(events.is_empty());
            assert_eq!(edges.level(), Some(first.0));
        }
    }

    #[test]
    fn a_change_of_level_is_one_event() {
        let (_, events) = edges_after(&[
            reading(false, false, None),
            reading(true, true, Some(T + 10)),
        ]);
        assert_eq!(events, [Pressed]);
        let (_, events) = edges_after(&[
            reading(true, false, Some(T - 100)),
            reading(false, true, Some(T + 10)),
        ]);
        assert_eq!(events, [Released]);
    }

    #[test]
    fn a_press_shorter_than_the_period_is_told_once_a_second_reading_agrees_and_the_switch_settled()
    {
        let (_, events) = edges_after(&[
            reading(false, false, None),
            reading(false, true, Some(T + 10)),
        ]);
        assert!(events.is_empty(), "not yet: one reading");
        let (_, events) = edges_after(&[
            reading(false, false, None),
            reading(false, true, Some(T + 10)),
            reading(false, false, Some(T + 11)),
        ]);
        assert_eq!(events, [Pressed, Released]);
    }

    #[test]
    fn a_release_shorter_than_the_period_is_a_release_and_a_press() {
        let (_, events) = edges_after(&[
            reading(true, false, Some(T - 100)),
            reading(true, true, Some(T + 10)),
            reading(true, false, Some(T + 10)),
        ]);
        assert_eq!(events, [Released, Pressed]);
    }

    #[test]
    fn a_bouncing_press_read_as_released_is_one_press() {
        // The queue has a new edge, the raw pin flickered back: next poll it is held.
        let (_, events) = edges_after(&[
            reading(false, false, None),
            reading(false, true, Some(T + 15)),
            reading(true, false, Some(T + 15)),
            reading(true, false, Some(T + 15)),
        ]);
        assert_eq!(events, [Pressed]);
    }

    #[test]
    fn a_bouncing_release_read_as_pressed_is_one_release() {
        let (_, events) = edges_after(&[
            reading(true, false, Some(T - 100)),
            reading(true, true, Some(T + 15)),
            reading(false, false, Some(T + 15)),
        ]);
        assert_eq!(events, [Released]);
    }

    #[test]
    fn short_presses_in_polls_far_enough_apart_are_two_presses() {
        let (_, events) = edges_after(&[
            reading(false, false, None),
            reading(false, true, Some(T + 10)),
            reading(false, false, Some(T + 10)),
            reading(false, true, Some(T + 75)),
            reading(false, false, Some(T + 75)),
        ]);
        assert_eq!(events, [Pressed, Released, Pressed, Released]);
    }

    #[test]
    fn while_the_switch_bounces_after_an_edge_its_flicker_is_not_read() {
        // Polled every 2 ms: pressed, then the raw pin flickers for 6 ms, then holds.
        let (_, events) = readings_every(
            MS(2),
            &[
                reading(false, false, None),
                reading(true, true, Some(T + 1)),   // the press
                reading(false, false, Some(T + 1)), // flicker
                reading(true, false, Some(T + 1)),
                reading(false, false, Some(T + 1)), // flicker
                reading(true, false, Some(T + 1)),
                reading(true, false, Some(T + 1)),
                reading(true, false, Some(T + 1)),
                reading(true, false, Some(T + 1)),
            ],
        );
        assert_eq!(events, [Pressed]);
    }

    #[test]
    fn a_newer_edge_is_told_once_confirmed_a_sighting_apart_and_the_switch_settled() {
        let mut levels = vec![
            reading(false, false, None),
            reading(false, true, Some(T + 1)),
        ];
        levels.extend([reading(false, false, Some(T + 1)); 9]);
        let (_, events) = readings_every(MS(2), &levels);
        assert!(events.is_empty(), "18 ms: not confirmed 20 ms apart yet");
        levels.push(reading(false, false, Some(T + 1)));
        let (_, events) = readings_every(MS(2), &levels);
        assert_eq!(events, [Pressed, Released], "20 ms later: a short press");
        // Settling decides when the debounce time is longer than the sightings' gap.
        let start = Instant::now();
        let mut edges = Edges::new(MS(50));
        let read = |flags| Reading {
            pressed: false,
            flags,
            newest_edge: Some(start + MS(105)),
        };
        assert!(edges.next(read(false), start + MS(100)).is_empty());
        assert!(edges.next(read(true), start + MS(110)).is_empty());
        assert!(
            edges.next(read(false), start + MS(130)).is_empty(),
            "30 ms: bouncing"
        );
        assert_eq!(
            kinds(edges.next(read(false), start + MS(160))),
            [Pressed, Released]
        );
    }

    #[test]
    fn nothing_new_is_no_event_and_an_edge_already_told_is_never_told_again() {
        let (_, events) = edges_after(&[reading(true, false, None), reading(true, false, None)]);
        assert!(events.is_empty());
        // A status clear that was lost left the flags set: the queue shows no newer edge.
        let (_, events) = edges_after(&[
            reading(false, false, Some(T - 100)),
            reading(true, true, Some(T + 15)),
            reading(true, true, Some(T + 15)),
            reading(true, true, Some(T + 15)),
            reading(true, true, Some(T + 17)), // the same edge, timed 2 ms apart
        ]);
        assert_eq!(events, [Pressed]);
    }

    #[test]
    fn an_age_the_bus_corrupted_invents_nothing() {
        // A shifted age halves: a "newer" edge whose time moves by half the poll period from
        // one poll to the next, and one that the next reading no longer shows.
        let (_, events) = edges_after(&[
            reading(false, false, Some(T - 1000)),
            reading(false, true, Some(T - 480)), // flags a lost clear left set
            reading(false, true, Some(T - 470)),
            reading(false, true, Some(T - 460)),
            reading(false, true, Some(T - 1000)),
            reading(false, false, Some(T + 30)), // and once, unflagged, never again
            reading(false, false, Some(T - 1000)),
        ]);
        assert!(events.is_empty(), "{events:?}");
        // An edge the flags never showed (the clear raced it) is believed at the third sighting.
        let (_, events) = edges_after(&[
            reading(false, false, Some(T - 1000)),
            reading(false, false, Some(T + 10)),
            reading(false, false, Some(T + 10)),
            reading(false, false, Some(T + 10)),
        ]);
        assert_eq!(events, [Pressed, Released]);
    }

    #[test]
    fn a_bounce_just_after_the_lockout_is_not_a_press() {
        // Pressed (read at T + 20); 11 ms after the press the contact bounced open and back,
        // and the firmware took one more edge: the level stays pressed.
        let (_, events) = edges_after(&[
            reading(false, false, Some(T - 100)),
            reading(true, true, Some(T + 15)),
            reading(true, true, Some(T + 26)),
            reading(true, false, Some(T + 26)),
            reading(true, false, Some(T + 26)),
        ]);
        assert_eq!(events, [Pressed]);
        // Well after it, an edge with the level unchanged is a real short release.
        let (_, events) = edges_after(&[
            reading(false, false, Some(T - 100)),
            reading(true, true, Some(T + 15)),
            reading(true, false, Some(T + 15)),
            reading(true, true, Some(T + 70)),
            reading(true, false, Some(T + 70)),
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
            flags: false,
            newest_edge: Some(at(edge)),
        };
        assert!(edges.next(read(false, 0), at(100)).is_empty());
        assert_eq!(kinds(edges.next(read(true, 110), at(120))), [Pressed]);
        assert!(
            edges.next(read(false, 110), at(160)).is_empty(),
            "40 ms after the edge: still the switch's bounce"
        );
        assert_eq!(kinds(edges.next(read(false, 171), at(180))), [Released]);
    }

    #[test]
    fn a_change_of_level_happened_when_the_queue_says_not_when_it_was_read() {
        assert_eq!(
            timed_edges_after(&[
                reading(false, false, None),
                reading(true, true, Some(T + 7)),
                reading(true, false, Some(T + 7)),
                reading(false, true, Some(T + 52)),
            ]),
            [(Pressed, T + 7), (Released, T + 52)]
        );
    }

    #[test]
    fn a_queue_time_outside_the_two_readings_is_a_corrupted_age_and_the_reading_time_is_used() {
        // After the reading that saw the level change, and before the reading that did not.
        for impossible in [T + 300, T + 5] {
            assert_eq!(
                timed_edges_after(&[
                    reading(false, false, None),
                    reading(false, false, None),
                    reading(true, true, Some(impossible)),
                ]),
                [(Pressed, T + 40)],
                "queue time {impossible}"
            );
        }
        // An empty queue, or one whose newest edge was told already: the reading time too.
        assert_eq!(
            timed_edges_after(&[
                reading(false, false, Some(T - 100)),
                reading(true, true, Some(T - 100)),
            ]),
            [(Pressed, T + 20)]
        );
    }

    #[test]
    fn a_press_shorter_than_the_period_is_timed_by_its_release_and_put_halfway_before_it() {
        // Released at T + 16 by the queue; pressed between the reading at T and a debounce
        // time (10 ms) before the release: at T + 3.
        assert_eq!(
            timed_edges_after(&[
                reading(false, false, None),
                reading(false, true, Some(T + 16)),
                reading(false, false, Some(T + 16)),
            ]),
            [(Pressed, T + 3), (Released, T + 16)]
        );
    }

    #[test]
    fn a_run_of_edges_comes_out_in_the_order_they_happened_each_at_the_best_time_known() {
        assert_eq!(
            timed_edges_after(&[
                reading(false, false, None),
                reading(true, true, Some(T + 19)),
                reading(true, false, Some(T + 19)),
                reading(true, true, Some(T + 55)), // a short release
                reading(true, false, Some(T + 55)),
                reading(false, true, Some(T + 118)), // an age the bus corrupted
            ]),
            [
                (Pressed, T + 19),
                (Released, T + 42),
                (Pressed, T + 55),
                (Released, T + 100)
            ]
        );
    }

    // The poller itself, over a simulated button whose clock moves only when told to. The
    // switch's settle time is real time (the poller's own clock), so a test that waits for a
    // verdict polls, a poll period apart, until that much time has passed.

    use qwiic_bus::{Bus, BusSpec, DeviceLink};
    use qwiic_button::Address;
    use qwiic_sim::{Fault, ManualClock, SimButton};
    use test_kit::wait_until;

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
        published_when_settled(clock, poller, events)
            .into_iter()
            .map(|event| event.kind)
            .collect()
    }

    /// As [`poll_until_settled`], the events whole.
    fn published_when_settled(
        clock: &ManualClock,
        poller: &mut Poller,
        events: &mut Subscription,
    ) -> Vec<crate::events::ButtonEvent> {
        for _ in 0..(6 * DEFAULT_DEBOUNCE.as_millis() / PERIOD.as_millis()) {
            poller.poll();
            clock.advance(PERIOD);
        }
        std::iter::from_fn(|| events.try_recv())
            .map(|received| match received {
                Received::Event(event) => event,
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
    fn events_are_timed_by_the_firmwares_stamps_not_by_the_readings() {
        let (clock, sim, mut poller, mut events) = polled_once();
        let now_ms = || qwiic_sim::Clock::now_ms(&clock);
        sim.press();
        let pressed_ms = now_ms();
        clock.advance(Duration::from_millis(17)); // read 17 ms after the press
        let pressed = published_when_settled(&clock, &mut poller, &mut events);
        clock.advance(Duration::from_millis(500));
        sim.release();
        let held_ms = now_ms() - pressed_ms;
        clock.advance(Duration::from_millis(3)); // read 3 ms after the release
        let released = published_when_settled(&clock, &mut poller, &mut events);
        let ([pressed], [released]) = (&pressed[..], &released[..]) else {
            panic!("one press and one release: {pressed:?} {released:?}");
        };
        assert_eq!(
            released.instant - pressed.instant,
            Duration::from_millis(held_ms),
            "held as long as the switch was ({held_ms} ms), not as the readings were apart (14 ms less)"
        );
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

    /// A poller on a button whose EEPROM holds a debounce time of `debounce_ms`.
    fn on_a_button_debouncing(
        debounce_ms: u16,
        seed: u64,
    ) -> (ManualClock, SimButton, Poller, Subscription) {
        let clock = ManualClock::new();
        let config = qwiic_sim::SimConfig {
            eeprom: qwiic_sim::Settings {
                debounce_ms,
                ..qwiic_sim::Settings::default()
            }
            .into(),
            seed,
            ..qwiic_sim::SimConfig::default()
        };
        let sim = SimButton::with_config(config, clock.clone());
        let (poller, events) = poller_on(&sim, &clock);
        (clock, sim, poller, events)
    }

    #[test]
    fn the_debounce_time_asked_for_is_set_once_per_button_and_edges_are_read_with_it() {
        let (clock, sim, mut poller, _events) = on_a_button_debouncing(62_000, 1);
        poller.debounce.wanted = Some(10);
        for _ in 0..3 {
            poller.poll();
            clock.advance(Duration::from_millis(20));
        }
        assert!(poller.debounce.known);
        assert_eq!(poller.edges.debounce, Duration::from_millis(10));
        assert_eq!(sim.settings().debounce_ms, 10, "saved in the EEPROM");
        let written = sim.stats().eeprom_byte_writes;
        assert_eq!(written, 2);
        sim.fail_next(1, Fault::Other); // identified again
        for _ in 0..3 {
            poller.poll();
            clock.advance(Duration::from_millis(20));
        }
        assert!(poller.debounce.known);
        assert_eq!(sim.stats().eeprom_byte_writes, written, "not written again");
    }

    #[test]
    fn a_debounce_time_the_button_does_not_take_is_tried_three_times_then_read_with() {
        let (clock, sim, mut poller, _events) = on_a_button_debouncing(50, 1);
        poller.debounce.wanted = Some(10);
        sim.lose_next_writes(u32::MAX);
        for _ in 0..10 {
            poller.poll();
            clock.advance(Duration::from_millis(20));
        }
        assert!(poller.debounce.known);
        assert_eq!(poller.debounce.writes, DEBOUNCE_WRITES);
        assert_eq!(poller.edges.debounce, Duration::from_millis(50));
    }

    #[test]
    fn the_debounce_time_is_believed_when_two_readings_agree_on_it() {
        for seed in 0..20 {
            // An odd time, and edges on the queue: a shift from the debounce's high byte on
            // then leaves every register after it possible.
            let (clock, sim, mut poller, _events) = on_a_button_debouncing(51, seed);
            clock.advance(Duration::from_secs(1));
            sim.click(Duration::from_millis(100));
            clock.advance(Duration::from_millis(200));
            sim.set_corrupt_rate(0.3).unwrap();
            while !poller.debounce.known {
                poller.poll();
                clock.advance(Duration::from_millis(20));
            }
            assert_eq!(
                poller.edges.debounce,
                Duration::from_millis(51),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn the_devices_own_debounce_time_is_read_when_it_is_found() {
        let clock = ManualClock::new();
        let config = qwiic_sim::SimConfig {
            eeprom: qwiic_sim::Settings {
                debounce_ms: 50,
                ..qwiic_sim::Settings::default()
            }
            .into(),
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
            Wake::Poll(period),
            None,
            poller.events,
            metrics,
            shutdown.clone(),
        )
        .unwrap();
        wait_until("6 polls", Duration::from_secs(5), || polls.get() >= 6).await;
        let elapsed = started.elapsed();
        assert!(elapsed >= 5 * period, "6 polls in {elapsed:?}");

        // One read takes six periods; the ticks it missed are not made up for in a burst.
        sim.set_delay(6 * period);
        wait_until("a slow read", Duration::from_secs(5), || {
            sim.delayed_transactions() > 0
        })
        .await;
        sim.set_delay(Duration::ZERO);
        let slow = polls.get();
        wait_until(
            "the poll after the slow one",
            Duration::from_secs(5),
            || polls.get() > slow,
        )
        .await;
        let after = Instant::now();
        wait_until("3 more polls", Duration::from_secs(5), || {
            polls.get() >= slow + 4
        })
        .await;
        let elapsed = after.elapsed();
        assert!(elapsed >= 2 * period, "3 polls in {elapsed:?}: a burst");
        shutdown.cancel();
        thread.join().unwrap();
    }
}
