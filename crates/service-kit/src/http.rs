//! Serving HTTP with bounds a peer on the LAN cannot stretch:
//!
//! - a deadline for each request's head, which also closes a connection that sits idle
//!   (hyper's head timer runs from the moment the server waits for a request, on a fresh
//!   connection and after each answer alike), and a limit on how long a request body may stall;
//! - a head of at most [`Limits::max_head`] and a connection buffer of at most
//!   [`Limits::buffer`] (hyper's default buffer grows to ~400 KiB a connection: a few hundred
//!   oversized heads would take a service past its memory limit);
//! - a deadline on writing an answer ([`Limits::write_stall`]): a client that sends requests and
//!   never reads the answers is closed;
//! - connection slots shared fairly ([`runtime_kit::Admission`]): one address holds at most
//!   [`Limits::per_peer`] of [`Limits::connections`], and a few more are kept for 127.0.0.1,
//!   so the container's own health check gets through a flood;
//! - a graceful shutdown that gives in-flight requests a grace period.
//!
//! `axum::serve` sets no timer at all: hundreds of partial request lines stayed open for good.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use runtime_kit::{Acceptor, Admission, Burst, Refusal, Slots};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
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
    /// Longest wait for an answer being written to make progress: a client that stops
    /// reading (and keeps sending requests) is closed after it.
    pub write_stall: Duration,
    /// Largest request head (request line and headers); a larger one is answered 431.
    pub max_head: usize,
    /// Largest buffer a connection may hold for reading or writing.
    pub buffer: usize,
    /// Open connections at most (127.0.0.1 and ::1 get [`Limits::local_reserve`] more).
    pub connections: usize,
    /// Open connections from one address at most (127.0.0.1 and ::1 excepted).
    pub per_peer: usize,
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
            write_stall: Duration::from_secs(10),
            max_head: 8 * 1024,
            buffer: 16 * 1024,
            connections: 256,
            per_peer: 32,
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
        .max_header_size(limits.max_head)
        // hyper refuses a buffer under 8 KiB (it would panic): never ask for less.
        .max_buf_size(limits.buffer.max(8 * 1024))
        .keep_alive(true);
    let admission = Admission::new(Slots {
        total: limits.connections,
        per_peer: limits.per_peer,
        local_reserve: limits.local_reserve,
    });
    let graceful = GracefulShutdown::new();
    let mut acceptor = Acceptor::new(listener, "connections");
    let (mut full, mut peer_full) = (Burst::default(), Burst::default());
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = acceptor.accept() => accepted,
        };
        let ticket = match admission.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(Refusal::Full) => {
                if full.hit() {
                    tracing::warn!(
                        limit = limits.connections,
                        "too many open connections: refusing new ones until some close"
                    );
                }
                tokio::spawn(refuse(stream, REFUSED_FULL));
                continue;
            }
            Err(Refusal::PeerFull) => {
                if peer_full.hit() {
                    tracing::warn!(
                        %peer, limit = limits.per_peer,
                        "one address holds its share of the connections: refusing it more until some close"
                    );
                }
                tokio::spawn(refuse(stream, REFUSED_PEER));
                continue;
            }
        };
        if let Some(ended) = full.end() {
            tracing::info!(refused = ended.count, "accepting connections again");
        }
        if let Some(ended) = peer_full.end() {
            tracing::info!(
                refused = ended.count,
                "accepting connections again from the address that held its share"
            );
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
        let io = TokioIo::new(WriteDeadline::new(stream, limits.write_stall));
        let connection = graceful.watch(http.serve_connection(io, service));
        tokio::spawn(async move {
            // Errors are a peer's business (reset, timeout, garbage): nothing to report.
            let _ = connection.await;
            drop(ticket);
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

/// Why a connection over the cap is refused.
const REFUSED_FULL: &str = "too many open connections to this service; retry in a second";
/// Why a connection over its address's share is refused.
const REFUSED_PEER: &str =
    "too many open connections from your address; close some, or retry in a second";

/// Answers a refused connection with a 503 that says why, and closes it.
async fn refuse(mut stream: TcpStream, why: &'static str) {
    let body = format!("{}\n", serde_json::json!({ "error": why }));
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
}

/// A stream whose writes must make progress: a write (or flush) that stays pending for
/// longer than the limit fails with `TimedOut`, and the connection is closed. Reads pass
/// through untouched, and a write that is accepted at once costs nothing: the timer is made
/// only when a write has to wait.
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            stalled: None,
        }
    }

    /// What to answer for a write that `poll` attempted.
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing of the answer for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
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

    /// Serves `router` within `limits` on a free loopback port; cancel the token to stop.
    async fn start(router: Router, limits: Limits) -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, router, limits, shutdown.clone()));
        (address, shutdown)
    }

    /// A connection to `server` from `source` (another loopback address: another peer).
    async fn connect_from(source: &str, server: std::net::SocketAddr) -> TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(server).await.unwrap()
    }

    /// Everything `stream` sends until it closes, within `within` (`None`: it never closed).
    async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
        let mut all = Vec::new();
        tokio::time::timeout(within, stream.read_to_end(&mut all))
            .await
            .ok()
            .map(|_| all)
    }

    #[tokio::test]
    async fn a_head_over_the_limit_is_answered_431_and_the_connection_closed() {
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (address, shutdown) = start(router, Limits::default()).await;
        let mut stream = connect_from("127.0.0.2", address).await;
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        // The server may close before it has read everything: a reset is fine.
        let _ = stream.write_all(huge.as_bytes()).await;
        let answer = read_to_close(&mut stream, Duration::from_secs(5))
            .await
            .expect("the connection stayed open");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        // A head within the limit is served.
        let mut fine = connect_from("127.0.0.2", address).await;
        let head = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(6 * 1024)
        );
        fine.write_all(head.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut fine, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_client_that_never_reads_its_answers_is_closed_after_the_write_deadline() {
        // Answers large enough to fill the socket buffers within a few hundred requests.
        let router =
            Router::new().route("/", axum::routing::get(|| async { "x".repeat(64 * 1024) }));
        let limits = Limits {
            write_stall: Duration::from_millis(300),
            header_read: Duration::from_secs(60),
            ..Limits::default()
        };
        let (address, shutdown) = start(router, limits).await;
        let mut stream = connect_from("127.0.0.2", address).await;
        let requests = 400;
        let pipelined = "GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(requests);
        // Sends every request, then reads nothing for a second: the server's writes stall
        // once the socket buffers are full.
        stream.write_all(pipelined.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Reading now: what the buffers held, then the end, well before every answer came.
        let mut all = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut all))
            .await
            .is_ok();
        let answered = String::from_utf8_lossy(&all)
            .matches("HTTP/1.1 200")
            .count();
        assert!(
            closed && answered < requests,
            "closed: {closed}, {answered} of {requests} answered"
        );
        shutdown.cancel();
    }

    #[tokio::test]
    async fn one_address_holds_at_most_its_share_and_another_still_gets_in() {
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let limits = Limits {
            connections: 8,
            per_peer: 3,
            ..Limits::default()
        };
        let (address, shutdown) = start(router, limits).await;
        // 127.0.0.2 holds three partial heads; its fourth connection is refused with a reason.
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut stream = connect_from("127.0.0.2", address).await;
            stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
            held.push(stream);
        }
        let mut refused = connect_from("127.0.0.2", address).await;
        let answer = read_to_close(&mut refused, Duration::from_secs(5))
            .await
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 503") && answer.contains("from your address"),
            "{answer}"
        );
        let length: usize = answer
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .and_then(|length| length.trim().parse().ok())
            .unwrap();
        assert_eq!(answer.split("\r\n\r\n").nth(1).unwrap().len(), length);
        // Another address is served meanwhile.
        let mut other = connect_from("127.0.0.3", address).await;
        other
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut other, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
        drop(held);
        shutdown.cancel();
    }
}
