//! The server side of the `tcp://` protocol: serves one simulated button to many clients.
//!
//! Each request is applied with [`SimButton::apply_transaction`], under the device lock, so
//! transactions from different connections never interleave. A malformed frame, an unknown
//! operation, a client that stalls mid-frame or idles past [`Limits::idle`] closes that
//! connection; the server and the other clients carry on, and a run of such closings is logged
//! once when it starts and once when a client is served well again. At most
//! [`Limits::clients`] clients at once, [`Limits::per_peer`] of them from one address (more are
//! closed at once, logged once per burst), so that one host cannot take the slots the services
//! need when they reconnect; a failing `accept` (out of file descriptors) is ridden out by
//! [`Acceptor`]. A client may also wait for the button's INT line to change
//! ([`wire`](crate::wire)'s INT wait), on a connection of its own.

use std::io;
use std::time::Duration;

use embedded_hal::i2c::{Error as _, ErrorKind, NoAcknowledgeSource, Operation};
use qwiic_sim::{SimButton, SimEventKind};
use runtime_kit::{Acceptor, Admission, Burst, Refusal, Slots};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::wire::{self, FrameError, Status, WireOperation};

/// How long a client may take to send the rest of a frame it has started.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(2);

/// How much the server gives its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Clients connected at once.
    pub clients: usize,
    /// Clients connected at once from one address (127.0.0.1 and ::1 excepted).
    pub per_peer: usize,
    /// How long a client may send nothing between frames.
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            clients: 64,
            per_peer: 8,
            idle: wire::SERVER_IDLE_TIMEOUT,
        }
    }
}

/// Accepts clients until `shutdown` is cancelled, then drops every connection.
pub async fn serve(
    listener: TcpListener,
    button: SimButton,
    limits: Limits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let edges = int_edges(&button);
    let mut connections = JoinSet::new();
    let mut acceptor = Acceptor::new(listener, "simulator clients");
    let admission = Admission::new(Slots {
        total: limits.clients,
        per_peer: limits.per_peer,
        local_reserve: 0,
    });
    let (mut refusing, mut failing) = (Burst::default(), Burst::default());
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            (stream, peer) = acceptor.accept() => {
                let ticket = match admission.admit(peer.ip()) {
                    Ok(ticket) => ticket,
                    Err(refusal) => {
                        if refusing.hit() {
                            let why = match refusal {
                                Refusal::Full => "too many simulator clients",
                                Refusal::PeerFull => "one address holds its share of the simulator's clients",
                            };
                            tracing::warn!(%peer, clients = limits.clients, per_peer = limits.per_peer, "{why}: closing new ones until some leave");
                        }
                        continue; // dropping the stream closes it
                    }
                };
                if let Some(ended) = refusing.end() {
                    tracing::info!(refused = ended.count, "taking simulator clients again");
                }
                // set_nodelay only fails on a socket that is already gone.
                let _ = stream.set_nodelay(true);
                let (button, edges) = (button.clone(), edges.clone());
                connections.spawn(async move {
                    let result = serve_connection(stream, button, edges, limits.idle).await;
                    drop(ticket);
                    (peer, result)
                });
            }
            Some(Ok((peer, result))) = connections.join_next(), if !connections.is_empty() => {
                match result {
                    // An idle client was let go: housekeeping, not a fault.
                    Err(ConnectionError::Idle(_)) => {}
                    Err(error) => {
                        if failing.hit() {
                            tracing::info!(%peer, %error, "closing simulator client connections that misbehave (this one, and more until a client is served well)");
                        }
                    }
                    Ok(()) => {
                        if let Some(ended) = failing.end() {
                            tracing::info!(closed = ended.count, lasted_ms = ended.lasted_ms(), "simulator clients are served well again");
                        }
                    }
                }
            }
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// How many times the button's INT line has changed (either edge), from now on: what
/// [`serve_connection`] counts INT waits by. One per server (the observer stays for the
/// button's life).
pub fn int_edges(button: &SimButton) -> watch::Receiver<u64> {
    let (sender, receiver) = watch::channel(0);
    button.subscribe(move |event| {
        if matches!(event.kind, SimEventKind::Int { .. }) {
            sender.send_modify(|edges| *edges += 1);
        }
    });
    receiver
}

/// Why a connection was closed early.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The peer sent something that is not a valid frame.
    #[error("malformed request: {0}")]
    Frame(#[from] FrameError),
    /// The peer stopped sending in the middle of a frame.
    #[error("client stalled mid-frame for more than {0:?}")]
    Stalled(Duration),
    /// The peer sent nothing for too long between frames.
    #[error("client idle for more than {0:?}")]
    Idle(Duration),
    /// The connection broke.
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
}

/// Serves one client until it disconnects, misbehaves or idles longer than `idle` between
/// frames. A clean disconnect between frames returns `Ok`. INT waits count the edges of
/// `edges` (from [`int_edges`]).
pub async fn serve_connection<S>(
    stream: S,
    button: SimButton,
    mut edges: watch::Receiver<u64>,
    idle: Duration,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Buffered: a whole frame usually arrives in one read system call.
    let mut stream = tokio::io::BufReader::new(stream);
    let mut body = Vec::with_capacity(64);
    let mut reads = Vec::with_capacity(64);
    let mut response = Vec::with_capacity(64);
    // The edges this connection's INT waits have accounted for; set by its first wait.
    let mut seen: Option<u64> = None;
    loop {
        let mut prefix = [0; 2];
        // Idle between frames is fine, up to `idle`.
        let waiting = tokio::time::timeout(idle, stream.fill_buf()).await;
        match waiting {
            Ok(buffered) => {
                if buffered?.is_empty() {
                    return Ok(());
                }
            }
            Err(_) => return Err(ConnectionError::Idle(idle)),
        }
        let frame = async {
            stream.read_exact(&mut prefix).await?;
            let len = wire::body_length(prefix)?;
            body.resize(len, 0);
            stream.read_exact(&mut body).await?;
            Ok::<_, ConnectionError>(())
        };
        match tokio::time::timeout(FRAME_TIMEOUT, frame).await {
            Ok(result) => result?,
            Err(_) => return Err(ConnectionError::Stalled(FRAME_TIMEOUT)),
        }
        if let Some(wait) = wire::decode_int_wait(&body) {
            let timeout = match wait {
                Ok(timeout) => timeout,
                Err(error) => return Err(refuse(&mut stream, &mut response, error).await),
            };
            let changed = wait_for_edge(&mut edges, &mut seen, timeout).await;
            wire::encode_response(Status::Ok, &[u8::from(changed)], &mut response);
            stream.write_all(&response).await?;
            continue;
        }
        let request = match wire::decode_request(&body) {
            Ok(request) => request,
            Err(error) => return Err(refuse(&mut stream, &mut response, error).await),
        };
        let delay = button.transaction_delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let status = execute(&button, request, &mut reads);
        let payload = if status == Status::Ok {
            &reads[..]
        } else {
            &[]
        };
        wire::encode_response(status, payload, &mut response);
        stream.write_all(&response).await?;
    }
}

/// Answers a malformed frame `BadRequest` with what was wrong; the connection then closes
/// with the returned error.
async fn refuse<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: &mut Vec<u8>,
    error: FrameError,
) -> ConnectionError {
    wire::encode_response(Status::BadRequest, error.to_string().as_bytes(), response);
    // The peer may already be gone; the error we report is the frame.
    let _ = stream.write_all(response).await;
    error.into()
}

