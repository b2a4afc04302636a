//! The `tcp://host:port` bus: a blocking client of the simulator server, one request frame per
//! I2C transaction.
//!
//! It connects on first use and again after any failure, so it rides out a simulator restart:
//! the transaction in flight fails, the next one reconnects. It never retries a transaction by
//! itself (a write might then land twice); callers decide.
//!
//! A `TcpBus` of its own can also wait for the button's INT line to change
//! ([`TcpBus::wait_int_edge`]): the simulator's stand-in for a GPIO line's edge events.

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use embedded_hal::i2c::{self, ErrorKind, I2c, NoAcknowledgeSource, Operation};

use crate::wire::{self, FrameError, Status};

/// Connect, read and write timeouts of a [`TcpBus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTimeouts {
    /// Giving up on connecting.
    pub connect: Duration,
    /// Giving up on a response (includes the device's own delay).
    pub io: Duration,
    /// Opening a new connection rather than use one idle this long.
    pub reuse: Duration,
}

impl Default for TcpTimeouts {
    fn default() -> Self {
        TcpTimeouts {
            connect: Duration::from_secs(1),
            io: Duration::from_secs(1),
            reuse: wire::CLIENT_REUSE_LIMIT,
        }
    }
}

/// An I2C bus reached through the simulator server.
#[derive(Debug)]
pub struct TcpBus {
    host: String,
    port: u16,
    timeouts: TcpTimeouts,
    /// The connection, read through a buffer so a response costs one system call, and when it
    /// was last used.
    stream: Option<(BufReader<TcpStream>, Instant)>,
    /// Reused frame buffers: no allocation per transaction once warm.
    request: Vec<u8>,
    response: Vec<u8>,
}

/// What went wrong on a `tcp://` bus.
#[derive(Debug)]
pub enum TcpBusError {
    /// The server could not be reached.
    Connect {
        /// `host:port`.
        server: String,
        /// Why.
        source: io::Error,
    },
    /// The connection failed or timed out during the transaction.
    Io {
        /// `host:port`.
        server: String,
        /// Why.
        source: io::Error,
    },
    /// The transaction cannot be expressed in the protocol (too many operations or bytes),
    /// or the server's answer was malformed.
    Frame(FrameError),
    /// The server refused the request as malformed.
    Refused(String),
    /// The device answered with an I2C error.
    Device(Status),
}

impl fmt::Display for TcpBusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpBusError::Connect { server, source } => write!(
                f,
                "cannot connect to the simulator at tcp://{server}: {source}; check that the simulator server runs and listens there"
            ),
            TcpBusError::Io { server, source } => {
                write!(
                    f,
                    "connection to the simulator at tcp://{server} failed: {source}"
                )
            }
            TcpBusError::Frame(error) => write!(f, "simulator protocol error: {error}"),
            TcpBusError::Refused(message) => {
                write!(f, "the simulator refused the request: {message}")
            }
            TcpBusError::Device(status) => write!(f, "the simulated device answered {status:?}"),
        }
    }
}

impl std::error::Error for TcpBusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TcpBusError::Connect { source, .. } | TcpBusError::Io { source, .. } => Some(source),
            TcpBusError::Frame(error) => Some(error),
            _ => None,
        }
    }
}

impl i2c::Error for TcpBusError {
    fn kind(&self) -> ErrorKind {
        match self {
            TcpBusError::Device(Status::NackAddress) => {
                ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
            }
            TcpBusError::Device(Status::NackData) => {
                ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data)
            }
            TcpBusError::Device(Status::NackUnknown) => {
                ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown)
            }
            TcpBusError::Device(Status::Bus) => ErrorKind::Bus,
            TcpBusError::Device(Status::ArbitrationLoss) => ErrorKind::ArbitrationLoss,
            _ => ErrorKind::Other,
        }
    }
}

impl TcpBusError {
    /// True when the device answered with an I2C error (the transport worked).
    pub fn is_device_answer(&self) -> bool {
        matches!(self, TcpBusError::Device(_))
    }
}

impl TcpBus {
    /// A bus that will connect to `host:port` on first use.
    pub fn new(host: impl Into<String>, port: u16, timeouts: TcpTimeouts) -> Self {
        TcpBus {
            host: host.into(),
            port,
            timeouts,
            stream: None,
            request: Vec::with_capacity(64),
            response: Vec::with_capacity(64),
        }
    }

    /// `host:port`.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Connects now (instead of on first use), reporting an unreachable server at once.
    pub fn connect(&mut self) -> Result<(), TcpBusError> {
        self.stream()?;
        Ok(())
    }

    /// The connection: the open one unless it idled past the reuse limit (the server may be
    /// about to drop it), else a new one.
    fn stream(&mut self) -> Result<&mut BufReader<TcpStream>, TcpBusError> {
        let reuse = self.timeouts.reuse;
        let stream = match self.stream.take() {
            Some((stream, used)) if used.elapsed() < reuse => stream,
            _ => BufReader::with_capacity(2 + wire::MAX_BODY, self.open()?),
        };
        let (stream, _) = self.stream.insert((stream, Instant::now()));
        Ok(stream)
    }

