//! The simulator end to end: TCP clients, the control API and the event stream, through `run`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use embedded_hal::i2c::I2c;
use qwiic_bus::{TcpBus, TcpTimeouts};
use qwiic_button::{Address, LedConfig, QwiicButton};
use qwiic_sim::SimButton;
use serde_json::{Value, json};
use test_kit::Background;

struct Simulator {
    tcp: SocketAddr,
    http: String,
    server: Background<std::io::Result<()>>,
}

impl Simulator {
    async fn start() -> Simulator {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (tcp_address, http_address) = (tcp.local_addr().unwrap(), http.local_addr().unwrap());
        let server = Background::spawn(|shutdown| {
            let state = simulator::AppState::new(SimButton::new(), shutdown.clone());
            simulator::run(tcp, http, state, shutdown)
        });
        Simulator {
            tcp: tcp_address,
            http: format!("http://{http_address}"),
            server,
        }
    }

    fn bus(&self) -> TcpBus {
        TcpBus::new("127.0.0.1", self.tcp.port(), TcpTimeouts::default())
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let client = reqwest::Client::new();
        let mut request = client.request(method, format!("{}{path}", self.http));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::POST, path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }
}

/// Runs blocking bus work off the async test's thread.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pressing_through_the_api_shows_in_the_status_register_over_tcp() {
    let sim = Simulator::start().await;
    let mut button = QwiicButton::new(sim.bus(), Address::DEFAULT);
    let (button_back, firmware) = blocking(move || {
        let firmware = button.check_identity().unwrap();
        (button, firmware)
    })
    .await;
    assert_eq!(firmware.to_string(), "1.3");
    let mut button = button_back;

    let state = sim.post("/api/press").await;
    assert_eq!(state["held"], true);
    let (status, button) = blocking(move || (button.status().unwrap(), button)).await;
    assert!(status.is_pressed);
    let mut button = button;

    sim.post("/api/release").await;
    let status = blocking(move || button.status().unwrap()).await;
    // (Whether the click counts depends on the 10 ms debounce; the pin level always shows.)
    assert!(!status.is_pressed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_led_write_over_tcp_shows_in_the_api_and_the_event_stream() {
    let sim = Simulator::start().await;
    let mut stream = reqwest::get(format!("{}/api/events", sim.http))
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");

    let mut button = QwiicButton::new(sim.bus(), Address::DEFAULT);
    blocking(move || {
        button
            .set_led(LedConfig::pulse(180, 1000, 500, 3).unwrap())
            .unwrap()
    })
    .await;

    let (status, led) = sim.call(reqwest::Method::GET, "/api/led", None).await;
    assert_eq!(status, 200, "{led}");
    assert_eq!(
        led["led"],
        json!({"brightness": 180, "granularity": 3, "cycle_ms": 1000, "off_ms": 500})
    );

    let mut seen = String::new();
    let until = Instant::now() + Duration::from_secs(5);
    while !seen.contains("\"kind\":\"led\"") {
        let chunk = tokio::time::timeout_at(until.into(), stream.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: device"), "{seen}");
    assert!(seen.contains("\"brightness\":180"), "{seen}");
    assert!(
        seen.contains("\"at_ms\":"),
        "stamped with the simulator clock: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_int_pin_shows_in_the_state_and_its_changes_in_the_events() {
    let sim = Simulator::start().await;
    // A press within the debounce lockout that starts at power-up is dropped, as on the device.
    let until = Instant::now() + Duration::from_secs(5);
    while sim.post("/api/press").await["int_low"] != true {
        assert!(Instant::now() < until, "no press pulled INT low");
        sim.post("/api/release").await;
    }
    let mut button = QwiicButton::new(sim.bus(), Address::DEFAULT);
    blocking(move || button.clear_status().unwrap()).await;
    let (_, state) = sim.call(reqwest::Method::GET, "/api/state", None).await;
    assert_eq!(
        state["int_low"], false,
        "a status clear releases it: {state}"
    );
    let (_, events) = sim
        .call(reqwest::Method::GET, "/api/events/recent", None)
        .await;
    let int: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["kind"] == "int")
        .map(|event| &event["low"])
        .collect();
    assert_eq!(int, [&json!(true), &json!(false)], "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_is_a_press_and_a_release_n_ms_apart_on_the_simulator_clock() {
    let sim = Simulator::start().await;
    let (status, click) = sim
        .call(reqwest::Method::POST, "/api/click", Some(json!({"ms": 40})))
        .await;
    assert_eq!(status, 200, "{click}");
    let until = Instant::now() + Duration::from_secs(5);
    let events = loop {
        let (status, state) = sim.call(reqwest::Method::GET, "/api/state", None).await;
        assert_eq!(status, 200, "{state}");
        let (status, events) = sim
            .call(reqwest::Method::GET, "/api/events/recent", None)
            .await;
        assert_eq!(status, 200, "{events}");
        // The switch's edges (the INT line's changes come too, unless the power-up debounce
        // lockout dropped the press).
        let edges: Vec<Value> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| matches!(event["kind"].as_str(), Some("pressed" | "released")))
            .cloned()
            .collect();
        if state["held"] == false && edges.len() >= 2 {
            break edges;
        }
        assert!(Instant::now() < until, "the click never ended: {events}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        (events[0]["kind"].as_str(), events[1]["kind"].as_str()),
        (Some("pressed"), Some("released"))
    );
    let held = events[1]["at_ms"].as_u64().unwrap() - events[0]["at_ms"].as_u64().unwrap();
    assert_eq!(held, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unplug_and_faults_reach_tcp_clients() {
    let sim = Simulator::start().await;
    let mut bus = sim.bus();
    let id = |bus: &mut TcpBus| bus.write_read(0x6F, &[0], &mut [0]);

    sim.post("/api/unplug").await;
    let (result, back) = blocking(move || (id(&mut bus).is_err(), bus)).await;
    assert!(result, "unplugged: NACK");
    let mut bus = back;
    sim.post("/api/replug").await;
    let (ok, back) = blocking(move || (id(&mut bus).is_ok(), bus)).await;
    assert!(ok);
    let mut bus = back;

    let (status, _) = sim
        .call(
            reqwest::Method::PUT,
            "/api/faults",
            Some(json!({"error_rate": 1.0})),
        )
        .await;
    assert_eq!(status, 200);
    let (failed, back) = blocking(move || ((0..10).all(|_| id(&mut bus).is_err()), bus)).await;
    assert!(failed);
    let mut bus = back;
    let (status, _) = sim
        .call(
            reqwest::Method::PUT,
            "/api/faults",
            Some(json!({"error_rate": 0.0, "fail_next": 2})),
        )
        .await;
    assert_eq!(status, 200);
    let results = blocking(move || (0..3).map(|_| id(&mut bus).is_ok()).collect::<Vec<_>>()).await;
    assert_eq!(results, [false, false, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_eeprom_and_closed_jumpers_reach_tcp_clients_at_the_next_boot() {
    let sim = Simulator::start().await;
    let state = sim.post("/api/eeprom/erase").await;
    assert_eq!(state["level"], 255, "a fresh part lights its LED: {state}");
    assert_eq!(state["eeprom"]["hardware_address"], false, "{state}");
    let bus = sim.bus();
    let (led, bus) = blocking(move || {
        let mut button = QwiicButton::new(bus, Address::DEFAULT);
        (button.led(), button.destroy())
    })
    .await;
    assert_eq!(led.unwrap().brightness, 255);

    let (status, _) = sim
        .call(
            reqwest::Method::PUT,
            "/api/jumpers",
            Some(json!({"closed": 1})),
        )
        .await;
    assert_eq!(status, 200);
    sim.post("/api/unplug").await;
    let state = sim.post("/api/replug").await;
    assert_eq!(state["address"], 0x6E, "{state}");
    assert_eq!(state["eeprom"]["hardware_address"], true, "{state}");
    let answered = blocking(move || {
        let mut bus = bus;
        bus.write_read(0x6E, &[0], &mut [0]).is_ok()
    })
    .await;
    assert!(answered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_kind_and_corrupted_reads_reach_tcp_clients() {
    use embedded_hal::i2c::{Error as _, ErrorKind};
    let sim = Simulator::start().await;
    let mut bus = sim.bus();
    for (name, kind) in [
        ("bus", ErrorKind::Bus),
        ("arbitration", ErrorKind::ArbitrationLoss),
        ("other", ErrorKind::Other),
    ] {
        let (status, _) = sim
            .call(
                reqwest::Method::PUT,
                "/api/faults",
                Some(json!({"error": name, "fail_next": 1})),
            )
            .await;
        assert_eq!(status, 200);
        let (error, back) = blocking(move || {
            let error = bus.write_read(0x6F, &[0], &mut [0]).unwrap_err().kind();
            (error, bus)
        })
        .await;
        bus = back;
        assert_eq!(error, kind, "{name}");
    }
    let (status, _) = sim
        .call(
            reqwest::Method::PUT,
            "/api/faults",
            Some(json!({"corrupt_rate": 1.0})),
        )
        .await;
    assert_eq!(status, 200);
    let (id, mut bus) = blocking(move || {
        let mut id = [0; 3];
        bus.write_read(0x6F, &[0], &mut id).unwrap();
        (id, bus)
    })
    .await;
    // Shifted by one bit from one of the bytes on, and no error.
    assert!(
        [[0x2E, 0x81, 0x80], [0x5D, 0x81, 0x80], [0x5D, 0x03, 0x80]].contains(&id),
        "{id:02x?}"
    );
    let (status, state) = sim.call(reqwest::Method::GET, "/api/state", None).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["stats"]["corrupted_reads"], 1, "{state}");
    let (status, faults) = sim
        .call(
            reqwest::Method::PUT,
            "/api/faults",
            Some(json!({"corrupt_rate": 0.0})),
        )
        .await;
    assert_eq!(status, 200, "{faults}");
    let id = blocking(move || {
        let mut id = [0; 1];
        bus.write_read(0x6F, &[0], &mut id).unwrap();
        id
    })
    .await;
    assert_eq!(id, [0x5D]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_control_requests_get_clear_errors() {
    let sim = Simulator::start().await;
    for (method, path, body, says) in [
        (
            reqwest::Method::PUT,
            "/api/faults",
            json!({"error_rate": 1.5}),
            "0.0 (never) to 1.0",
        ),
        (
            reqwest::Method::PUT,
            "/api/faults",
            json!({"corrupt_rate": -0.1}),
            "corrupt_rate",
        ),
        (
            reqwest::Method::PUT,
            "/api/faults",
            json!({"bounce_ms": 51}),
            "bounce_ms must be 0 to 50",
        ),
        (
            reqwest::Method::PUT,
            "/api/faults",
            json!({"error": "gremlins"}),
            "unknown variant `gremlins`",
        ),
        (
            reqwest::Method::PUT,
            "/api/faults",
            json!({"delay_ms": 999999}),
            "delay_ms must be 0 to 10000",
        ),
        (
            reqwest::Method::PUT,
            "/api/faults",
            json!({"nack": 1}),
            "unknown field",
        ),
        (
            reqwest::Method::PUT,
            "/api/jumpers",
            json!({"closed": 16}),
            "closed must be 0 to 15",
        ),
        (
            reqwest::Method::POST,
            "/api/click",
            json!({"ms": 0}),
            "ms must be 1 to 60000",
        ),
        (
            reqwest::Method::POST,
            "/api/click",
            json!({}),
            "missing field `ms`",
        ),
    ] {
        let (status, answer) = sim.call(method, path, Some(body.clone())).await;
        assert_eq!(status, 422, "{path} {body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(says),
            "{path} {body}: {answer}"
        );
    }
    let (status, answer) = sim.call(reqwest::Method::GET, "/nope", None).await;
    assert_eq!(status, 404);
    assert!(answer["error"].as_str().unwrap().contains("/api"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tcp_clients_never_see_a_torn_transaction() {
    let sim = Simulator::start().await;
    let writers: Vec<_> = (1..=3u8)
        .map(|n| {
            let mut bus = sim.bus();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    bus.write(0x6F, &[0x19, n, n, n, n, n, n]).unwrap();
                }
            })
        })
        .collect();
    let mut reader = sim.bus();
    let torn = blocking(move || {
        (0..1000)
            .map(|_| {
                let mut led = [0; 6];
                reader.write_read(0x6F, &[0x19], &mut led).unwrap();
                led
            })
            .filter(|led| !(led.iter().all(|&b| b == led[0]) || *led == [0, 1, 0, 0, 0, 0]))
            .count()
    })
    .await;
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(torn, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_streams_and_clients_at_once() {
    let sim = Simulator::start().await;
    let _stream = reqwest::get(format!("{}/api/events", sim.http))
        .await
        .unwrap();
    let mut bus = sim.bus();
    let bus = blocking(move || {
        bus.write_read(0x6F, &[0], &mut [0]).unwrap();
        bus
    })
    .await;
    let started = Instant::now();
    sim.server.stop().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
    let mut bus = bus;
    assert!(blocking(move || bus.write_read(0x6F, &[0], &mut [0]).is_err()).await);
}

#[tokio::test]
async fn web_pages_of_other_sites_and_rebound_names_cannot_drive_the_simulator() {
    let simulator = Simulator::start().await;
    let client = reqwest::Client::new();
    let press = client.post(format!("{}/api/press", simulator.http));
    let response = press
        .try_clone()
        .unwrap()
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = press
        .header("host", "rebind.attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 421);
    let (_, state) = simulator
        .call(reqwest::Method::GET, "/api/state", None)
        .await;
    assert_eq!(state["held"], false, "{state}");
    let page = reqwest::get(format!("{}/", simulator.http)).await.unwrap();
    assert_eq!(
        page.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );
    // The page's own requests and curl's still work.
    simulator.post("/api/press").await;
}