/// Waits up to `timeout` for an edge of the INT line that `seen` has not accounted for; true
/// when one came (and `seen` now accounts for every edge so far).
async fn wait_for_edge(
    edges: &mut watch::Receiver<u64>,
    seen: &mut Option<u64>,
    timeout: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    let since = *seen.get_or_insert(*edges.borrow_and_update());
    loop {
        let now = *edges.borrow_and_update();
        if now > since {
            *seen = Some(now);
            return true;
        }
        match tokio::time::timeout_at(deadline, edges.changed()).await {
            Ok(Ok(())) => {}
            // The button is gone (the server stops): no edge will come.
            Ok(Err(_)) => {
                tokio::time::sleep_until(deadline).await;
                return false;
            }
            Err(_) => return false,
        }
    }
}

/// Runs one decoded transaction on the simulated device; read data lands in `reads`.
fn execute(button: &SimButton, request: wire::Request, reads: &mut Vec<u8>) -> Status {
    let total: usize = request
        .operations
        .iter()
        .map(|operation| match operation {
            WireOperation::Read(len) => *len,
            WireOperation::Write(_) => 0,
        })
        .sum();
    reads.clear();
    reads.resize(total, 0);
    let mut rest = &mut reads[..];
    let mut operations = Vec::with_capacity(request.operations.len());
    for operation in &request.operations {
        match operation {
            WireOperation::Write(bytes) => operations.push(Operation::Write(bytes)),
            WireOperation::Read(len) => {
                let (chunk, tail) = std::mem::take(&mut rest).split_at_mut(*len);
                rest = tail;
                operations.push(Operation::Read(chunk));
            }
        }
    }
    match button.apply_transaction(request.address, &mut operations) {
        Ok(()) => Status::Ok,
        Err(error) => match error.kind() {
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address) => Status::NackAddress,
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data) => Status::NackData,
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown) => Status::NackUnknown,
            ErrorKind::Bus => Status::Bus,
            ErrorKind::ArbitrationLoss => Status::ArbitrationLoss,
            _ => Status::Other,
        },
    }
}
