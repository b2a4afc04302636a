//! The `tcp://` bus end to end over loopback: the blocking client against the async server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use embedded_hal::i2c::{Error as _, ErrorKind, I2c, NoAcknowledgeSource, Operation};
use qwiic_bus::{BusSpec, TcpBus, TcpBusError, TcpTimeouts, server};
use qwiic_button::{Address, LedConfig, QwiicButton};
use qwiic_sim::{Fault, SimButton};
use test_kit::SimServer;

#[test]
fn the_driver_works_over_tcp() {
    let sim = SimButton::new();
    let server = SimServer::start(sim.clone());
    let mut button = QwiicButton::new(server.client(), Address::DEFAULT);
    assert_eq!(button.check_identity().unwrap().to_string(), "1.3");
    sim.press();
    assert!(button.status().unwrap().is_pressed);
    button.set_led(LedConfig::steady(77)).unwrap();
    assert_eq!(sim.led().brightness, 77);
    assert_eq!(button.led().unwrap(), LedConfig::steady(77));
}

#[test]
fn the_bus_string_opens_a_tcp_bus() {
    let sim = SimButton::new();
    let server = SimServer::start(sim);
    let spec: BusSpec = format!("tcp://127.0.0.1:{}", server.address.port())
        .parse()
        .unwrap();
    let (_, firmware) = qwiic_bus::connect(&spec, Address::DEFAULT).unwrap();
    assert_eq!(firmware.to_string(), "1.3");
}

#[test]
fn device_errors_travel_as_i2c_error_kinds() {
    let sim = SimButton::new();
    let server = SimServer::start(sim.clone());
    let mut bus = server.client();
    let error = bus.write_read(0x10, &[0], &mut [0]).unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
    );
    for (fault, kind) in [
        (Fault::Bus, ErrorKind::Bus),
        (
            Fault::Nack,
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown),
        ),
        (Fault::ArbitrationLoss, ErrorKind::ArbitrationLoss),
        (Fault::Other, ErrorKind::Other),
    ] {
        sim.fail_next(1, fault);
        assert_eq!(
            bus.write_read(0x6F, &[0], &mut [0]).unwrap_err().kind(),
            kind,
            "{fault}"
        );
    }
    // A write past the device's 15-byte receive buffer: the data byte is not acknowledged.
    assert_eq!(
        bus.write(0x6F, &[0x0C; 16]).unwrap_err().kind(),
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data)
    );
    // The connection survives device errors.
    let mut id = [0];
    bus.write_read(0x6F, &[0], &mut id).unwrap();
    assert_eq!(id, [0x5D]);
}

#[test]
fn a_dead_server_is_a_clear_error_and_the_client_reconnects_when_it_returns() {
    let sim = SimButton::new();
    let server = SimServer::start(sim.clone());
    let address = server.address;
    let mut bus = server.client();
    bus.write_read(0x6F, &[0], &mut [0]).unwrap();
    drop(server);

    let error = bus.write_read(0x6F, &[0], &mut [0]).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, TcpBusError::Io { .. } | TcpBusError::Connect { .. }),
        "{message}"
    );
    let error = bus.write_read(0x6F, &[0], &mut [0]).unwrap_err();
    assert!(matches!(error, TcpBusError::Connect { .. }));
    assert!(
        error
            .to_string()
            .contains(&format!("tcp://127.0.0.1:{}", address.port()))
            && error
                .to_string()
                .contains("check that the simulator server runs"),
        "{error}"
    );

    let _server = SimServer::start_with(address, sim, server::Limits::default());
    let mut id = [0];
    bus.write_read(0x6F, &[0], &mut id).unwrap();
    assert_eq!(id, [0x5D]);
}

