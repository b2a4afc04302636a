//! Property tests for the `tcp://` frame decoder and the server: any bytes are answered or
//! refused, never a panic; every transaction the encoder accepts decodes to itself.

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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever a client sends, the server answers frames or closes the connection.
    #[test]
    fn the_server_survives_any_byte_stream(stream in prop::collection::vec(any::<u8>(), 0..600)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        runtime.block_on(async {
            let (mut client, server_side) = tokio::io::duplex(4096);
            let connection = tokio::spawn(server::serve_connection(
                server_side,
                SimButton::new(),
                std::time::Duration::from_secs(60),
            ));
            tokio::io::AsyncWriteExt::write_all(&mut client, &stream).await.ok();
            drop(client);
            // Ok (clean end), or an error: either way the task ends, and without panicking.
            let result = connection.await;
            assert!(result.is_ok(), "the connection task panicked");
        });
    }
}
