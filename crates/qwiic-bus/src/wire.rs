//! The `tcp://` wire protocol: one request frame per I2C transaction, so a transaction stays
//! atomic however many clients share the simulated bus.
//!
//! Every frame is a 2-byte little-endian body length followed by the body. Both sides refuse
//! bodies over [`MAX_BODY`] bytes, so a bad peer cannot make the other allocate much.
//!
//! Request body:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | protocol version, [`VERSION`] |
//! | 1 | 7-bit I2C address |
//! | 1 | operation count, 1 to [`MAX_OPERATIONS`] |
//! | per operation | kind (0 = write, 1 = read), u16 LE length, then the bytes for a write |
//!
//! Response body: one [`Status`] byte; after `Ok`, the bytes of all reads concatenated in order;
//! after `BadRequest`, a UTF-8 message, and the server closes the connection.
//!
//! The button's INT line, for a client that asks: a request whose address byte is `0xFF` (no
//! 7-bit address is) is an **INT wait**, `[VERSION, 0xFF, timeout u16 LE in ms]`, at most
//! [`MAX_INT_WAIT`]. The server answers when the line has changed (either edge) since this
//! connection's previous wait returned (for the first wait: since it arrived), or when the
//! time is up: `Ok` and one byte, 1 when it changed, 0 when it did not. As a GPIO line's edge
//! events, edges are counted while nobody waits, so none is missed between two waits; a new
//! connection starts afresh. A client waits on a connection of its own: a wait holds its connection.
//! A server that predates INT refuses the request (`BadRequest`, an invalid address).

use std::fmt;

/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// Largest frame body, either way.
pub const MAX_BODY: usize = 1024;
/// Most operations in one transaction.
pub const MAX_OPERATIONS: usize = 16;
/// Most bytes one transaction may read in total (the response must fit in [`MAX_BODY`]).
pub const MAX_READ_TOTAL: usize = MAX_BODY - 1;
/// A server drops a client that has sent nothing for this long between frames.
pub const SERVER_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// A client opens a new connection rather than use one that idled this long (half the server's
/// limit), so it never sends on a connection the server is about to drop.
pub const CLIENT_REUSE_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The longest one INT wait may last: a client waits in slices, well inside the server's idle
/// limit.
pub const MAX_INT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// The address byte that marks an INT wait.
const INT_WAIT: u8 = 0xFF;

const KIND_WRITE: u8 = 0;
const KIND_READ: u8 = 1;

/// One operation of a decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireOperation {
    /// Bytes to write.
    Write(Vec<u8>),
    /// Number of bytes to read.
    Read(usize),
}

/// A decoded request: one I2C transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The 7-bit address.
    pub address: u8,
    /// The operations, in order.
    pub operations: Vec<WireOperation>,
}

/// The outcome of a transaction, as the first byte of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Done; read data follows.
    Ok = 0,
    /// The address was not acknowledged.
    NackAddress = 1,
    /// A data byte was not acknowledged.
    NackData = 2,
    /// Not acknowledged, phase unknown.
    NackUnknown = 3,
    /// Bus error.
    Bus = 4,
    /// Arbitration lost.
    ArbitrationLoss = 5,
    /// Any other device-side failure.
    Other = 6,
    /// The request was malformed; a message follows and the connection closes.
    BadRequest = 7,
}

