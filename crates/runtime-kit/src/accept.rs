//! Accepting connections through a failing `accept`: out of file descriptors, say, the
//! pending client stays queued, so trying again at once would spin. [`Acceptor::accept`]
//! backs off (10 ms doubling to 1 s) and logs once when failures start and once when they end.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::{Backoff, Burst, Policy};

/// The pauses after failed accepts.
const ACCEPT_BACKOFF: Policy = Policy {
    first: Duration::from_millis(10),
    cap: Duration::from_secs(1),
    jitter: 0.0,
};

/// A listener whose failures are ridden out.
#[derive(Debug)]
pub struct Acceptor {
    listener: TcpListener,
    backoff: Backoff,
    failing: Burst,
    what: &'static str,
}

impl Acceptor {
    /// Accepts on `listener`; `what` names the clients in the log ("simulator clients").
    pub fn new(listener: TcpListener, what: &'static str) -> Self {
        Acceptor {
            listener,
            backoff: Backoff::new(ACCEPT_BACKOFF),
            failing: Burst::default(),
            what,
        }
    }

    /// The next connection. Cancel-safe: dropped while it waits, nothing is lost.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => {
                    if let Some(ended) = self.failing.end() {
                        tracing::info!(
                            failures = ended.count,
                            lasted_ms = ended.lasted_ms(),
                            "accepting {} again",
                            self.what
                        );
                        self.backoff.reset();
                    }
                    return accepted;
                }
                Err(error) => {
                    if self.failing.hit() {
                        tracing::warn!(%error, "accepting {} failed; retrying with backoff", self.what);
                    }
                    tokio::time::sleep(self.backoff.next_delay()).await;
                }
            }
        }
    }

    /// Where it listens.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}
