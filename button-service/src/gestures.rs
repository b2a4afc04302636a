//! Press gestures, computed from the button's events, the ones button users know from
//! Home Assistant, Zigbee2MQTT and Tasmota:
//!
//! - `press` and `release` at once, for every edge;
//! - `single`, `double`, `triple`, `quadruple`, `quintuple`: short presses, each starting
//!   within the press window after the previous one's release; told when the window after the
//!   last has closed (by definition: another press could still come), or at the release of
//!   the `max_presses`-th at once;
//! - `long` once the button has been held for the long-press time (told while still held,
//!   unless released within the runner's lateness, see [`run`]), then
//!   `repeat` every hold-repeat period while it stays held (dimming), and `long_release` when
//!   it comes up. A hold ends a series of short presses: their count is not told.
//!
//! A pure state machine driven by the events' monotonic times and by [`Gestures::deadline`],
//! so its rules are table-tested with made-up times, and it never delays the LED (a separate
//! listener).

use std::time::{Duration, SystemTime};

use service_kit::CancellationToken;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::events::{ButtonEvent, EventKind, Received, Subscription};

/// The most presses one gesture counts: `quintuple`, Home Assistant's largest trigger type.
pub const MAX_PRESSES: u8 = 5;

/// One gesture, as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gesture {
    /// The button went down.
    Press,
    /// The button came up.
    Release,
    /// 1 to [`MAX_PRESSES`] short presses in a row, each within the press window of the last.
    Presses(u8),
    /// Held for the long-press time (told while still held).
    Long,
    /// Still held, one more hold-repeat period after `long` (or the last `repeat`).
    Repeat,
    /// Released after a `long`.
    LongRelease,
}

impl Gesture {
    /// Every gesture a machine with at most `max_presses` presses tells, in the order of the
    /// README.
    pub fn all(max_presses: u8) -> Vec<Gesture> {
        let mut all = vec![Gesture::Press, Gesture::Release];
        all.extend((1..=max_presses.min(MAX_PRESSES)).map(Gesture::Presses));
        all.extend([Gesture::Long, Gesture::Repeat, Gesture::LongRelease]);
        all
    }

    /// The name in MQTT payloads and Home Assistant's event types.
    pub fn name(self) -> &'static str {
        match self {
            Gesture::Press => "press",
            Gesture::Release => "release",
            Gesture::Presses(1) => "single",
            Gesture::Presses(2) => "double",
            Gesture::Presses(3) => "triple",
            Gesture::Presses(4) => "quadruple",
            // The machine never counts past MAX_PRESSES.
            Gesture::Presses(_) => "quintuple",
            Gesture::Long => "long",
            Gesture::Repeat => "repeat",
            Gesture::LongRelease => "long_release",
        }
    }
}

/// The timing of gestures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Held at least this long: `long`.
    pub long_press: Duration,
    /// A press starting within this time after a short one's release counts on (`double`,
    /// `triple`, ...); the count is told this long after the last release.
    pub press_window: Duration,
    /// Count at most this many presses (1 to [`MAX_PRESSES`]); the last is told at its
    /// release, without waiting for the window.
    pub max_presses: u8,
    /// While held after `long`: a `repeat` this often; `None`: no repeats.
    pub hold_repeat: Option<Duration>,
}

/// Where the state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    /// Held since `since`, the `count`-th press of a series; after `long`, the next `repeat`
    /// is due at `repeat_at` (if repeats are on).
    Held {
        since: Instant,
        count: u8,
        long: bool,
        repeat_at: Option<Instant>,
    },
    /// The `count`-th short press ended at `at`: told unless another starts in the window.
    Released {
        at: Instant,
        count: u8,
    },
}

/// The gesture state machine.
#[derive(Debug, Clone)]
pub struct Gestures {
    timing: Timing,
    state: State,
}

impl Gestures {
    /// A machine at rest.
    pub fn new(timing: Timing) -> Self {
        Gestures {
            timing: Timing {
                max_presses: timing.max_presses.clamp(1, MAX_PRESSES),
                hold_repeat: timing.hold_repeat.filter(|period| !period.is_zero()),
                ..timing
            },
            state: State::Idle,
        }
    }