impl Status {
    /// Decodes a status byte.
    pub fn from_byte(byte: u8) -> Option<Status> {
        Some(match byte {
            0 => Status::Ok,
            1 => Status::NackAddress,
            2 => Status::NackData,
            3 => Status::NackUnknown,
            4 => Status::Bus,
            5 => Status::ArbitrationLoss,
            6 => Status::Other,
            7 => Status::BadRequest,
            _ => return None,
        })
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The body is longer than [`MAX_BODY`].
    TooLong(usize),
    /// The body ended inside a field.
    Truncated,
    /// Bytes left after the last operation.
    TrailingBytes(usize),
    /// A version this side does not speak.
    UnsupportedVersion(u8),
    /// An address above 0x7F.
    InvalidAddress(u8),
    /// Zero, or more than [`MAX_OPERATIONS`], operations.
    OperationCount(usize),
    /// An operation kind other than write (0) or read (1).
    UnknownOperation(u8),
    /// The reads add up to more than [`MAX_READ_TOTAL`] bytes.
    ReadTooLong(usize),
    /// A response whose status byte is unknown.
    UnknownStatus(u8),
    /// An INT wait longer than [`MAX_INT_WAIT`], in ms.
    WaitTooLong(u64),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLong(len) => write!(
                f,
                "frame body of {len} bytes exceeds the {MAX_BODY}-byte limit"
            ),
            FrameError::Truncated => f.write_str("frame body ends inside a field"),
            FrameError::TrailingBytes(n) => {
                write!(f, "{n} unexpected bytes after the last operation")
            }
            FrameError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "protocol version {v} is not supported (this side speaks {VERSION})"
                )
            }
            FrameError::InvalidAddress(a) => {
                write!(f, "address {a:#04x} is not a 7-bit I2C address")
            }
            FrameError::OperationCount(n) => {
                write!(f, "{n} operations: a transaction has 1 to {MAX_OPERATIONS}")
            }
            FrameError::UnknownOperation(k) => {
                write!(f, "unknown operation kind {k}: 0 is write, 1 is read")
            }
            FrameError::ReadTooLong(n) => {
                write!(
                    f,
                    "reads of {n} bytes in one transaction exceed the {MAX_READ_TOTAL}-byte limit"
                )
            }
            FrameError::UnknownStatus(s) => write!(f, "unknown response status {s}"),
            FrameError::WaitTooLong(ms) => write!(
                f,
                "an INT wait of {ms} ms exceeds the {} ms limit: wait in slices",
                MAX_INT_WAIT.as_millis()
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Encodes a transaction's request body (without the length prefix) into `out`.
///
/// `operations` yields, per operation, `Ok(bytes)` for a write or `Err(len)` for a read.
pub fn encode_request<'a>(
    address: u8,
    operations: impl ExactSizeIterator<Item = Result<&'a [u8], usize>>,
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    out.clear();
    let count = operations.len();
    if count == 0 || count > MAX_OPERATIONS {
        return Err(FrameError::OperationCount(count));
    }
    if address > 0x7F {
        return Err(FrameError::InvalidAddress(address));
    }
    out.extend_from_slice(&[0, 0, VERSION, address, count as u8]);
    let mut read_total = 0usize;
    for operation in operations {
        match operation {
            Ok(bytes) => {
                out.push(KIND_WRITE);
                out.extend_from_slice(&length(bytes.len())?.to_le_bytes());
                out.extend_from_slice(bytes);
            }
            Err(len) => {
                read_total += len;
                out.push(KIND_READ);
                out.extend_from_slice(&length(len)?.to_le_bytes());
            }
        }
    }
    if read_total > MAX_READ_TOTAL {
        return Err(FrameError::ReadTooLong(read_total));
    }
    let body = out.len() - 2;
    if body > MAX_BODY {
        return Err(FrameError::TooLong(body));
    }
    out[..2].copy_from_slice(&(body as u16).to_le_bytes());
    Ok(())
}

fn length(len: usize) -> Result<u16, FrameError> {
    u16::try_from(len)
        .ok()
        .filter(|&len| usize::from(len) <= MAX_BODY)
        .ok_or(FrameError::TooLong(len))
}

/// Encodes an INT wait of at most `timeout` (module docs), with its length prefix, into `out`.
pub fn encode_int_wait(timeout: std::time::Duration, out: &mut Vec<u8>) -> Result<(), FrameError> {
    let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    if timeout > MAX_INT_WAIT {
        return Err(FrameError::WaitTooLong(ms));
    }
    out.clear();
    out.extend_from_slice(&[4, 0, VERSION, INT_WAIT]);
    out.extend_from_slice(&(ms as u16).to_le_bytes()); // at most 10,000: fits
    Ok(())
}

/// Decodes an INT wait's body (without the length prefix): `None` when the body is a
/// transaction's, else how long to wait at most.
pub fn decode_int_wait(body: &[u8]) -> Option<Result<std::time::Duration, FrameError>> {
    if body.get(1) != Some(&INT_WAIT) {
        return None;
    }
    Some(match body {
        [VERSION, _, low, high] => {
            let ms = u64::from(u16::from_le_bytes([*low, *high]));
            let timeout = std::time::Duration::from_millis(ms);
            if timeout > MAX_INT_WAIT {
                Err(FrameError::WaitTooLong(ms))
            } else {
                Ok(timeout)
            }
        }
        [version, ..] if *version != VERSION => Err(FrameError::UnsupportedVersion(*version)),
        [_, _, _, _, rest @ ..] => Err(FrameError::TrailingBytes(rest.len())),
        _ => Err(FrameError::Truncated),
    })
}

