//! Serving HTTP with bounds a peer on the LAN cannot stretch: a deadline for each request's
//! head, which also closes a connection that sits idle (hyper's head timer runs from the
//! moment the server waits for a request, on a fresh connection and after each answer alike), a
//! limit on how long a request body may stall, a cap on open connections (with a few slots
//! kept for 127.0.0.1, so the container's own health check gets through when the cap is
//! reached), and a graceful shutdown that gives in-flight requests a grace period.
//!
//! `axum::serve` sets no timer at all: hundreds of partial request lines stayed open for good.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use runtime_kit::{Acceptor, Burst};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower_http::timeout::TimeoutBody;

/// How long a service may hold a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From when the server waits for a request (a new connection, or the answer to the
    /// previous one sent) to the end of its head: a partial head and an idle connection alike
    /// are closed after it. Clients that keep connections alive for reuse (button-service)
    /// keep them idle for less.
    pub header_read: Duration,
    /// Longest wait for the next part of a request body: a body that stalls longer fails to
    /// read (the handler answers it as a bad body). Requests without a body pay nothing.
    pub body_stall: Duration,
    /// Open connections at most (127.0.0.1 and ::1 get [`Limits::local_reserve`] more).
    pub connections: usize,
    /// Extra slots only connections from 127.0.0.1 or ::1 may use: the container's own health
    /// check, which a flood from the network must not lock out.
    pub local_reserve: usize,
    /// After shutdown starts, how long in-flight requests get to finish.
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read: Duration::from_secs(5),
            body_stall: Duration::from_secs(10),
            connections: 256,
            local_reserve: 8,
            grace: Duration::from_millis(500),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` is cancelled; then stops
/// accepting, lets in-flight requests finish for at most `limits.grace`, and returns.
/// Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    let network = Arc::new(Semaphore::new(limits.connections));
    let local = Arc::new(Semaphore::new(limits.local_reserve));
    let graceful = GracefulShutdown::new();
    let mut acceptor = Acceptor::new(listener, "connections");
    let mut refusing = Burst::default();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = acceptor.accept() => accepted,
        };
        let Some(permit) = slot(&network, &local, peer.ip()) else {
            if refusing.hit() {
                tracing::warn!(
                    limit = limits.connections,
                    "too many open connections: refusing new ones until some close"
                );
            }
            tokio::spawn(refuse(stream));
            continue;
        };
        if network.available_permits() > 0 {
            if let Some(ended) = refusing.end() {
                tracing::info!(refused = ended.count, "accepting connections again");
            }
        }
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let body_stall = limits.body_stall;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = if request.body().is_end_stream() {
                request.map(Body::new)
            } else {
                request.map(|body| Body::new(TimeoutBody::new(body_stall, body)))
            };
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let io = TokioIo::new(stream);
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            // Errors are a peer's business (reset, timeout, garbage): nothing to report.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(acceptor);
    if tokio::time::timeout(limits.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = limits.grace.as_millis() as u64,
            "requests still running after the grace period were cut off"
        );
    }
    Ok(())
}

/// A connection slot: from the shared pool, or for a local peer from the reserve.
fn slot(
    network: &Arc<Semaphore>,
    local: &Arc<Semaphore>,
    peer: IpAddr,
) -> Option<OwnedSemaphorePermit> {
    Arc::clone(network).try_acquire_owned().ok().or_else(|| {
        is_local(peer)
            .then(|| Arc::clone(local).try_acquire_owned().ok())
            .flatten()
    })
}

/// 127.0.0.1 or ::1 (not all of 127/8: a test or a local proxy may use other addresses).
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip == std::net::Ipv4Addr::LOCALHOST,
        IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped() == Some(std::net::Ipv4Addr::LOCALHOST)
        }
    }
}

/// Answers a connection over the cap with a 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 74\r\n\r\n{\"error\":\"too many open connections to this service; retry in a second\"}\n";
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer)).await;
}

#[cfg(test)]
mod tests {
    use axum::routing::put;
    use tokio::io::AsyncReadExt as _;
    use tokio::time::Instant;

    use super::*;

    #[tokio::test]
    async fn a_request_body_that_stalls_fails_after_the_limit_and_a_whole_one_is_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/",
            put(
                |body: Result<String, axum::extract::rejection::StringRejection>| async move {
                    match body {
                        Ok(body) => format!("read {body}"),
                        Err(rejection) => format!("failed: {}", rejection.body_text()),
                    }
                },
            ),
        );
        let limits = Limits {
            body_stall: Duration::from_millis(300),
            ..Limits::default()
        };
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, router, limits, shutdown.clone()));
        let ask = |request: &'static [u8]| async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream.write_all(request).await.unwrap();
            let started = Instant::now();
            let mut answer = [0; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
                .await
                .expect("no answer within 5 s")
                .unwrap();
            (
                String::from_utf8_lossy(&answer[..read]).into_owned(),
                started.elapsed(),
            )
        };
        let (answer, _) = ask(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nwhole").await;
        assert!(answer.ends_with("read whole"), "{answer}");
        let (answer, took) = ask(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nwh").await;
        assert!(answer.contains("failed: "), "{answer}");
        assert!(took >= Duration::from_millis(250), "failed after {took:?}");
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