#[test]
fn two_reads_in_one_transaction_each_get_their_own_bytes() {
    let server = SimServer::start(SimButton::new());
    let mut bus = server.client();
    let (mut id, mut minor) = ([0u8; 1], [0u8; 1]);
    bus.transaction(
        0x6F,
        &mut [
            Operation::Write(&[0x00]),
            Operation::Read(&mut id),
            Operation::Read(&mut minor),
        ],
    )
    .unwrap();
    assert_eq!((id[0], minor[0]), (0x5D, 3), "ID, then firmware minor");
}

#[test]
fn errors_say_whether_the_device_answered_and_keep_their_cause() {
    use std::error::Error as _;
    let mut bus = TcpBus::new("no-such-host.invalid", 7070, TcpTimeouts::default());
    let connect = bus.connect().unwrap_err();
    assert!(!connect.is_device_answer());
    assert!(
        connect
            .source()
            .is_some_and(|cause| cause.is::<std::io::Error>())
    );
    let nack = TcpBusError::Device(qwiic_bus::wire::Status::NackAddress);
    assert!(nack.is_device_answer());
    assert!(nack.source().is_none());
    let frame = TcpBusError::Frame(qwiic_bus::wire::FrameError::Truncated);
    assert!(!frame.is_device_answer());
    assert!(frame.source().is_some());
}

#[test]
fn an_unresolvable_host_is_a_connect_error() {
    let mut bus = TcpBus::new("no-such-host.invalid", 7070, TcpTimeouts::default());
    let error = bus.connect().unwrap_err();
    assert!(matches!(error, TcpBusError::Connect { .. }), "{error}");
}

#[test]
fn a_slow_device_times_out_at_the_io_timeout() {
    let sim = SimButton::new();
    let server = SimServer::start(sim.clone());
    sim.set_delay(Duration::from_millis(500));
    let timeouts = TcpTimeouts {
        io: Duration::from_millis(100),
        ..TcpTimeouts::default()
    };
    let mut bus = TcpBus::new("127.0.0.1", server.address.port(), timeouts);
    let started = Instant::now();
    let error = bus.write_read(0x6F, &[0], &mut [0]).unwrap_err();
    assert!(matches!(error, TcpBusError::Io { .. }), "{error}");
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "gave up after {:?}",
        started.elapsed()
    );
    // The late answer must not be taken for the next transaction's: the client reconnected.
    sim.set_delay(Duration::ZERO);
    let mut led = [0xAA; 6];
    bus.write_read(0x6F, &[0x19], &mut led).unwrap();
    assert_eq!(led, [0, 1, 0, 0, 0, 0]);
}

#[test]
fn transactions_too_big_for_the_protocol_are_refused_locally() {
    let server = SimServer::start(SimButton::new());
    let mut bus = server.client();
    let mut big = vec![0; 2000];
    let error = bus.read(0x6F, &mut big).unwrap_err();
    assert!(matches!(error, TcpBusError::Frame(_)), "{error}");
    let mut ops: Vec<Operation<'_>> = (0..17).map(|_| Operation::Write(&[0])).collect();
    assert!(matches!(
        bus.transaction(0x6F, &mut ops),
        Err(TcpBusError::Frame(_))
    ));
    bus.write_read(0x6F, &[0], &mut [0]).unwrap();
}

fn raw_exchange(server: &SimServer, frame: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(frame).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap(); // the server closes after a bad request
    answer
}