/// Decodes a request body (without the length prefix).
pub fn decode_request(body: &[u8]) -> Result<Request, FrameError> {
    if body.len() > MAX_BODY {
        return Err(FrameError::TooLong(body.len()));
    }
    let mut cursor = Cursor(body);
    let version = cursor.byte()?;
    if version != VERSION {
        return Err(FrameError::UnsupportedVersion(version));
    }
    let address = cursor.byte()?;
    if address > 0x7F {
        return Err(FrameError::InvalidAddress(address));
    }
    let count = usize::from(cursor.byte()?);
    if count == 0 || count > MAX_OPERATIONS {
        return Err(FrameError::OperationCount(count));
    }
    let mut operations = Vec::with_capacity(count);
    let mut read_total = 0;
    for _ in 0..count {
        let kind = cursor.byte()?;
        let len = usize::from(u16::from_le_bytes([cursor.byte()?, cursor.byte()?]));
        match kind {
            KIND_WRITE => operations.push(WireOperation::Write(cursor.take(len)?.to_vec())),
            KIND_READ => {
                read_total += len;
                if read_total > MAX_READ_TOTAL {
                    return Err(FrameError::ReadTooLong(read_total));
                }
                operations.push(WireOperation::Read(len));
            }
            other => return Err(FrameError::UnknownOperation(other)),
        }
    }
    if !cursor.0.is_empty() {
        return Err(FrameError::TrailingBytes(cursor.0.len()));
    }
    Ok(Request {
        address,
        operations,
    })
}

/// Encodes a response frame (with its length prefix) into `out`.
pub fn encode_response(status: Status, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    // Payloads are bounded by MAX_READ_TOTAL or a short message; clip rather than overflow.
    let payload = &payload[..payload.len().min(MAX_BODY - 1)];
    let body = (payload.len() + 1) as u16;
    out.extend_from_slice(&body.to_le_bytes());
    out.push(status as u8);
    out.extend_from_slice(payload);
}

/// Splits a response body into its status and payload.
pub fn decode_response(body: &[u8]) -> Result<(Status, &[u8]), FrameError> {
    let (&status, payload) = body.split_first().ok_or(FrameError::Truncated)?;
    let status = Status::from_byte(status).ok_or(FrameError::UnknownStatus(status))?;
    Ok((status, payload))
}

