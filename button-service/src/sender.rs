//! Tells the LED service: every new state at once and in order, the current state again every
//! re-send interval, and through an outage with capped exponential backoff and jitter. An
//! outage is logged once when it starts and once when it ends.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::metrics::Metrics;

/// First retry delay after a failure.
pub const BACKOFF_START: Duration = Duration::from_millis(50);

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Refused, reset, timed out, unresolvable.
    #[error("{url}: {source}")]
    Transport {
        /// The URL posted to.
        url: String,
        /// What reqwest said.
        #[source]
        source: reqwest::Error,
    },
    /// The service answered, but not 2xx.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// The URL posted to.
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
            // A restarted LED container leaves dead pooled connections; don't keep them long.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()?;
        Ok(LedClient {
            client,
            base,
            token: token.filter(|token| !token.is_empty()),
        })
    }

    /// POSTs `/true` or `/false`.
    pub async fn send(&self, on: bool) -> Result<(), SendError> {
        let url = self
            .base
            .join(if on { "true" } else { "false" })
            .map_or_else(|_| self.base.to_string(), |url| url.to_string());
        let mut request = self.client.post(&url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|source| SendError::Transport {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(SendError::Status {
            url,
            status,
            body: body.chars().take(300).collect(),
        })
    }
}

/// Capped exponential backoff with ±20% jitter, so many buttons don't retry in step.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    fn new(cap: Duration) -> Self {
        Backoff {
            next: BACKOFF_START.min(cap),
            cap,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.cap);
        base.mul_f64(0.8 + 0.4 * fastrand::f64())
    }
}

/// Link state, for /healthz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Nothing sent yet.
    Starting,
    /// The last send succeeded.
    Up,
    /// Sends are failing.
    Down,
}

/// Sends states from `states` until `shutdown` completes or the poller is gone.
///
/// `resend` is both the re-send interval and the backoff cap, so the LED converges within about
/// one interval of the LED service coming back.
pub async fn run(
    client: LedClient,
    mut states: mpsc::Receiver<bool>,
    resend: Duration,
    metrics: Metrics,
    link: watch::Sender<LinkState>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut pending: VecDeque<bool> = VecDeque::new();
    let mut current: Option<bool> = None;
    let mut next_resend = Instant::now() + resend;
    let mut retry_at: Option<Instant> = None;
    let mut outage: Option<(std::time::Instant, Backoff)> = None;
    loop {
        let wake = retry_at.unwrap_or(next_resend);
        tokio::select! {
            biased;
            () = &mut shutdown => return,
            state = states.recv() => match state {
                Some(state) => {
                    current = Some(state);
                    if outage.is_some() {
                        // Nobody saw the history: only the latest state matters now.
                        pending.clear();
                    }
                    pending.push_back(state);
                    // Take whatever else the poller has queued, in order.
                    while let Ok(state) = states.try_recv() {
                        current = Some(state);
                        pending.push_back(state);
                    }
                }
                None => return,
            },
            () = tokio::time::sleep_until(wake) => {
                retry_at = None;
                if pending.is_empty() {
                    pending.extend(current);
                }
            }
        }
        while let Some(&state) = pending.front() {
            metrics.sends.inc();
            let result = tokio::select! {
                biased;
                () = &mut shutdown => return,
                result = client.send(state) => result,
            };
            match result {
                Ok(()) => {
                    pending.pop_front();
                    metrics.record_success();
                    next_resend = Instant::now() + resend;
                    if let Some((since, _)) = outage.take() {
                        tracing::info!(
                            outage_ms = since.elapsed().as_millis() as u64,
                            state,
                            "the LED service answers again; latest state delivered"
                        );
                    }
                    link.send_replace(LinkState::Up);
                }
                Err(error) => {
                    metrics.send_failures.inc();
                    let (_, backoff) = outage.get_or_insert_with(|| {
                        metrics.outages.inc();
                        tracing::warn!(%error, "the LED service is not answering; retrying with backoff, polling goes on");
                        (std::time::Instant::now(), Backoff::new(resend))
                    });
                    retry_at = Some(Instant::now() + backoff.next_delay());
                    pending.clear();
                    pending.extend(current);
                    link.send_replace(LinkState::Down);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_secs(1));
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
}
