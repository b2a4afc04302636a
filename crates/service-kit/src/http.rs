//! Serving HTTP with bounds a peer on the LAN cannot stretch: a deadline for each request's
//! head (a slow or partial request line is cut off), a limit on how long a kept-alive
//! connection may sit idle, a cap on open connections (with a few slots kept for 127.0.0.1, so
//! the container's own health check gets through when the cap is reached), and a graceful
//! shutdown that gives in-flight requests a grace period.
//!
//! `axum::serve` sets no timer at all: hundreds of partial request lines stayed open for good.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// How long a service may hold a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From the first byte of a request to the end of its head.
    pub header_read: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle: Duration,
    /// Open connections at most (127.0.0.1 and ::1 get [`Limits::local_reserve`] more).
    pub connections: usize,
    /// Extra slots only connections from 127.0.0.1 or ::1 may use: the container's own health
    /// check, which a flood from the network must not lock out.
    pub local_reserve: usize,
    /// After shutdown starts, how long in-flight requests get to finish.
    pub grace: Duration,
    /// Requests a service handles at once where it limits them (more are answered 503 at once).
    pub requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read: Duration::from_secs(5),
            // Longer than the button service's pool keeps idle connections (5 s), so the server
            // never closes one under a request.
            idle: Duration::from_secs(30),
            connections: 256,
            local_reserve: 8,
            grace: Duration::from_millis(500),
            requests: 512,
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
    let mut refusing = false;
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors or an aborted handshake: pause, keep serving.
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(permit) = slot(&network, &local, peer.ip()) else {
            if !refusing {
                refusing = true;
                tracing::warn!(
                    limit = limits.connections,
                    "too many open connections: refusing new ones until some close"
                );
            }
            tokio::spawn(refuse(stream));
            continue;
        };
        if refusing && network.available_permits() > 0 {
            refusing = false;
            tracing::info!("accepting connections again");
        }
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let io = TokioIo::new(IdleLimit::new(stream, limits.idle));
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            // Errors are a peer's business (reset, timeout, garbage): nothing to report.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
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

/// A stream that fails with `TimedOut` when no byte arrives for `idle` while the server waits
/// for one: a kept-alive connection nobody uses is closed. (hyper's header timer runs only once
/// a request has begun.) Traffic only notes the time; the timer is moved when it fires early,
/// so a busy connection does not re-register a timer with the runtime at every read and write.
struct IdleLimit {
    stream: TcpStream,
    idle: Duration,
    last_traffic: Instant,
    deadline: Pin<Box<Sleep>>,
}

impl IdleLimit {
    fn new(stream: TcpStream, idle: Duration) -> Self {
        IdleLimit {
            stream,
            idle,
            last_traffic: Instant::now(),
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// Ready with an error once `idle` has passed since the last traffic.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        while self.deadline.as_mut().poll(cx).is_ready() {
            let due = self.last_traffic + self.idle;
            if Instant::now() >= due {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was idle too long",
                ));
            }
            self.deadline.as_mut().reset(due);
        }
        Poll::Pending
    }
}

impl AsyncRead for IdleLimit {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.last_traffic = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for IdleLimit {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.last_traffic = Instant::now();
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    /// Passed through, so that hyper writes a response's head and body in one `writev`
    /// instead of copying them into one buffer first.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.last_traffic = Instant::now();
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn an_idle_limited_stream_writes_a_head_and_body_in_one_vectored_write() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut stream = IdleLimit::new(server, Duration::from_secs(30));
        assert!(
            stream.is_write_vectored(),
            "hyper copies head and body into one buffer unless the stream says it is vectored"
        );
        let slices = [IoSlice::new(b"head "), IoSlice::new(b"body")];
        let written = stream.write_vectored(&slices).await.unwrap();
        assert_eq!(written, 9, "both slices in one call");
        drop(stream);
        let mut received = String::new();
        let mut client = client;
        client.read_to_string(&mut received).await.unwrap();
        assert_eq!(received, "head body");
    }
}