/// Reads the body length from a frame's 2-byte prefix, refusing oversized frames.
pub fn body_length(prefix: [u8; 2]) -> Result<usize, FrameError> {
    let len = usize::from(u16::from_le_bytes(prefix));
    if len > MAX_BODY {
        return Err(FrameError::TooLong(len));
    }
    Ok(len)
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, FrameError> {
        let (&byte, rest) = self.0.split_first().ok_or(FrameError::Truncated)?;
        self.0 = rest;
        Ok(byte)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < len {
            return Err(FrameError::Truncated);
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(address: u8, ops: &[Result<&[u8], usize>]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_request(address, ops.iter().copied(), &mut out).unwrap();
        out
    }

    #[test]
    fn write_read_request_is_encoded_byte_for_byte() {
        let frame = request(0x6F, &[Ok(&[0x03]), Err(1)]);
        assert_eq!(
            frame,
            [10, 0, VERSION, 0x6F, 2, 0, 1, 0, 0x03, 1, 1, 0],
            "length, version, address, count, write [0x03], read 1"
        );
    }

    #[test]
    fn requests_round_trip() {
        let frame = request(0x6F, &[Ok(&[0x19, 1, 2, 3, 4, 5, 6]), Err(15), Ok(&[])]);
        let body = &frame[2..];
        assert_eq!(body_length([frame[0], frame[1]]).unwrap(), body.len());
        assert_eq!(
            decode_request(body).unwrap(),
            Request {
                address: 0x6F,
                operations: vec![
                    WireOperation::Write(vec![0x19, 1, 2, 3, 4, 5, 6]),
                    WireOperation::Read(15),
                    WireOperation::Write(vec![]),
                ],
            }
        );
    }

    #[test]
    fn responses_round_trip() {
        let mut out = Vec::new();
        encode_response(Status::Ok, &[0x5D, 3, 1], &mut out);
        assert_eq!(out, [4, 0, 0, 0x5D, 3, 1]);
        assert_eq!(
            decode_response(&out[2..]).unwrap(),
            (Status::Ok, &[0x5D, 3, 1][..])
        );
        encode_response(Status::NackAddress, &[], &mut out);
        assert_eq!(
            decode_response(&out[2..]).unwrap(),
            (Status::NackAddress, &[][..])
        );
    }

    #[test]
    fn malformed_requests_are_refused_with_the_reason() {
        let cases: &[(&[u8], FrameError)] = &[
            (&[], FrameError::Truncated),
            (&[2, 0x6F, 1, 1, 1, 0], FrameError::UnsupportedVersion(2)),
            (
                &[VERSION, 0x80, 1, 1, 1, 0],
                FrameError::InvalidAddress(0x80),
            ),
            (&[VERSION, 0x6F, 0], FrameError::OperationCount(0)),
            (&[VERSION, 0x6F, 17], FrameError::OperationCount(17)),
            (
                &[VERSION, 0x6F, 1, 9, 1, 0],
                FrameError::UnknownOperation(9),
            ),
            (&[VERSION, 0x6F, 1, 0, 5, 0, 1, 2], FrameError::Truncated),
            (&[VERSION, 0x6F, 1, 1, 1], FrameError::Truncated),
            (
                &[VERSION, 0x6F, 1, 1, 1, 0, 7],
                FrameError::TrailingBytes(1),
            ),
            (
                &[VERSION, 0x6F, 1, 1, 0xFF, 0xFF],
                FrameError::ReadTooLong(0xFFFF),
            ),
            (
                &[VERSION, 0x6F, 2, 1, 0, 2, 1, 0, 2],
                FrameError::ReadTooLong(1024),
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                decode_request(body).as_ref(),
                Err(expected),
                "body {body:?}"
            );
        }
        assert_eq!(
            decode_request(&[0; MAX_BODY + 1]),
            Err(FrameError::TooLong(MAX_BODY + 1))
        );
        assert_eq!(body_length([0x01, 0x04]), Err(FrameError::TooLong(1025)));
        assert_eq!(decode_response(&[42]), Err(FrameError::UnknownStatus(42)));
    }

    #[test]
    fn every_limit_admits_exactly_its_value() {
        let mut out = Vec::new();
        // A body of exactly MAX_BODY bytes: 6 bytes of header, one write of the rest.
        let data = [7u8; MAX_BODY - 6];
        encode_request(0x6F, [Ok(&data[..])].into_iter(), &mut out).unwrap();
        assert_eq!(body_length([out[0], out[1]]), Ok(MAX_BODY));
        assert_eq!(
            decode_request(&out[2..]).unwrap().operations,
            [WireOperation::Write(data.to_vec())]
        );
        // Reads of exactly MAX_READ_TOTAL bytes, one by one or at once.
        encode_request(0x6F, [Err(MAX_READ_TOTAL)].into_iter(), &mut out).unwrap();
        assert_eq!(
            decode_request(&out[2..]).unwrap().operations,
            [WireOperation::Read(MAX_READ_TOTAL)]
        );
        let halves = [
            Err(MAX_READ_TOTAL / 2),
            Err(MAX_READ_TOTAL - MAX_READ_TOTAL / 2),
        ];
        encode_request(0x6F, halves.into_iter(), &mut out).unwrap();
        assert_eq!(decode_request(&out[2..]).unwrap().operations.len(), 2);
        // MAX_OPERATIONS operations.
        encode_request(0x6F, [Err(1); MAX_OPERATIONS].into_iter(), &mut out).unwrap();
        assert_eq!(
            decode_request(&out[2..]).unwrap().operations.len(),
            MAX_OPERATIONS
        );
    }

    #[test]
    fn every_status_round_trips_and_no_other_byte_is_one() {
        let statuses = [
            Status::Ok,
            Status::NackAddress,
            Status::NackData,
            Status::NackUnknown,
            Status::Bus,
            Status::ArbitrationLoss,
            Status::Other,
            Status::BadRequest,
        ];
        for (byte, status) in (0u8..).zip(statuses) {
            assert_eq!(Status::from_byte(byte), Some(status));
            assert_eq!(status as u8, byte);
        }
        assert_eq!(Status::from_byte(8), None);
    }

    #[test]
    fn an_oversized_response_payload_is_clipped_to_a_frame_the_decoder_takes() {
        let mut out = Vec::new();
        encode_response(Status::Ok, &[1; 2 * MAX_BODY], &mut out);
        assert_eq!(body_length([out[0], out[1]]), Ok(MAX_BODY));
        assert_eq!(out.len(), 2 + MAX_BODY);
        let (status, payload) = decode_response(&out[2..]).unwrap();
        assert_eq!((status, payload.len()), (Status::Ok, MAX_BODY - 1));
    }

    #[test]
    fn encoder_refuses_what_the_decoder_would() {
        let mut out = Vec::new();
        assert_eq!(
            encode_request(0x6F, std::iter::empty(), &mut out),
            Err(FrameError::OperationCount(0))
        );
        assert_eq!(
            encode_request(0x80, [Err(1)].into_iter(), &mut out),
            Err(FrameError::InvalidAddress(0x80))
        );
        assert_eq!(
            encode_request(0x6F, [Err(MAX_READ_TOTAL + 1)].into_iter(), &mut out),
            Err(FrameError::ReadTooLong(MAX_READ_TOTAL + 1))
        );
        let big = [0u8; MAX_BODY];
        assert_eq!(
            encode_request(0x6F, [Ok(&big[..])].into_iter(), &mut out),
            Err(FrameError::TooLong(MAX_BODY + 6))
        );
    }
}
