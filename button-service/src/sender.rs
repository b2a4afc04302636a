//! Tells the LED service: one listener of the button's [`events`](crate::events), which POSTs
//! (through the [`client`](crate::client)) each edge at once and in order, so the LED follows the button; nothing is sent while the
//! button rests, so a LED set by hand stays set until the next press.
//!
//! - A failed send is retried (capped exponential backoff with jitter) until it is delivered or
//!   a newer state supersedes it. An outage is logged once when it starts and once when it ends.
//! - When a backlog builds (more than one event arrived during a send), only the latest state
//!   is sent.
//! - The LED service is checked every [`CHECK_INTERVAL`] (`GET /healthz`): when it comes back
//!   after an outage, or restarted meanwhile (its instance changed; it switches the LED off when
//!   it stops), the button's current state is sent once.
//! - With `--resend-interval`, the current state is also sent that often, as the original did.

use std::collections::VecDeque;
use std::time::Duration;

use runtime_kit::{Backoff, Burst, Policy};
use service_kit::CancellationToken;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::{LedClient, SendError};
use crate::events::{Received, Subscription};
use crate::metrics::Metrics;

/// The pauses before retrying a failed send: 50 ms doubling to 1 s, ±20%, so that many
/// buttons do not retry in step.
pub const RETRY: Policy = Policy {
    first: Duration::from_millis(50),
    cap: Duration::from_secs(1),
    jitter: 0.2,
};
/// How often the LED service is checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The LED service as this service sees it, for /healthz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Not contacted yet.
    Starting,
    /// The last request succeeded.
    Up,
    /// Requests are failing.
    Down,
}

/// Delivers the button's events to the LED service until `shutdown` is cancelled or the
/// poller is gone.
pub async fn run(
    client: LedClient,
    mut events: Subscription,
    resend: Option<Duration>,
    metrics: Metrics,
    link: watch::Sender<LinkState>,
    shutdown: CancellationToken,
) {
    let mut delivery = Delivery::new(metrics, link);
    let mut check = tokio::time::interval(CHECK_INTERVAL);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resend = resend.map(|period| tokio::time::interval_at(Instant::now() + period, period));
    loop {
        let retry_at = delivery.retry_at;
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            received = events.recv() => {
                if received == Received::Closed {
                    return;
                }
                delivery.receive(received, false);
            }
            () = runtime_kit::sleep_until(retry_at), if retry_at.is_some() => delivery.retry_at = None,
            _ = check.tick() => {
                let checked = tokio::select! {
                    () = shutdown.cancelled() => return,
                    checked = client.check() => checked,
                };
                delivery.checked(checked, events.level());
            }
            _ = runtime_kit::tick(&mut resend), if resend.is_some() => delivery.resend(events.level()),
        }
        while let Some(state) = delivery.next() {
            let result = tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                result = client.send(state) => result,
            };
            let mut arrived = Vec::new();
            while let Some(received) = events.try_recv() {
                if received == Received::Closed {
                    return;
                }
                arrived.push(received);
            }
            delivery.sent(state, result, arrived, events.level());
        }
    }
}

/// What is left to deliver, and the state of the LED service.
struct Delivery {
    /// States to POST, in order.
    pending: VecDeque<bool>,
    /// While set, nothing is sent until then (backing off after a failure).
    retry_at: Option<Instant>,
    /// The LED service not answering, logged once at each end.
    outage: Burst,
    backoff: Backoff,
    /// The LED service's instance, as its /healthz last said.
    instance: Option<String>,
    metrics: Metrics,
    link: watch::Sender<LinkState>,
}

impl Delivery {
    fn new(metrics: Metrics, link: watch::Sender<LinkState>) -> Self {
        Delivery {
            pending: VecDeque::new(),
            retry_at: None,
            outage: Burst::default(),
            backoff: Backoff::new(RETRY),
            instance: None,
            metrics,
            link,
        }
    }

    /// Takes an event (or a gap) into the queue. `backlog`: it arrived while a send was in
    /// flight among others, so only the latest state is worth sending.
    fn receive(&mut self, received: Received, backlog: bool) {
        let state = match received {
            Received::Event(event) => event.kind.is_pressed(),
            Received::Lagged {
                level: Some(level),
                missed,
            } => {
                self.metrics.superseded.inc_by(missed);
                level
            }
            Received::Lagged { level: None, .. } | Received::Closed => return,
        };
        if backlog || self.outage.is_on() {
            // Nobody saw the history: only the latest state matters now.
            self.metrics.superseded.inc_by(self.pending.len() as u64);
            self.pending.clear();
        }
        self.pending.push_back(state);
    }

    /// The next state to send, unless backing off.
    fn next(&mut self) -> Option<bool> {
        if self.retry_at.is_some() {
            return None;
        }
        self.pending.pop_front()
    }