    fn open(&self) -> Result<TcpStream, TcpBusError> {
        let server = self.server();
        let connect_error = |source| TcpBusError::Connect {
            server: server.clone(),
            source,
        };
        // Resolve on every connect: a restarted container may come back at a new address.
        let addresses: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(connect_error)?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name has no address");
        for address in addresses {
            match TcpStream::connect_timeout(&address, self.timeouts.connect) {
                Ok(stream) => {
                    let setup = stream
                        .set_nodelay(true)
                        .and_then(|()| stream.set_read_timeout(Some(self.timeouts.io)))
                        .and_then(|()| stream.set_write_timeout(Some(self.timeouts.io)));
                    setup.map_err(connect_error)?;
                    return Ok(stream);
                }
                Err(error) => last = error,
            }
        }
        Err(connect_error(last))
    }

    /// Waits up to `timeout` (at most [`wire::MAX_INT_WAIT`]) for the simulated button's INT
    /// line to change (either edge); true when it changed since this bus's previous wait
    /// returned. Use a bus of its own for this: a wait holds the connection. A failed wait
    /// drops the connection, and edges while it was down are not counted (the caller reads
    /// the button anyway).
    pub fn wait_int_edge(&mut self, timeout: Duration) -> Result<bool, TcpBusError> {
        let result = self.with_buffers(|bus, request, response| {
            wire::encode_int_wait(timeout, request).map_err(TcpBusError::Frame)?;
            match bus.round_trip(request, response, timeout)? {
                (Status::Ok, [changed]) => Ok(*changed == 1),
                (Status::Ok, _) => Err(TcpBusError::Frame(FrameError::Truncated)),
                (Status::BadRequest, message) => Err(TcpBusError::Refused(format!(
                    "{} (a simulator older than the INT line refuses INT waits: update it)",
                    String::from_utf8_lossy(message)
                ))),
                (other, _) => Err(TcpBusError::Device(other)),
            }
        });
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    /// Runs `work` with the bus's reused frame buffers (no allocation per frame once warm).
    fn with_buffers<T>(
        &mut self,
        work: impl FnOnce(&mut Self, &mut Vec<u8>, &mut Vec<u8>) -> Result<T, TcpBusError>,
    ) -> Result<T, TcpBusError> {
        let mut request = std::mem::take(&mut self.request);
        let mut response = std::mem::take(&mut self.response);
        let result = work(self, &mut request, &mut response);
        self.request = request;
        self.response = response;
        result
    }

    /// Sends one encoded request frame and reads the response's body into `response`; the
    /// status and payload. The server may take `wait` on top of the I/O timeout to answer.
    fn round_trip<'r>(
        &mut self,
        request: &[u8],
        response: &'r mut Vec<u8>,
        wait: Duration,
    ) -> Result<(Status, &'r [u8]), TcpBusError> {
        let server = self.server();
        let io_error = |source| TcpBusError::Io {
            server: server.clone(),
            source,
        };
        let io = self.timeouts.io;
        let stream = self.stream()?;
        stream.get_mut().write_all(request).map_err(io_error)?;
        if !wait.is_zero() {
            stream
                .get_mut()
                .set_read_timeout(Some(wait + io))
                .map_err(io_error)?;
        }
        let mut prefix = [0; 2];
        stream.read_exact(&mut prefix).map_err(io_error)?;
        let len = wire::body_length(prefix).map_err(TcpBusError::Frame)?;
        response.resize(len, 0);
        stream.read_exact(response).map_err(io_error)?;
        if !wait.is_zero() {
            stream
                .get_mut()
                .set_read_timeout(Some(io))
                .map_err(io_error)?;
        }
        wire::decode_response(response).map_err(TcpBusError::Frame)
    }

    fn exchange(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), TcpBusError> {
        self.with_buffers(|bus, request, response| {
            let ops = operations.iter().map(|operation| match operation {
                Operation::Write(bytes) => Ok(&bytes[..]),
                Operation::Read(buffer) => Err(buffer.len()),
            });
            wire::encode_request(address, ops, request).map_err(TcpBusError::Frame)?;
            let payload = match bus.round_trip(request, response, Duration::ZERO)? {
                (Status::Ok, payload) => payload,
                (Status::BadRequest, message) => {
                    return Err(TcpBusError::Refused(
                        String::from_utf8_lossy(message).into_owned(),
                    ));
                }
                (other, _) => return Err(TcpBusError::Device(other)),
            };
            let expected: usize = operations
                .iter()
                .map(|operation| match operation {
                    Operation::Read(buffer) => buffer.len(),
                    Operation::Write(_) => 0,
                })
                .sum();
            if payload.len() != expected {
                return Err(TcpBusError::Frame(FrameError::Truncated));
            }
            let mut from = 0;
            for operation in operations.iter_mut() {
                if let Operation::Read(buffer) = operation {
                    buffer.copy_from_slice(&payload[from..from + buffer.len()]);
                    from += buffer.len();
                }
            }
            Ok(())
        })
    }
}

impl i2c::ErrorType for TcpBus {
    type Error = TcpBusError;
}

impl I2c for TcpBus {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let result = self.exchange(address, operations);
        if matches!(
            result,
            Err(TcpBusError::Io { .. } | TcpBusError::Frame(_) | TcpBusError::Refused(_))
        ) {
            // The stream's state is unknown (a late response may still arrive): start afresh.
            self.stream = None;
        }
        result
    }
}