#[test]
fn malformed_frames_close_only_that_connection() {
    let sim = SimButton::new();
    let server = SimServer::start(sim);
    let mut good = server.client();
    good.write_read(0x6F, &[0], &mut [0]).unwrap();

    // Unknown operation kind 9: BadRequest (7) with the reason, then EOF.
    let answer = raw_exchange(&server, &[6, 0, 1, 0x6F, 1, 9, 1, 0]);
    assert_eq!(answer[2], 7);
    assert!(String::from_utf8_lossy(&answer[3..]).contains("unknown operation kind 9"));
    // Unsupported version.
    let answer = raw_exchange(&server, &[6, 0, 2, 0x6F, 1, 1, 1, 0]);
    assert!(String::from_utf8_lossy(&answer[3..]).contains("version 2"));
    // Oversized length prefix: closed without reading a body.
    let answer = raw_exchange(&server, &[0xFF, 0xFF]);
    assert!(answer.is_empty() || answer[2] == 7);

    let mut id = [0];
    good.write_read(0x6F, &[0], &mut id).unwrap();
    assert_eq!(id, [0x5D], "the other client carries on");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stalls_mid_frame_is_dropped() {
    let (mut client, server_side) = tokio::io::duplex(64);
    let task = tokio::spawn(server::serve_connection(
        server_side,
        SimButton::new(),
        tokio::sync::watch::channel(0).1, // no INT waits here
        Duration::from_secs(60),
    ));
    tokio::io::AsyncWriteExt::write_all(&mut client, &[6, 0, 1])
        .await
        .unwrap();
    let result = task.await.unwrap();
    assert!(
        matches!(result, Err(server::ConnectionError::Stalled(_))),
        "{result:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_idle_up_to_the_limit_stays_and_past_it_is_dropped() {
    let (client, server_side) = tokio::io::duplex(64);
    let task = tokio::spawn(server::serve_connection(
        server_side,
        SimButton::new(),
        tokio::sync::watch::channel(0).1, // no INT waits here
        Duration::from_secs(60),
    ));
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(!task.is_finished());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let result = task.await.unwrap();
    assert!(
        matches!(result, Err(server::ConnectionError::Idle(_))),
        "{result:?}"
    );
    drop(client);

    let (client, server_side) = tokio::io::duplex(64);
    let task = tokio::spawn(server::serve_connection(
        server_side,
        SimButton::new(),
        tokio::sync::watch::channel(0).1, // no INT waits here
        Duration::from_secs(60),
    ));
    drop(client);
    assert!(
        task.await.unwrap().is_ok(),
        "a clean disconnect between frames is fine"
    );
}

#[test]
fn clients_over_the_cap_are_closed_and_the_others_carry_on() {
    let server = SimServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        SimButton::new(),
        server::Limits {
            clients: 2,
            ..server::Limits::default()
        },
    );
    let (mut first, mut second) = (server.client(), server.client());
    let mut id = [0];
    first.write_read(0x6F, &[0], &mut id).unwrap();
    second.write_read(0x6F, &[0], &mut id).unwrap();
    let mut third = TcpStream::connect(server.address).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buffer = [0; 8];
    assert_eq!(third.read(&mut buffer).unwrap_or(0), 0, "closed at once");
    first.write_read(0x6F, &[0], &mut id).unwrap();
    assert_eq!(id, [0x5D]);
}

#[test]
fn a_client_opens_a_new_connection_rather_than_reuse_one_the_server_may_have_dropped() {
    let server = SimServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        SimButton::new(),
        server::Limits {
            idle: Duration::from_millis(200),
            ..server::Limits::default()
        },
    );
    let mut bus = TcpBus::new(
        "127.0.0.1",
        server.address.port(),
        TcpTimeouts {
            reuse: Duration::from_millis(100),
            ..TcpTimeouts::default()
        },
    );
    let mut id = [0];
    bus.write_read(0x6F, &[0], &mut id).unwrap();
    // Idle past the server's limit: the server has dropped the connection by now.
    std::thread::sleep(Duration::from_millis(400));
    bus.write_read(0x6F, &[0], &mut id).unwrap();
    assert_eq!(id, [0x5D]);
}

