//! The button's events: every press and release, numbered, on a broadcast channel that any
//! number of listeners subscribe to (the LED delivery; gestures and MQTT can be added without
//! touching the poller), and the button's current level beside it.
//!
//! A listener that falls more than [`CAPACITY`] events behind is told how many it missed and
//! resynchronises from the current level, instead of replaying old presses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

/// How many events a listener may fall behind before it skips to the current level.
pub const CAPACITY: usize = 256;

/// What happened to the button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// It went down.
    Pressed,
    /// It came up.
    Released,
}

impl EventKind {
    /// The button's level after this event: true while held down.
    pub fn is_pressed(self) -> bool {
        self == EventKind::Pressed
    }
}

/// One press or release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ButtonEvent {
    /// Press or release.
    pub kind: EventKind,
    /// When it happened (wall clock, for reports).
    pub at: SystemTime,
    /// When it happened (monotonic, for timing gestures): the firmware's time of the edge,
    /// which may be a poll period before it was seen.
    pub instant: Instant,
    /// 1 for the first event since the service started, then counting up without gaps.
    pub seq: u64,
}

/// The sending side, held by the poller. Clones share the sequence.
#[derive(Debug, Clone)]
pub struct Events {
    events: broadcast::Sender<ButtonEvent>,
    level: watch::Sender<Option<bool>>,
    seq: Arc<AtomicU64>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            events: broadcast::channel(CAPACITY).0,
            level: watch::channel(None).0,
            seq: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Events {
    /// Publishes an event that `happened` (now or earlier) and moves the level.
    pub fn publish(&self, kind: EventKind, happened: Instant) -> ButtonEvent {
        let ago = Instant::now().saturating_duration_since(happened);
        let now = SystemTime::now();
        let event = ButtonEvent {
            kind,
            at: now.checked_sub(ago).unwrap_or(now),
            instant: happened,
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
        };
        self.level.send_replace(Some(kind.is_pressed()));
        // No listener is fine: nobody is interested yet.
        let _ = self.events.send(event);
        event
    }

    /// Sets the level without an event (the first reading: no edge was seen).
    pub fn set_level(&self, pressed: bool) {
        self.level.send_replace(Some(pressed));
    }

    /// A new listener, which receives every event published from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            events: self.events.subscribe(),
            level: self.level.subscribe(),
        }
    }

    /// The current level: `None` until the button has been read.
    pub fn level(&self) -> Option<bool> {
        *self.level.borrow()
    }
}

/// What a listener receives next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// The next event, in order.
    Event(ButtonEvent),
    /// The listener fell behind: `missed` events are gone; resynchronise from `level`.
    Lagged {
        /// How many events were skipped.
        missed: u64,
        /// The button's level now.
        level: Option<bool>,
    },
    /// The poller is gone: the service is stopping.
    Closed,
}

/// One listener's view of the events.
#[derive(Debug)]
pub struct Subscription {
    events: broadcast::Receiver<ButtonEvent>,
    level: watch::Receiver<Option<bool>>,
}

impl Subscription {
    /// Waits for the next event.
    pub async fn recv(&mut self) -> Received {
        let result = self.events.recv().await;
        self.received(result)
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Received> {
        match self.events.try_recv() {
            Err(broadcast::error::TryRecvError::Empty) => None,
            Ok(event) => Some(Received::Event(event)),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => Some(Received::Lagged {
                missed,
                level: self.level(),
            }),
            Err(broadcast::error::TryRecvError::Closed) => Some(Received::Closed),
        }
    }

    /// The button's level now: `None` until it has been read.
    pub fn level(&self) -> Option<bool> {
        *self.level.borrow()
    }

    fn received(&self, result: Result<ButtonEvent, broadcast::error::RecvError>) -> Received {
        match result {
            Ok(event) => Received::Event(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => Received::Lagged {
                missed,
                level: self.level(),
            },
            Err(broadcast::error::RecvError::Closed) => Received::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_listener_gets_every_event_in_order() {
        let events = Events::default();
        let (mut first, mut second) = (events.subscribe(), events.subscribe());
        events.publish(EventKind::Pressed, Instant::now());
        events.publish(EventKind::Released, Instant::now());
        for listener in [&mut first, &mut second] {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let Received::Event(event) = listener.recv().await else {
                    panic!("expected an event");
                };
                seen.push((event.kind, event.seq));
            }
            assert_eq!(seen, [(EventKind::Pressed, 1), (EventKind::Released, 2)]);
        }
        assert_eq!(first.level(), Some(false));
    }

    #[tokio::test]
    async fn a_lagging_listener_is_told_how_many_it_missed_and_the_level() {
        let events = Events::default();
        let mut slow = events.subscribe();
        for round in 0..CAPACITY + 10 {
            let kind = if round % 2 == 0 {
                EventKind::Pressed
            } else {
                EventKind::Released
            };
            events.publish(kind, Instant::now());
        }
        events.publish(EventKind::Pressed, Instant::now());
        assert_eq!(
            slow.recv().await,
            Received::Lagged {
                missed: 11,
                level: Some(true)
            }
        );
        let Received::Event(next) = slow.recv().await else {
            panic!("the events after the gap follow");
        };
        assert_eq!(next.seq, 12);
    }

    #[tokio::test]
    async fn listeners_learn_that_the_poller_is_gone() {
        let events = Events::default();
        let mut listener = events.subscribe();
        assert_eq!(listener.try_recv(), None);
        drop(events);
        assert_eq!(listener.recv().await, Received::Closed);
    }
}