    /// When [`Gestures::tick`] must be called next, if the machine is waiting for time to pass.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Held {
                since, long: false, ..
            } => Some(since + self.timing.long_press),
            State::Held { repeat_at, .. } => repeat_at,
            State::Released { at, .. } => Some(at + self.timing.press_window),
            State::Idle => None,
        }
    }

    /// The gestures an event makes (after those that time passing to its instant made).
    pub fn event(&mut self, event: &ButtonEvent) -> Vec<Gesture> {
        let now = event.instant;
        let mut gestures = self.tick(now);
        match (event.kind, self.state) {
            (EventKind::Pressed, state) => {
                if matches!(state, State::Held { long: true, .. }) {
                    // The release after a hold was missed: the hold has ended all the same
                    // (an automation that dims on `long` stops on `long_release`).
                    gestures.push(Gesture::LongRelease);
                }
                gestures.push(Gesture::Press);
                let count = match state {
                    State::Released { count, .. } => count + 1,
                    // From rest, or a press while held (a release the poller missed): a new series.
                    _ => 1,
                };
                self.state = State::Held {
                    since: now,
                    count,
                    long: false,
                    repeat_at: None,
                };
            }
            (EventKind::Released, State::Held { long: true, .. }) => {
                gestures.extend([Gesture::Release, Gesture::LongRelease]);
                self.state = State::Idle;
            }
            (EventKind::Released, State::Held { count, .. })
                if count >= self.timing.max_presses =>
            {
                gestures.extend([Gesture::Release, Gesture::Presses(count)]);
                self.state = State::Idle;
            }
            (EventKind::Released, State::Held { count, .. }) => {
                gestures.push(Gesture::Release);
                self.state = State::Released { at: now, count };
            }
            (EventKind::Released, _) => gestures.push(Gesture::Release),
        }
        gestures
    }

    /// Starts over from rest (the listener fell behind the button's events); a hold under way
    /// is told as ended (`long_release`), so that nothing waits for it for ever.
    pub fn reset(&mut self) -> Vec<Gesture> {
        let held_long = matches!(self.state, State::Held { long: true, .. });
        self.state = State::Idle;
        if held_long {
            vec![Gesture::LongRelease]
        } else {
            Vec::new()
        }
    }

    /// Held long since `since`: with repeats on, the next is the first of `first(period)`,
    /// one period later, ... that is after `now`.
    fn held_long(
        &self,
        since: Instant,
        count: u8,
        first: impl FnOnce(Duration) -> Instant,
        now: Instant,
    ) -> State {
        State::Held {
            since,
            count,
            long: true,
            repeat_at: self
                .timing
                .hold_repeat
                .map(|period| next_after(first(period), period, now)),
        }
    }

    /// The gestures that time passing to `now` makes: `long` for a press held long enough,
    /// `repeat` while it stays held, the count of a series whose window has closed. A repeat
    /// whose time passed while nobody ticked (the service was busy) is told once, not once
    /// per missed period: a late burst would jump a dimmer.
    pub fn tick(&mut self, now: Instant) -> Vec<Gesture> {
        match self.state {
            State::Held {
                since,
                count,
                long: false,
                ..
            } if now >= since + self.timing.long_press => {
                let long_at = since + self.timing.long_press;
                self.state = self.held_long(since, count, |period| long_at + period, now);
                vec![Gesture::Long]
            }
            State::Held {
                since,
                count,
                long: true,
                repeat_at: Some(due),
            } if now >= due => {
                self.state = self.held_long(since, count, |_| due, now);
                vec![Gesture::Repeat]
            }
            State::Released { at, count } if now >= at + self.timing.press_window => {
                self.state = State::Idle;
                vec![Gesture::Presses(count)]
            }
            _ => Vec::new(),
        }
    }
}