#[test]
fn concurrent_clients_never_see_a_torn_transaction() {
    let sim = SimButton::new();
    let server = SimServer::start(sim);
    let port = server.address.port();
    let writers: Vec<_> = (1..=3u8)
        .map(|n| {
            std::thread::spawn(move || {
                let mut bus = TcpBus::new("127.0.0.1", port, TcpTimeouts::default());
                for _ in 0..500 {
                    bus.write(0x6F, &[0x19, n, n, n, n, n, n]).unwrap();
                }
            })
        })
        .collect();
    let mut reader = TcpBus::new("127.0.0.1", port, TcpTimeouts::default());
    for _ in 0..500 {
        let mut led = [0; 6];
        reader.write_read(0x6F, &[0x19], &mut led).unwrap();
        assert!(
            led.iter().all(|&b| b == led[0]) || led == [0, 1, 0, 0, 0, 0],
            "torn {led:?}"
        );
    }
    for writer in writers {
        writer.join().unwrap();
    }
}

#[tokio::test]
async fn one_address_holds_at_most_its_share_of_the_simulator_s_clients() {
    use tokio::io::AsyncReadExt as _;
    let server = SimServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        SimButton::new(),
        server::Limits {
            per_peer: 3,
            ..server::Limits::default()
        },
    );
    let connect_from = |source: &'static str| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(server.address).await.unwrap()
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.2").await);
    }
    let mut fourth = connect_from("127.0.0.2").await;
    let mut buffer = [0; 8];
    let read = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut buffer))
        .await
        .expect("the fourth connection stayed open");
    assert_eq!(read.unwrap_or(0), 0, "closed at once");
    // The services, from their own addresses, still get in: the ID, read over the wire.
    let mut other = connect_from("127.0.0.3").await;
    let mut request = Vec::new();
    let operations = [Ok(&[0u8][..]), Err(1)];
    qwiic_bus::wire::encode_request(0x6F, operations.into_iter(), &mut request).unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut other, &request)
        .await
        .unwrap();
    let mut answer = [0; 4];
    tokio::time::timeout(Duration::from_secs(5), other.read_exact(&mut answer))
        .await
        .expect("no answer")
        .unwrap();
    assert_eq!(answer, [2, 0, 0, 0x5D], "length 2, status ok, the ID");
    drop(held);
}

/// A simulated button past its power-up debounce lockout, served on loopback.
fn served_button() -> (SimButton, SimServer) {
    let clock = qwiic_sim::ManualClock::new();
    let sim = SimButton::with_clock(clock.clone());
    clock.advance(Duration::from_secs(1));
    let server = SimServer::start(sim.clone());
    (sim, server)
}

#[test]
fn an_int_wait_answers_when_the_line_changes_and_when_the_time_is_up() {
    let (sim, server) = served_button();
    let mut line = server.client();
    assert!(!line.wait_int_edge(Duration::ZERO).unwrap(), "no edge yet");
    let waiting = std::thread::spawn(move || {
        let started = Instant::now();
        (
            line.wait_int_edge(Duration::from_secs(10)).unwrap(),
            started.elapsed(),
            line,
        )
    });
    // Counted from the first wait: whether the press lands before the server holds this
    // wait or while it does, the wait answers with it.
    sim.press();
    let (changed, took, mut line) = waiting.join().unwrap();
    assert!(
        changed && took < Duration::from_secs(5),
        "woken by the edge after {took:?}"
    );
    let started = Instant::now();
    assert!(
        !line.wait_int_edge(Duration::from_millis(100)).unwrap(),
        "no new edge"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "waited the whole time"
    );
}

#[test]
fn an_edge_between_two_waits_is_not_missed() {
    let (sim, server) = served_button();
    let mut line = server.client();
    assert!(
        !line.wait_int_edge(Duration::ZERO).unwrap(),
        "the count starts here"
    );
    sim.press(); // while nobody waits
    let started = Instant::now();
    assert!(line.wait_int_edge(Duration::from_secs(5)).unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
}

#[test]
fn int_waits_longer_than_the_limit_are_refused_before_they_are_sent() {
    let (_, server) = served_button();
    let mut line = server.client();
    let error = line.wait_int_edge(Duration::from_secs(11)).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("exceeds the 10000 ms limit: wait in slices"),
        "{error}"
    );
}