    /// Takes the outcome of a send, and what arrived meanwhile.
    fn sent(
        &mut self,
        state: bool,
        result: Result<(), SendError>,
        arrived: Vec<Received>,
        level: Option<bool>,
    ) {
        self.metrics.sends.inc();
        let backlog = arrived.len() > 1;
        match result {
            Ok(()) => {
                self.metrics.record_success();
                self.up(Some(state));
            }
            Err(error) => {
                self.metrics.send_failures.inc();
                self.down(&error);
                self.retry_at = Some(Instant::now() + self.backoff.next_delay());
                // Retry with the latest state, not the one that failed.
                self.pending.clear();
                self.pending.extend(level.or(Some(state)));
            }
        }
        for received in arrived {
            self.receive(received, backlog);
        }
    }

    /// Takes the outcome of a check of the LED service.
    fn checked(&mut self, result: Result<String, SendError>, level: Option<bool>) {
        self.metrics.checks.inc();
        match result {
            Ok(instance) => {
                let restarted = self
                    .instance
                    .as_ref()
                    .is_some_and(|known| *known != instance);
                let recovered = self.outage.is_on();
                self.instance = Some(instance);
                self.up(None);
                if (restarted || recovered) && self.pending.is_empty() {
                    self.pending.extend(level);
                }
            }
            Err(error) => self.down(&error),
        }
    }

    /// Queues the current state again (`--resend-interval`).
    fn resend(&mut self, level: Option<bool>) {
        if self.pending.is_empty() {
            self.pending.extend(level);
        }
    }

    fn up(&mut self, delivered: Option<bool>) {
        self.retry_at = None;
        if let Some(outage) = self.outage.end() {
            self.backoff.reset();
            tracing::info!(
                outage_ms = outage.lasted_ms(),
                state = delivered,
                "the LED service answers again"
            );
        }
        self.link.send_replace(LinkState::Up);
    }

    fn down(&mut self, error: &SendError) {
        if self.outage.hit() {
            self.metrics.outages.inc();
            tracing::warn!(%error, "the LED service is not answering; retrying with backoff, polling goes on");
        }
        self.link.send_replace(LinkState::Down);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> Delivery {
        Delivery::new(Metrics::default(), watch::channel(LinkState::Starting).0)
    }

    fn event(pressed: bool) -> Received {
        Received::Event(crate::events::ButtonEvent {
            kind: if pressed {
                crate::events::EventKind::Pressed
            } else {
                crate::events::EventKind::Released
            },
            at: std::time::SystemTime::now(),
            instant: Instant::now(),
            seq: 1,
        })
    }

    /// What is queued, in order (at most 16: more is a failure, not a hang).
    fn queued(delivery: &mut Delivery) -> Vec<bool> {
        std::iter::from_fn(|| delivery.next()).take(16).collect()
    }

    #[test]
    fn one_event_arriving_during_a_send_keeps_the_queue_in_order() {
        let mut delivery = delivery();
        delivery.receive(event(true), false);
        delivery.receive(event(false), false);
        assert_eq!(delivery.next(), Some(true));
        delivery.sent(true, Ok(()), vec![event(true)], Some(true));
        assert_eq!(queued(&mut delivery), [false, true], "every edge, in order");
    }

    #[test]
    fn a_backlog_arriving_during_a_send_leaves_only_the_latest_state() {
        let mut delivery = delivery();
        delivery.receive(event(true), false);
        assert_eq!(delivery.next(), Some(true));
        delivery.sent(
            true,
            Ok(()),
            vec![event(false), event(true), event(false)],
            Some(false),
        );
        assert_eq!(queued(&mut delivery), [false]);
        assert_eq!(delivery.metrics.superseded.get(), 2);
    }

    #[test]
    fn the_state_is_sent_again_when_the_led_service_restarted_or_came_back() {
        let mut delivery = delivery();
        delivery.checked(Ok("first".into()), Some(true));
        assert!(
            queued(&mut delivery).is_empty(),
            "first contact: nothing to repeat"
        );
        delivery.checked(Ok("first".into()), Some(true));
        assert!(queued(&mut delivery).is_empty(), "same instance, no outage");
        delivery.checked(Ok("second".into()), Some(true));
        assert_eq!(
            queued(&mut delivery),
            [true],
            "restarted without an outage seen"
        );

        delivery.checked(
            Err(SendError::Body {
                url: "http://127.0.0.1:9/healthz".to_owned(),
                reason: "not the LED service".into(),
            }),
            Some(false),
        );
        delivery.checked(Ok("second".into()), Some(false));
        assert_eq!(queued(&mut delivery), [false], "back after an outage");
    }
}