/// The first of `first`, `first + period`, `first + 2 period`, ... that is later than `now`.
fn next_after(first: Instant, period: Duration, now: Instant) -> Instant {
    if first > now {
        return first;
    }
    let periods = now.duration_since(first).as_nanos() / period.as_nanos().max(1) + 1;
    let offset = period.as_nanos().saturating_mul(periods);
    first
        .checked_add(Duration::from_nanos(
            u64::try_from(offset).unwrap_or(u64::MAX),
        ))
        .unwrap_or(now + period)
}

/// One gesture, as listeners get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GestureEvent {
    /// Which.
    pub gesture: Gesture,
    /// When it was told (wall clock).
    pub at: SystemTime,
    /// 1 for the first gesture since the service started, then counting up without gaps.
    pub seq: u64,
}

/// Turns the button's events into gestures on `out` until the poller stops or `shutdown`.
/// A listener that falls behind starts over from rest (and says so).
///
/// Events carry when they happened, and arrive up to `lateness` after that (the poller sees
/// an edge at its next reading): the machine is ticked at each deadline's own instant, but
/// only once `lateness` past it, so that an edge that happened before the deadline is fed
/// first (a press in the window's last milliseconds still makes a double). So every gesture
/// that time makes is told `lateness` after its time: a `long` for a press released within
/// that is told with its release.
pub async fn run(
    mut events: Subscription,
    timing: Timing,
    lateness: Duration,
    out: broadcast::Sender<GestureEvent>,
    shutdown: CancellationToken,
) {
    let mut machine = Gestures::new(timing);
    let mut seq = 0;
    let mut tell = |gestures: Vec<Gesture>| {
        for gesture in gestures {
            seq += 1;
            // Nobody listening is fine.
            let _ = out.send(GestureEvent {
                gesture,
                at: SystemTime::now(),
                seq,
            });
        }
    };
    loop {
        let deadline = machine.deadline();
        tokio::select! {
            // An edge already waiting goes before a deadline that passed meanwhile: it
            // happened first (a second press would otherwise close the window as a single).
            biased;
            () = shutdown.cancelled() => return,
            received = events.recv() => match received {
                Received::Event(event) => tell(machine.event(&event)),
                Received::Lagged { missed, .. } => {
                    tracing::warn!(missed, "gestures fell behind the button's events; starting over");
                    tell(machine.reset());
                }
                Received::Closed => return,
            },
            () = runtime_kit::sleep_until(deadline.map(|deadline| deadline + lateness)) => {
                // The machine's times are the edges', not the task's: tick at the latest
                // instant every edge is known for (the deadline itself, unless the task was
                // held up: then one repeat is told, not one per period it missed).
                if let Some(deadline) = deadline {
                    let known = Instant::now().checked_sub(lateness).unwrap_or(deadline);
                    tell(machine.tick(known.max(deadline)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        long_press: Duration::from_millis(600),
        press_window: Duration::from_millis(300),
        max_presses: 5,
        hold_repeat: Some(Duration::from_millis(200)),
    };

    /// Feeds `script` (milliseconds from the start, press or release) to a machine with
    /// `timing`, ticking at every deadline on the way until `after` ms past the last event;
    /// the gestures with the time each was told.
    fn play_with(timing: Timing, script: &[(u64, EventKind)], after: u64) -> Vec<(u64, Gesture)> {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut machine = Gestures::new(timing);
        let mut told = Vec::new();
        let end = script.last().map_or(0, |(ms, _)| ms + after);
        let mut seq = 0;
        let mut events = script.iter().peekable();
        loop {
            let next_event = events.peek().map(|(ms, _)| at(*ms));
            let next_tick = machine.deadline().filter(|deadline| *deadline <= at(end));
            let event_first = match (next_event, next_tick) {
                (None, None) => return told,
                (Some(event), Some(tick)) => event <= tick,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if event_first {
                let Some(&(ms, kind)) = events.next() else {
                    return told;
                };
                seq += 1;
                let event = ButtonEvent {
                    kind,
                    at: SystemTime::now(),
                    instant: at(ms),
                    seq,
                };
                told.extend(machine.event(&event).into_iter().map(|g| (ms, g)));
            } else if let Some(tick) = next_tick {
                let ms = (tick - start).as_millis() as u64;
                told.extend(machine.tick(tick).into_iter().map(|g| (ms, g)));
            }
        }
    }

    fn play(script: &[(u64, EventKind)], after: u64) -> Vec<(u64, Gesture)> {
        play_with(TIMING, script, after)
    }

    /// [`TIMING`] counting at most `max_presses`.
    fn counting_up_to(max_presses: u8) -> Timing {
        Timing {
            max_presses,
            ..TIMING
        }
    }

    /// `n` clicks of 60 ms, one every 160 ms (100 ms apart: within the window).
    fn clicks(n: u64) -> Vec<(u64, EventKind)> {
        (0..n)
            .flat_map(|i| [(i * 160, Down), (i * 160 + 60, Up)])
            .collect()
    }

    /// Only the gestures that are not `press` or `release`.
    fn counted(told: Vec<(u64, Gesture)>) -> Vec<(u64, Gesture)> {
        told.into_iter()
            .filter(|(_, g)| !matches!(g, Press | Release))
            .collect()
    }

    use EventKind::{Pressed as Down, Released as Up};
    use Gesture::{Long, LongRelease, Press, Presses, Release, Repeat};

    #[test]
    fn a_short_press_is_single_once_the_press_window_has_closed() {
        assert_eq!(
            play(&[(0, Down), (100, Up)], 1000),
            [(0, Press), (100, Release), (400, Presses(1))]
        );
    }

    #[test]
    fn one_to_five_clicks_within_the_window_are_told_as_one_count_after_the_last() {
        // The fifth is the most counted: told at its release, without waiting.
        for (n, told_at) in [(1, 360), (2, 520), (3, 680), (4, 840), (5, 700)] {
            assert_eq!(
                counted(play(&clicks(n), 1000)),
                [(told_at, Presses(n as u8))],
                "{n} clicks"
            );
        }
    }

    #[test]
    fn the_gesture_names_are_home_assistants_and_the_readmes() {
        let names: Vec<&str> = Gesture::all(5).into_iter().map(Gesture::name).collect();
        assert_eq!(
            names,
            [
                "press",
                "release",
                "single",
                "double",
                "triple",
                "quadruple",
                "quintuple",
                "long",
                "repeat",
                "long_release"
            ]
        );
        assert_eq!(Gesture::all(2).len(), 7, "single and double only");
    }

    #[test]
    fn a_sixth_click_starts_a_new_series() {
        assert_eq!(
            counted(play(&clicks(6), 1000)),
            [(700, Presses(5)), (1160, Presses(1))]
        );
    }

    #[test]
    fn with_at_most_two_presses_a_double_is_told_at_its_release() {
        let timing = counting_up_to(2);
        assert_eq!(
            counted(play_with(timing, &clicks(2), 1000)),
            [(220, Presses(2))]
        );
        assert_eq!(
            counted(play_with(timing, &clicks(3), 1000)),
            [(220, Presses(2)), (680, Presses(1))]
        );
    }

    #[test]
    fn with_at_most_one_press_a_single_waits_for_nothing() {
        let timing = counting_up_to(1);
        assert_eq!(
            play_with(timing, &[(0, Down), (100, Up)], 1000),
            [(0, Press), (100, Release), (100, Presses(1))]
        );
    }

    #[test]
    fn a_press_after_the_window_starts_a_new_series() {
        assert_eq!(
            counted(play(&[(0, Down), (100, Up), (450, Down), (550, Up)], 1000)),
            [(400, Presses(1)), (850, Presses(1))]
        );
    }

    #[test]
    fn a_press_starting_exactly_as_the_window_closes_is_too_late() {
        assert_eq!(
            counted(play(&[(0, Down), (100, Up), (400, Down), (500, Up)], 1000)),
            [(400, Presses(1)), (800, Presses(1))]
        );
    }

    #[test]
    fn a_hold_is_long_then_a_repeat_every_period_while_held_then_long_release() {
        assert_eq!(
            play(&[(0, Down), (1300, Up)], 1000),
            [
                (0, Press),
                (600, Long),
                (800, Repeat),
                (1000, Repeat),
                (1200, Repeat),
                (1300, Release),
                (1300, LongRelease)
            ]
        );
    }

    #[test]
    fn without_repeats_a_hold_is_long_and_long_release_only() {
        for hold_repeat in [None, Some(Duration::ZERO)] {
            let timing = Timing {
                hold_repeat,
                ..TIMING
            };
            assert_eq!(
                play_with(timing, &[(0, Down), (1300, Up)], 1000),
                [
                    (0, Press),
                    (600, Long),
                    (1300, Release),
                    (1300, LongRelease)
                ]
            );
        }
    }

    #[test]
    fn a_press_released_just_before_the_long_press_time_is_single() {
        assert_eq!(
            play(&[(0, Down), (599, Up)], 1000),
            [(0, Press), (599, Release), (899, Presses(1))]
        );
    }

    #[test]
    fn a_hold_after_short_presses_ends_the_series_without_a_count() {
        assert_eq!(
            counted(play(&[(0, Down), (100, Up), (200, Down), (950, Up)], 1000)),
            [(800, Long), (950, LongRelease)]
        );
    }

    #[test]
    fn presses_shorter_than_the_poll_period_count_like_any_other() {
        // Edges 5 ms apart, as the poller tells a click it saw within one reading.
        assert_eq!(
            counted(play(&[(0, Down), (5, Up), (100, Down), (105, Up)], 1000)),
            [(405, Presses(2))]
        );
    }

    #[test]
    fn a_press_while_held_long_ends_the_hold_with_long_release_first() {
        assert_eq!(
            play(&[(0, Down), (700, Down), (750, Up)], 1000),
            [
                (0, Press),
                (600, Long),
                (700, LongRelease),
                (700, Press),
                (750, Release),
                (1050, Presses(1))
            ]
        );
    }

    #[test]
    fn a_reset_during_a_hold_tells_long_release_and_otherwise_nothing() {
        let start = Instant::now();
        let mut machine = Gestures::new(TIMING);
        let down = ButtonEvent {
            kind: Down,
            at: SystemTime::now(),
            instant: start,
            seq: 1,
        };
        machine.event(&down);
        assert_eq!(machine.reset(), []);
        machine.event(&down);
        assert_eq!(machine.tick(start + Duration::from_millis(600)), [Long]);
        assert_eq!(machine.reset(), [LongRelease]);
        assert_eq!(machine.deadline(), None);
    }

    #[test]
    fn a_press_while_held_is_a_missed_release_and_starts_a_new_series() {
        assert_eq!(
            counted(play(
                &[(0, Down), (100, Up), (200, Down), (300, Down), (350, Up)],
                1000
            )),
            [(650, Presses(1))]
        );
    }

    #[test]
    fn an_event_after_a_silent_stretch_first_tells_what_time_made() {
        // Nobody ticked at 600 (the service was busy): the release tells long, one repeat
        // (not one per missed period: a dimmer would jump), then the release.
        let mut machine = Gestures::new(TIMING);
        let start = Instant::now();
        let event = |kind, ms| ButtonEvent {
            kind,
            at: SystemTime::now(),
            instant: start + Duration::from_millis(ms),
            seq: 1,
        };
        assert_eq!(machine.event(&event(Down, 0)), [Press]);
        assert_eq!(machine.tick(start + Duration::from_millis(1450)), [Long]);
        assert_eq!(
            machine.deadline(),
            Some(start + Duration::from_millis(1600)),
            "the next repeat on the period's grid after now"
        );
        assert_eq!(machine.tick(start + Duration::from_millis(2450)), [Repeat]);
        assert_eq!(
            machine.deadline(),
            Some(start + Duration::from_millis(2600))
        );
        assert_eq!(machine.event(&event(Up, 2500)), [Release, LongRelease]);
        assert_eq!(machine.deadline(), None);
    }

    #[test]
    fn press_and_release_are_told_at_once_so_the_led_never_waits_for_a_gesture() {
        for script in [
            &[(0, Down), (100, Up)][..],
            &[(0, Down), (100, Up), (250, Down), (350, Up)][..],
            &[(0, Down), (1500, Up)][..],
        ] {
            let told = play(script, 1000);
            for (ms, kind) in script {
                let wanted = if *kind == Down { Press } else { Release };
                assert!(told.contains(&(*ms, wanted)), "{script:?}: {told:?}");
            }
        }
    }

    /// How late the runner tests' events may come.
    const LATENESS: Duration = Duration::from_millis(50);

    /// A runner over `events`, and its gestures with the milliseconds since `started` at which
    /// each was told.
    fn runner(
        events: &crate::events::Events,
        shutdown: &CancellationToken,
    ) -> (
        tokio::task::JoinHandle<()>,
        broadcast::Receiver<GestureEvent>,
    ) {
        let (out, gestures) = broadcast::channel(16);
        let runner = tokio::spawn(run(
            events.subscribe(),
            TIMING,
            LATENESS,
            out,
            shutdown.clone(),
        ));
        (runner, gestures)
    }

    #[tokio::test(start_paused = true)]
    async fn the_runner_tells_gestures_in_order_a_lateness_after_their_deadline() {
        let events = crate::events::Events::default();
        let shutdown = CancellationToken::new();
        let (runner, mut gestures) = runner(&events, &shutdown);
        let started = Instant::now();
        let mut told = Vec::new();
        let mut next = async || {
            let event = gestures.recv().await.unwrap();
            (
                event.seq,
                event.gesture,
                (Instant::now() - started).as_millis(),
            )
        };
        events.publish(Down, Instant::now());
        told.push(next().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        events.publish(Up, Instant::now());
        told.push(next().await);
        told.push(next().await);
        assert_eq!(
            told,
            [(1, Press, 0), (2, Release, 100), (3, Presses(1), 450)]
        );
        shutdown.cancel();
        runner.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_press_in_the_windows_last_milliseconds_told_after_it_closed_still_counts() {
        let events = crate::events::Events::default();
        let shutdown = CancellationToken::new();
        let (runner, mut gestures) = runner(&events, &shutdown);
        let started = Instant::now();
        let at = |ms| started + Duration::from_millis(ms);
        events.publish(Down, at(0));
        tokio::time::sleep_until(at(100)).await;
        events.publish(Up, at(100));
        // The window closes at 400; a press at 390 that the poller tells 40 ms later, with its
        // release, as it would after a reading.
        tokio::time::sleep_until(at(430)).await;
        events.publish(Down, at(390));
        events.publish(Up, at(430));
        let mut counted = Vec::new();
        while counted.is_empty() {
            let told = gestures.recv().await.unwrap();
            if let Presses(n) = told.gesture {
                counted.push((n, (Instant::now() - started).as_millis()));
            }
        }
        assert_eq!(
            counted,
            [(2, 780)],
            "a double, 300 + 50 ms after the last release"
        );
        shutdown.cancel();
        runner.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_runner_that_was_held_up_tells_one_repeat_not_one_per_missed_period() {
        let events = crate::events::Events::default();
        let shutdown = CancellationToken::new();
        let (runner, mut gestures) = runner(&events, &shutdown);
        let started = Instant::now();
        events.publish(Down, started);
        assert_eq!(gestures.recv().await.unwrap().gesture, Press);
        // Nothing runs for 1.5 s: long was due at 600, repeats at 800, 1000, 1200 and 1400.
        tokio::time::advance(Duration::from_millis(1500)).await;
        let mut told = Vec::new();
        for _ in 0..2 {
            let gesture = gestures.recv().await.unwrap().gesture;
            told.push((gesture, (Instant::now() - started).as_millis()));
        }
        assert_eq!(
            told,
            [(Long, 1500), (Repeat, 1650)],
            "long at once, then the repeats on their grid again (1600, told 50 ms later)"
        );
        shutdown.cancel();
        runner.await.unwrap();
    }

    #[test]
    fn a_press_in_the_windows_last_milliseconds_counts_on() {
        assert_eq!(
            counted(play(&[(0, Down), (100, Up), (385, Down), (445, Up)], 1000)),
            [(745, Presses(2))]
        );
    }
}
