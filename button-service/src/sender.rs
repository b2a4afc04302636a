//! Tells the LED service: one listener of the button's [`events`](crate::events), which POSTs
//! each edge at once and in order, so the LED follows the button; nothing is sent while the
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

use serde::Deserialize;
use service_kit::CancellationToken;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::events::{Received, Subscription};
use crate::metrics::Metrics;

/// First retry delay after a failure.
pub const BACKOFF_START: Duration = Duration::from_millis(50);
/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(1);
/// How often the LED service is checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How much of an error body is read and reported.
const ERROR_BODY_LIMIT: usize = 300;
/// The most of a /healthz body that is read.
const HEALTH_BODY_LIMIT: usize = 4096;

/// Why a request to the LED service failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Refused, reset, timed out, unresolvable.
    #[error("{url}: {source}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What reqwest said.
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not what the LED service answers.
    #[error("{url} answered something else than the LED service's health: {reason}")]
    Body {
        /// The URL requested.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The service answered, but not 2xx.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The start of the response body.
        body: String,
    },
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct LedClient {
    client: reqwest::Client,
    base: reqwest::Url,
    token: Option<String>,
}

/// How long an idle connection to the LED service is kept for the next request: not long (a
/// restarted LED container leaves dead ones), and less than the service waits for a request on
/// one ([`Limits::header_read`](service_kit::http::Limits), 5 s), so that a request is never
/// sent on a connection the service is closing at that moment.
const POOL_IDLE: Duration = Duration::from_secs(4);

impl LedClient {
    /// A client for the LED service at `base`, each request bounded by `timeout`.
    pub fn new(
        base: reqwest::Url,
        token: Option<String>,
        timeout: Duration,
    ) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("button-service/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(POOL_IDLE)
            .build()?;
        Ok(LedClient {
            client,
            base,
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        self.base
            .join(path)
            .map_or_else(|_| self.base.to_string(), |url| url.to_string())
    }

    /// POSTs `/true` or `/false`.
    pub async fn send(&self, on: bool) -> Result<(), SendError> {
        let url = self.url(if on { "true" } else { "false" });
        let mut request = self.client.post(&url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        Self::succeed(url, request.send().await).await.map(drop)
    }

    /// `GET /healthz`: the LED service's instance while it can drive the LED.
    pub async fn check(&self) -> Result<String, SendError> {
        #[derive(Deserialize)]
        struct Health {
            instance: String,
        }
        let url = self.url("healthz");
        let response = Self::succeed(url.clone(), self.client.get(&url).send().await).await?;
        let body = read_prefix(response, HEALTH_BODY_LIMIT).await;
        let health: Health = serde_json::from_slice(&body).map_err(|error| SendError::Body {
            url,
            reason: error.to_string(),
        })?;
        Ok(health.instance)
    }

    async fn succeed(
        url: String,
        response: reqwest::Result<reqwest::Response>,
    ) -> Result<reqwest::Response, SendError> {
        let response = response.map_err(|source| SendError::Transport {
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = read_prefix(response, ERROR_BODY_LIMIT).await;
        Err(SendError::Status {
            url,
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// At most `limit` bytes of a body: a peer that answers with a huge one costs nothing.
async fn read_prefix(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(limit);
    body
}

/// Capped exponential backoff with ±20% jitter, so many buttons don't retry in step.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: BACKOFF_START,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_CAP);
        base.mul_f64(0.8 + 0.4 * fastrand::f64())
    }
}

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
            () = sleep_until(retry_at), if retry_at.is_some() => delivery.retry_at = None,
            _ = check.tick() => {
                let checked = tokio::select! {
                    () = shutdown.cancelled() => return,
                    checked = client.check() => checked,
                };
                delivery.checked(checked, events.level());
            }
            _ = tick(&mut resend), if resend.is_some() => delivery.resend(events.level()),
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

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    if let Some(interval) = interval {
        interval.tick().await;
    }
}

/// What is left to deliver, and the state of the LED service.
struct Delivery {
    /// States to POST, in order.
    pending: VecDeque<bool>,
    /// While set, nothing is sent until then (backing off after a failure).
    retry_at: Option<Instant>,
    outage: Option<Outage>,
    /// The LED service's instance, as its /healthz last said.
    instance: Option<String>,
    metrics: Metrics,
    link: watch::Sender<LinkState>,
}

struct Outage {
    since: std::time::Instant,
    backoff: Backoff,
}

impl Delivery {
    fn new(metrics: Metrics, link: watch::Sender<LinkState>) -> Self {
        Delivery {
            pending: VecDeque::new(),
            retry_at: None,
            outage: None,
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
        if backlog || self.outage.is_some() {
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
        result: Result<(), crate::sender::SendError>,
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
                let delay = self.outage.as_mut().map(|o| o.backoff.next_delay());
                self.retry_at = delay.map(|delay| Instant::now() + delay);
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
                let recovered = self.outage.is_some();
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
        if let Some(outage) = self.outage.take() {
            tracing::info!(
                outage_ms = outage.since.elapsed().as_millis() as u64,
                state = delivered,
                "the LED service answers again"
            );
        }
        self.link.send_replace(LinkState::Up);
    }

    fn down(&mut self, error: &SendError) {
        if self.outage.is_none() {
            self.metrics.outages.inc();
            tracing::warn!(%error, "the LED service is not answering; retrying with backoff, polling goes on");
            self.outage = Some(Outage {
                since: std::time::Instant::now(),
                backoff: Backoff::new(),
            });
        }
        self.link.send_replace(LinkState::Down);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pooled_connection_is_dropped_before_the_led_service_would_close_it() {
        let server_waits = service_kit::http::Limits::default().header_read;
        assert!(
            POOL_IDLE + Duration::from_millis(500) <= server_waits,
            "{POOL_IDLE:?} idle in the pool against the service's {server_waits:?}: a request could meet a closing connection"
        );
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        let bases = [50, 100, 200, 400, 800, 1000, 1000, 1000];
        for (delay, base) in delays.iter().zip(bases) {
            let base = Duration::from_millis(base);
            assert!(
                *delay >= base.mul_f64(0.8) && *delay <= base.mul_f64(1.2),
                "{delay:?} vs {base:?}"
            );
        }
    }

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

    /// A peer that answers 500 with exactly [`ERROR_BODY_LIMIT`] bytes of body and then
    /// neither sends more nor ends it.
    async fn stalling_after_the_error_body_limit() -> (reqwest::Url, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let peer = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0; 1024];
            let _ = socket.read(&mut request).await.unwrap();
            let head = "HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n";
            let chunk = format!(
                "{ERROR_BODY_LIMIT:x}\r\n{}\r\n",
                "e".repeat(ERROR_BODY_LIMIT)
            );
            socket
                .write_all(format!("{head}{chunk}").as_bytes())
                .await
                .unwrap();
            std::future::pending::<()>().await; // holds the connection open
        });
        (url.parse().unwrap(), peer)
    }

    #[tokio::test]
    async fn an_error_body_is_read_up_to_its_limit_and_no_further() {
        let (url, peer) = stalling_after_the_error_body_limit().await;
        let client = LedClient::new(url, None, Duration::from_secs(30)).unwrap();
        let error = tokio::time::timeout(Duration::from_secs(10), client.send(true))
            .await
            .expect("the send waited for more body than it reports")
            .unwrap_err();
        let SendError::Status { status, body, .. } = error else {
            panic!("expected a status error, got {error}");
        };
        assert_eq!(status, reqwest::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, "e".repeat(ERROR_BODY_LIMIT));
        peer.abort();
    }
}
