//! The service over a real socket: `run` with its shutdown, and the binary under SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use led_service::device::LedDevice;
use led_service::metrics::Metrics;
use led_service::{AppState, run};
use qwiic_bus::{Bus, BusSpec};
use qwiic_button::{Address, QwiicButton};
use qwiic_sim::SimButton;
use serde_json::Value;
use service_kit::testing;
use tokio::sync::oneshot;

struct Running {
    url: String,
    sim: SimButton,
    stop: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Running {
    let sim = SimButton::new();
    let metrics = Metrics::default();
    let button = QwiicButton::new(Bus::Sim(sim.clone()), Address::DEFAULT);
    let led = LedDevice::spawn(button, BusSpec::Sim, &metrics, Duration::from_secs(2)).unwrap();
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    let state = AppState {
        led,
        metrics,
        token: None::<Arc<str>>,
        default_brightness: 255,
        closing: closing_rx,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(run(listener, state, closing, async {
        let _ = stopped.await;
    }));
    Running {
        url,
        sim,
        stop,
        server,
    }
}

#[tokio::test]
async fn a_real_socket_records_who_changed_the_led() {
    let service = start().await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/True", service.url))
        .header("user-agent", "python-requests/2.31")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["changed_by"], "127.0.0.1 (python-requests/2.31)");
    assert_eq!(service.sim.led().brightness, 255);
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_switches_the_led_off_and_returns_within_a_second() {
    let service = start().await;
    let client = reqwest::Client::new();
    client
        .post(format!("{}/true", service.url))
        .send()
        .await
        .unwrap();
    assert_eq!(service.sim.led().brightness, 255);

    // A live event stream must not hold the shutdown up.
    let mut events = client
        .get(format!("{}/events", service.url))
        .send()
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), events.chunk())
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first.unwrap()).contains("event: led"));

    // A request in flight when the signal comes still gets its answer.
    service.sim.set_delay(Duration::from_millis(200));
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = service.url.clone();
        async move {
            client
                .get(format!("{url}/led"))
                .send()
                .await
                .map(|r| r.status())
        }
    });
    let until = Instant::now() + Duration::from_secs(5);
    while service.sim.delayed_transactions() == 0 {
        assert!(Instant::now() < until, "the request never reached the bus");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let signalled = Instant::now();
    service.stop.send(()).unwrap();
    service.server.await.unwrap().unwrap();
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    assert_eq!(in_flight.await.unwrap().unwrap(), 200);
    assert_eq!(
        service.sim.led().brightness,
        0,
        "the LED is off after shutdown"
    );
    assert!(
        reqwest::get(format!("{}/led", service.url)).await.is_err(),
        "no longer listening"
    );
}

#[test]
fn the_binary_exits_0_within_a_second_of_sigterm() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let mut child = testing::binary_command(env!("CARGO_BIN_EXE_led-service"))
        .env("BUS", "sim")
        .env("LISTEN_ADDR", address.to_string())
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let binary = env!("CARGO_BIN_EXE_led-service");
    testing::wait_until_healthy(binary, &address.to_string(), Duration::from_secs(10)).unwrap();
    let (status, took, log) = testing::terminate(&mut child, Duration::from_secs(5)).unwrap();
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(took < Duration::from_secs(1), "exit took {took:?}");
    assert!(
        log.contains("SIGTERM received") && log.contains("LED switched off"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn healthcheck_fails_when_nothing_listens() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let output = testing::binary_command(env!("CARGO_BIN_EXE_led-service"))
        .arg("healthcheck")
        .env("LISTEN_ADDR", address.to_string())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unhealthy: cannot connect"));
}

#[test]
fn a_missing_bus_fails_at_start_with_what_to_do() {
    let output = testing::binary_command(env!("CARGO_BIN_EXE_led-service"))
        .env("BUS", "/dev/i2c-99")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("/dev/i2c-99 does not exist") && log.contains("init_os.sh"),
        "{log}"
    );
}

#[test]
fn bad_flags_are_refused_with_the_accepted_values() {
    for (env, value, says) in [
        ("BUS", "udp://x:1", "tcp://HOST:PORT"),
        ("I2C_ADDRESS", "0x80", "0x08 to 0x77"),
        ("LED_BRIGHTNESS", "0", "1.."),
        ("LOG_FORMAT", "xml", "text"),
    ] {
        let output = testing::binary_command(env!("CARGO_BIN_EXE_led-service"))
            .env(env, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{env}={value}");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains(says), "{env}={value}: {message}");
    }
}
