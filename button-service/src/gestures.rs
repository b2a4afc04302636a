//! Press gestures, computed from the button's events: `press` and `release` at once, `long`
//! when the button has been held for the long-press time, `double` when a second short press
//! ends within the double-press window of the first, and `single` when a short press is not
//! followed by another within that window (so `single` waits for the window, by definition).
//!
//! A pure state machine driven by the events' monotonic times and by [`Gestures::deadline`],
//! so its rules are tested with paused time, and it never delays the LED (a separate listener).

use std::time::{Duration, SystemTime};

use service_kit::CancellationToken;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::events::{ButtonEvent, EventKind, Received, Subscription};

/// One gesture, as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gesture {
    /// The button went down.
    Press,
    /// The button came up.
    Release,
    /// A short press, not followed by another within the double-press window.
    Single,
    /// Two short presses, the second ending within the window after the first.
    Double,
    /// Held for the long-press time (told while still held).
    Long,
}

impl Gesture {
    /// Every gesture, in the order of the README.
    pub const ALL: [Gesture; 5] = [
        Gesture::Press,
        Gesture::Release,
        Gesture::Single,
        Gesture::Double,
        Gesture::Long,
    ];

    /// The name in MQTT payloads and Home Assistant's event types.
    pub fn name(self) -> &'static str {
        match self {
            Gesture::Press => "press",
            Gesture::Release => "release",
            Gesture::Single => "single",
            Gesture::Double => "double",
            Gesture::Long => "long",
        }
    }
}

/// The timing of gestures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Held at least this long: `long`.
    pub long_press: Duration,
    /// A second press ending within this time after the first short press ended: `double`.
    pub double_press_window: Duration,
}

/// Where the state machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    /// Held since `since`; `second`: this is the second press of a possible double.
    Held {
        since: Instant,
        second: bool,
        long: bool,
    },
    /// A short press ended at `at`: a `single` unless another press starts in the window.
    Released {
        at: Instant,
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
            timing,
            state: State::Idle,
        }
    }

    /// When [`Gestures::tick`] must be called next, if the machine is waiting for time to pass.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Held {
                since, long: false, ..
            } => Some(since + self.timing.long_press),
            State::Released { at } => Some(at + self.timing.double_press_window),
            _ => None,
        }
    }

    /// The gestures an event makes.
    pub fn event(&mut self, event: &ButtonEvent) -> Vec<Gesture> {
        let now = event.instant;
        let mut gestures = self.tick(now);
        match (event.kind, self.state) {
            (EventKind::Pressed, State::Released { .. }) => {
                gestures.push(Gesture::Press);
                self.state = State::Held {
                    since: now,
                    second: true,
                    long: false,
                };
            }
            (EventKind::Pressed, _) => {
                gestures.push(Gesture::Press);
                self.state = State::Held {
                    since: now,
                    second: false,
                    long: false,
                };
            }
            (EventKind::Released, State::Held { long: true, .. }) => {
                gestures.push(Gesture::Release);
                self.state = State::Idle;
            }
            (EventKind::Released, State::Held { second: true, .. }) => {
                gestures.extend([Gesture::Release, Gesture::Double]);
                self.state = State::Idle;
            }
            (EventKind::Released, State::Held { .. }) => {
                gestures.push(Gesture::Release);
                self.state = State::Released { at: now };
            }
            (EventKind::Released, _) => gestures.push(Gesture::Release),
        }
        gestures
    }

    /// The gestures that time passing to `now` makes: `long` for a press held long enough,
    /// `single` for a short press whose window has closed.
    pub fn tick(&mut self, now: Instant) -> Vec<Gesture> {
        match self.state {
            State::Held {
                since,
                second,
                long: false,
            } if now >= since + self.timing.long_press => {
                self.state = State::Held {
                    since,
                    second,
                    long: true,
                };
                vec![Gesture::Long]
            }
            State::Released { at } if now >= at + self.timing.double_press_window => {
                self.state = State::Idle;
                vec![Gesture::Single]
            }
            _ => Vec::new(),
        }
    }
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
pub async fn run(
    mut events: Subscription,
    timing: Timing,
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
            () = shutdown.cancelled() => return,
            () = runtime_kit::sleep_until(deadline) => {
                tell(machine.tick(Instant::now()));
            }
            received = events.recv() => match received {
                Received::Event(event) => tell(machine.event(&event)),
                Received::Lagged { missed, .. } => {
                    tracing::warn!(missed, "gestures fell behind the button's events; starting over");
                    machine = Gestures::new(timing);
                }
                Received::Closed => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        long_press: Duration::from_millis(600),
        double_press_window: Duration::from_millis(300),
    };

    /// Feeds `script` (milliseconds from the start, press or release) to a machine, ticking
    /// at every deadline on the way and `after` ms past the last event; the gestures with
    /// the time each was told.
    fn play(script: &[(u64, EventKind)], after: u64) -> Vec<(u64, Gesture)> {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut machine = Gestures::new(TIMING);
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

    use EventKind::{Pressed as Down, Released as Up};
    use Gesture::{Double, Long, Press, Release, Single};

    #[test]
    fn a_short_press_is_single_once_the_double_press_window_has_closed() {
        assert_eq!(
            play(&[(0, Down), (100, Up)], 1000),
            [(0, Press), (100, Release), (400, Single)]
        );
    }

    #[test]
    fn two_short_presses_within_the_window_are_one_double_and_no_single() {
        assert_eq!(
            play(&[(0, Down), (100, Up), (250, Down), (350, Up)], 1000),
            [
                (0, Press),
                (100, Release),
                (250, Press),
                (350, Release),
                (350, Double)
            ]
        );
    }

    #[test]
    fn a_second_press_after_the_window_is_two_singles() {
        assert_eq!(
            play(&[(0, Down), (100, Up), (450, Down), (550, Up)], 1000),
            [
                (0, Press),
                (100, Release),
                (400, Single),
                (450, Press),
                (550, Release),
                (850, Single)
            ]
        );
    }

    #[test]
    fn a_press_held_for_the_long_press_time_is_long_while_still_held_and_nothing_after() {
        assert_eq!(
            play(&[(0, Down), (1500, Up)], 1000),
            [(0, Press), (600, Long), (1500, Release)]
        );
    }

    #[test]
    fn a_press_released_just_before_the_long_press_time_is_single() {
        assert_eq!(
            play(&[(0, Down), (599, Up)], 1000),
            [(0, Press), (599, Release), (899, Single)]
        );
    }

    #[test]
    fn a_short_press_then_a_long_one_is_long_not_double() {
        assert_eq!(
            play(&[(0, Down), (100, Up), (200, Down), (1000, Up)], 1000),
            [
                (0, Press),
                (100, Release),
                (200, Press),
                (800, Long),
                (1000, Release)
            ]
        );
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

    #[tokio::test(start_paused = true)]
    async fn the_runner_tells_gestures_in_order_with_their_timing() {
        let events = crate::events::Events::default();
        let (out, mut gestures) = broadcast::channel(16);
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(run(events.subscribe(), TIMING, out, shutdown.clone()));
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
        events.publish(Down);
        told.push(next().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        events.publish(Up);
        told.push(next().await);
        told.push(next().await);
        assert_eq!(told, [(1, Press, 0), (2, Release, 100), (3, Single, 400)]);
        shutdown.cancel();
        runner.await.unwrap();
    }
}
