//! Property tests for the `tcp://` frame decoder and the server: any bytes are answered with
//! well-formed frames or refused and closed, never a panic; every transaction the encoder
//! accepts decodes to itself.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use proptest::prelude::*;
use qwiic_bus::server;
use qwiic_bus::wire::{self, WireOperation};
use qwiic_sim::SimButton;

fn operation() -> impl Strategy<Value = WireOperation> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40).prop_map(WireOperation::Write),
        (0usize..40).prop_map(WireOperation::Read),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_any_bytes_never_panics(body in prop::collection::vec(any::<u8>(), 0..1200)) {
        let _ = wire::decode_request(&body);
        let _ = wire::decode_response(&body);
        if body.len() >= 2 {
            let _ = wire::body_length([body[0], body[1]]);
        }
    }

    #[test]
    fn what_the_encoder_accepts_decodes_to_itself(
        address in 0u8..0x80,
        operations in prop::collection::vec(operation(), 1..=16),
    ) {
        let mut frame = Vec::new();
        let encoded = operations.iter().map(|op| match op {
            WireOperation::Write(bytes) => Ok(&bytes[..]),
            WireOperation::Read(len) => Err(*len),
        });
        wire::encode_request(address, encoded, &mut frame).unwrap();
        prop_assert_eq!(wire::body_length([frame[0], frame[1]]).unwrap(), frame.len() - 2);
        let request = wire::decode_request(&frame[2..]).unwrap();
        prop_assert_eq!(request.address, address);
        prop_assert_eq!(request.operations, operations);
    }
}

/// A piece of what a client sends: a well-formed request, a frame with a random body, or
/// anything at all.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (
            prop_oneof![Just(0x6F_u8), 0u8..0x80],
            prop::collection::vec(operation(), 1..=4)
        )
            .prop_map(|(address, operations)| {
                let mut frame = Vec::new();
                let encoded = operations.iter().map(|op| match op {
                    WireOperation::Write(bytes) => Ok(&bytes[..]),
                    WireOperation::Read(len) => Err(*len),
                });
                wire::encode_request(address, encoded, &mut frame).unwrap();
                frame
            }),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|body| {
            let mut frame = (body.len() as u16).to_le_bytes().to_vec();
            frame.extend(body);
            frame
        }),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

/// What the server owes a client for what it sent, worked out from the README's description
/// of the protocol: one answer per complete frame, in order, until a malformed request (answered
/// "bad request", then the connection closes), an oversized length (closed without an answer)
/// or the end of what was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owed {
    /// A transaction's outcome; after status 0 (ok), this many read bytes.
    Outcome { read_bytes: usize },
    /// Status 7 and a message; nothing follows.
    BadRequest,
}

/// The answers owed for `sent`, and whether the client ended cleanly between frames.
fn owed_answers(sent: &[u8]) -> (Vec<Owed>, bool) {
    let mut owed = Vec::new();
    let mut rest = sent;
    loop {
        if rest.is_empty() {
            return (owed, true);
        }
        let Some((prefix, after)) = rest.split_first_chunk::<2>() else {
            return (owed, false);
        };
        let len = usize::from(u16::from_le_bytes(*prefix));
        if len > 1024 || after.len() < len {
            return (owed, false);
        }
        let (body, after) = after.split_at(len);
        match read_bytes_of_request(body) {
            Some(read_bytes) => owed.push(Owed::Outcome { read_bytes }),
            None => {
                owed.push(Owed::BadRequest);
                return (owed, false);
            }
        }
        rest = after;
    }
}

/// The read bytes a well-formed request body asks for, or `None` when it is malformed:
/// `version (1) | address (<= 0x7F) | op count (1-16) | per op: kind (0 write, 1 read),
/// u16 LE length, write bytes`, reads adding up to at most 1023 bytes, nothing after.
fn read_bytes_of_request(body: &[u8]) -> Option<usize> {
    let (&[version, address, count], mut rest) = body.split_first_chunk::<3>()?;
    if version != 1 || address > 0x7F || !(1..=16).contains(&count) {
        return None;
    }
    let mut reads = 0;
    for _ in 0..count {
        let (&[kind, low, high], after) = rest.split_first_chunk::<3>()?;
        let len = usize::from(u16::from_le_bytes([low, high]));
        rest = match kind {
            0 => after.get(len..)?,
            1 => {
                reads += len;
                after
            }
            _ => return None,
        };
    }
    (rest.is_empty() && reads <= 1023).then_some(reads)
}

/// Splits what the server wrote into response frames, checking each is well formed: a 2-byte
/// little-endian length, a body of 1 to 1024 bytes, a documented status byte.
fn response_frames(received: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut rest = received;
    while !rest.is_empty() {
        let (prefix, after) = rest
            .split_first_chunk::<2>()
            .unwrap_or_else(|| panic!("a lone byte after {} frames: {received:?}", frames.len()));
        let len = usize::from(u16::from_le_bytes(*prefix));
        assert!(
            (1..=1024).contains(&len),
            "a response body of {len} bytes: {received:?}"
        );
        assert!(
            after.len() >= len,
            "a response frame cut short: {received:?}"
        );
        let (body, after) = after.split_at(len);
        assert!(body[0] <= 7, "unknown status {}: {received:?}", body[0]);
        frames.push((body[0], body[1..].to_vec()));
        rest = after;
    }
    frames
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever a client sends, the server answers each frame in order with a well-formed
    /// response, or says "bad request" and closes; then the connection ends, never garbage.
    #[test]
    fn the_server_answers_every_frame_with_a_well_formed_response_or_closes(
        sent in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..600),
            prop::collection::vec(piece(), 0..8).prop_map(|pieces| pieces.concat()),
        ],
    ) {
        // Paused time: the runtime jumps to the next timer whenever it has nothing to do, so
        // the bound below is virtual time and a stuck server fails the test at once.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let (received, result) = runtime.block_on(async {
            let (client, server_side) = tokio::io::duplex(4096);
            let connection = tokio::spawn(server::serve_connection(
                server_side,
                SimButton::new(),
                tokio::sync::watch::channel(0).1, // no INT waits here
                std::time::Duration::from_secs(60),
            ));
            let (mut from_server, mut to_server) = tokio::io::split(client);
            let sending = async {
                // The server may close first (after a bad request): the rest is not read.
                if tokio::io::AsyncWriteExt::write_all(&mut to_server, &sent).await.is_ok() {
                    tokio::io::AsyncWriteExt::shutdown(&mut to_server).await.ok();
                }
            };
            let mut received = Vec::new();
            let receiving = tokio::io::AsyncReadExt::read_to_end(&mut from_server, &mut received);
            let ((), read) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                tokio::join!(sending, receiving)
            })
            .await
            .expect("the server neither answered nor closed within 10 s");
            read.unwrap();
            let result = connection.await.expect("the connection task panicked");
            (received, result)
        });
        let frames = response_frames(&received);
        let (owed, clean_end) = owed_answers(&sent);
        prop_assert_eq!(frames.len(), owed.len(), "answers {:?} for {:?}", frames, sent);
        for ((status, payload), owed) in frames.iter().zip(&owed) {
            match owed {
                Owed::Outcome { read_bytes } => match status {
                    0 => prop_assert_eq!(payload.len(), *read_bytes, "read data of an ok answer"),
                    1..=6 => prop_assert!(payload.is_empty(), "a failed transaction carries no data"),
                    _ => prop_assert!(false, "a well-formed request answered {}", status),
                },
                Owed::BadRequest => {
                    prop_assert_eq!(*status, 7, "a malformed request is a bad request");
                    let message = std::str::from_utf8(payload);
                    prop_assert!(message.is_ok_and(|m| !m.is_empty()), "{:?}", payload);
                }
            }
        }
        prop_assert_eq!(result.is_ok(), clean_end, "{:?}", result);
    }
}

#[test]
fn an_int_wait_round_trips_and_bad_ones_are_named() {
    use std::time::Duration;
    let mut frame = Vec::new();
    wire::encode_int_wait(Duration::from_millis(1500), &mut frame).unwrap();
    assert_eq!(frame, [4, 0, wire::VERSION, 0xFF, 0xDC, 0x05]);
    assert_eq!(
        wire::decode_int_wait(&frame[2..]),
        Some(Ok(Duration::from_millis(1500)))
    );
    // A transaction's body is not a wait.
    assert_eq!(
        wire::decode_int_wait(&[wire::VERSION, 0x6F, 1, 1, 1, 0]),
        None
    );
    for (body, error) in [
        (
            vec![wire::VERSION, 0xFF, 0x11, 0x27],
            "an INT wait of 10001 ms exceeds the 10000 ms limit: wait in slices",
        ),
        (
            vec![wire::VERSION, 0xFF, 0x10],
            "frame body ends inside a field",
        ),
        (
            vec![wire::VERSION, 0xFF, 0x10, 0x00, 0x00],
            "1 unexpected bytes after the last operation",
        ),
        (
            vec![9, 0xFF, 0x10, 0x00],
            "protocol version 9 is not supported (this side speaks 1)",
        ),
    ] {
        let decoded = wire::decode_int_wait(&body).unwrap().unwrap_err();
        assert_eq!(decoded.to_string(), error, "{body:?}");
    }
}
