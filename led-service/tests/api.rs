//! Router tests with `oneshot` against the in-process simulated button.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use clap::Parser as _;
use http_body_util::BodyExt;
use led_service::config::Cli;
use led_service::metrics::Metrics;
use led_service::{AppState, app};
use qwiic_bus::Bus;
use qwiic_sim::{Fault, SimButton, SimConfig, SystemClock};
use serde_json::{Value, json};
use service_kit::CancellationToken;
use tower::ServiceExt;

struct Fixture {
    app: Router,
    sim: SimButton,
    metrics: Metrics,
}

/// The router on a fresh simulated button, configured by flags as the binary would be.
fn fixture_with(flags: &[&str]) -> Fixture {
    let sim = SimButton::new();
    let args = ["led-service", "--bus=sim", "--brightness=200"];
    let Cli { config, .. } = Cli::parse_from(args.iter().chain(flags));
    let state = AppState::start(
        Bus::Sim(sim.clone()),
        &config.resolve().unwrap(),
        CancellationToken::new(),
    )
    .unwrap();
    Fixture {
        metrics: state.metrics.clone(),
        app: app(state),
        sim,
    }
}

fn fixture() -> Fixture {
    fixture_with(&[])
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, body)
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn post(path: &str) -> Request<Body> {
    Request::post(path).body(Body::empty()).unwrap()
}

fn put_json(body: &str) -> Request<Body> {
    Request::put("/led")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn every_spelling_the_original_accepted_works_in_any_case() {
    let f = fixture();
    let on = ["true", "1", "yes", "on", "t", "y"];
    let off = ["false", "0", "no", "off", "f", "n"];
    for (words, lit) in [(on, true), (off, false)] {
        for word in words {
            for spelling in [
                word.to_owned(),
                word.to_uppercase(),
                format!("{}{}", &word[..1].to_uppercase(), &word[1..]),
            ] {
                let (status, body) = send(&f.app, post(&format!("/{spelling}"))).await;
                assert_eq!(status, StatusCode::OK, "/{spelling}: {body}");
                assert_eq!(body["on"], lit, "/{spelling}");
                assert_eq!(
                    f.sim.led().brightness,
                    if lit { 200 } else { 0 },
                    "/{spelling}"
                );
            }
        }
    }
}

#[tokio::test]
async fn anything_else_is_a_422_listing_the_accepted_values_and_changes_nothing() {
    let f = fixture();
    send(&f.app, post("/True")).await;
    for bad in [
        "maybe",
        "2",
        "truee",
        "%20true",
        "tr%C3%BCe",
        "null",
        "-1",
        "%FF",
    ] {
        let (status, body) = send(&f.app, post(&format!("/{bad}"))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "/{bad}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("is not a state"),
            "{body}"
        );
        assert_eq!(body["accepted"].as_array().unwrap().len(), 12);
        assert_eq!(
            f.sim.led().brightness,
            200,
            "the LED keeps its state after /{bad}"
        );
    }
}

#[tokio::test]
async fn re_sending_the_same_state_writes_nothing_to_the_device() {
    let f = fixture();
    for path in ["/True", "/true", "/1", "/yes", "/True"] {
        assert_eq!(send(&f.app, post(path)).await.0, StatusCode::OK);
    }
    assert_eq!(
        f.sim.stats().led_writes,
        1,
        "one EEPROM-costing write for five requests"
    );
    for path in ["/False", "/false", "/0"] {
        send(&f.app, post(path)).await;
    }
    assert_eq!(f.sim.stats().led_writes, 2);
    assert_eq!(f.metrics.led_writes_skipped.get(), 6);
}

#[tokio::test]
async fn eeprom_bytes_are_counted_as_the_firmware_writes_them_and_it_saves_every_change() {
    let f = fixture();
    for request in [
        post("/true"),
        post("/true"),
        put_json(r#"{"on": true, "brightness": 200, "pulse": {"cycle_ms": 1000, "off_ms": 500}}"#),
        put_json(r#"{"on": true, "brightness": 201, "pulse": {"cycle_ms": 1000, "off_ms": 500}}"#),
        post("/false"),
    ] {
        assert_eq!(send(&f.app, request).await.0, StatusCode::OK);
    }
    test_kit::wait_until("the last save pass", Duration::from_secs(5), || {
        f.sim.now_ms() >= f.sim.settled_at_ms()
    })
    .await;
    // on: 1 byte; again: none; pulse: 4 (0xE8 0x03 0xF4 0x01); 201: 1; off: 5.
    let written = f.sim.stats().eeprom_byte_writes;
    assert_eq!(written, 11);
    assert_eq!(f.metrics.eeprom_byte_writes.get(), written);
    let (_, body) = send(&f.app, get("/led")).await;
    assert_eq!(body["eeprom_byte_writes"], written, "{body}");
    assert_eq!(
        f.sim.settings().led,
        f.sim.led(),
        "the switch-off waited for the last change's save pass (one landing in it is not saved)"
    );
}

#[tokio::test]
async fn a_write_that_reads_back_wrong_is_written_once_more_then_reported() {
    let f = fixture();
    f.sim.lose_next_writes(1);
    assert_eq!(send(&f.app, post("/true")).await.0, StatusCode::OK);
    assert_eq!(f.sim.led().brightness, 200, "the second write landed");
    assert_eq!(f.metrics.led_write_mismatches.get(), 1);

    f.sim.lose_next_writes(2);
    let (status, body) = send(&f.app, post("/false")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("read back") && message.contains("clock-stretching"),
        "{message}"
    );
    assert_eq!(f.metrics.led_write_mismatches.get(), 3);
    assert_eq!(
        send(&f.app, post("/false")).await.0,
        StatusCode::OK,
        "then it works again"
    );
}

#[tokio::test]
async fn corrupted_led_readings_are_read_again_never_used() {
    let f = fixture();
    // Found before the bus goes bad.
    assert_eq!(send(&f.app, get("/healthz")).await.0, 200);
    f.sim.set_corrupt_rate(1.0).unwrap();
    let (status, body) = send(&f.app, get("/led")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("corrupted"),
        "{body}"
    );
    assert!(f.metrics.bus.rejected_readings.get() >= 3);
    f.sim.set_corrupt_rate(0.3).unwrap();
    for _ in 0..20 {
        let (status, body) = send(&f.app, post("/true")).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
            "{body}"
        );
        let (_, body) = send(&f.app, post("/false")).await;
        assert_ne!(
            body["brightness"], 201,
            "never a value the device did not hold"
        );
    }
    f.sim.set_corrupt_rate(0.0).unwrap();
    assert_eq!(send(&f.app, post("/false")).await.0, StatusCode::OK);
    assert_eq!(f.sim.led().brightness, 0);
}

#[tokio::test]
async fn a_button_whose_every_read_is_shifted_is_named_for_what_it_is() {
    let f = fixture();
    f.sim.set_corrupt_rate(1.0).unwrap();
    let (status, body) = send(&f.app, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK, "the service serves on");
    assert_eq!(body["status"], "degraded", "{body}");
    let message = body["button"].as_str().unwrap();
    // A shift from the first byte reads the ID as 0x2e; from a later one, a firmware that
    // does not exist: either way the message names the bus and the fix.
    assert!(
        (message.contains("0x2e, which is 0x5d shifted by one bit")
            || message.contains("clock-stretching bug"))
            && message.contains("i2c-gpio"),
        "{message}"
    );
}

#[tokio::test]
async fn get_and_put_the_whole_led() {
    let f = fixture();
    let (status, body) = send(&f.app, get("/led")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"on": false, "brightness": 0, "pulse": null, "changed_at": null, "changed_by": null, "eeprom_byte_writes": 0})
    );

    let (status, body) = send(
        &f.app,
        put_json(r#"{"on": true, "brightness": 128, "pulse": {"cycle_ms": 1000, "off_ms": 500, "granularity": 2}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["pulse"],
        json!({"cycle_ms": 1000, "off_ms": 500, "granularity": 2})
    );
    let led = f.sim.led();
    assert_eq!(
        (
            led.brightness,
            led.granularity,
            led.cycle_time_ms,
            led.off_time_ms
        ),
        (128, 2, 1000, 500)
    );

    let (_, body) = send(&f.app, get("/led")).await;
    assert_eq!(body["brightness"], 128);
    assert!(body["changed_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["changed_by"], "unknown");

    let (status, body) = send(&f.app, put_json(r#"{"on": false}"#)).await;
    assert_eq!((status, body["on"].clone()), (StatusCode::OK, json!(false)));
    assert_eq!(f.sim.led().brightness, 0);

    // Brightness 0 is dark, whatever else is asked.
    send(&f.app, put_json(r#"{"on": true}"#)).await;
    let (status, body) = send(
        &f.app,
        put_json(r#"{"on": true, "brightness": 0, "pulse": {"cycle_ms": 500}}"#),
    )
    .await;
    assert_eq!(
        (status, body["on"].clone(), body["pulse"].clone()),
        (StatusCode::OK, json!(false), json!(null))
    );
    assert_eq!(f.sim.led().brightness, 0);
}

#[tokio::test]
async fn bad_bodies_get_clear_errors_and_change_nothing() {
    let f = fixture();
    send(&f.app, put_json(r#"{"on": true, "brightness": 10}"#)).await;
    let cases: &[(&str, Option<&str>, StatusCode, &str)] = &[
        (
            "{\"on\": true",
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            "not json",
            Some("application/json"),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            r#"{"on": true}"#,
            Some("text/plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type: application/json",
        ),
        (
            r#"{"on": true}"#,
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (
            r#"{"on": true, "brightness": 300}"#,
            Some("application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "brightness",
        ),
        (
            r#"{"on": true, "brightness": -1}"#,
            Some("application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "brightness",
        ),
        (
            r#"{"on": "yes"}"#,
            Some("application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "on",
        ),
        (
            r#"{"brightness": 5}"#,
            Some("application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `on`",
        ),
        (
            r#"{"on": true, "colour": "red"}"#,
            Some("application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field",
        ),
        (
            r#"{"on": true, "pulse": {"cycle_ms": 0}}"#,
            Some("application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cycle_ms",
        ),
        (
            r#"{"on": true, "pulse": {"cycle_ms": 70000}}"#,
            Some("application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "cycle_ms",
        ),
        (
            r#"{"on": true, "pulse": {"cycle_ms": 100, "granularity": 0}}"#,
            Some("application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "granularity",
        ),
        (
            "[]",
            Some("application/json"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "expected",
        ),
    ];
    for (body, content_type, expected, says) in cases {
        let mut request = Request::put("/led");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, *content_type);
        }
        let (status, answer) =
            send(&f.app, request.body(Body::from(body.to_string())).unwrap()).await;
        assert_eq!(status, *expected, "{body}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body}: {message}");
    }
    assert_eq!(f.sim.led().brightness, 10, "nothing was lost");
    assert_eq!(f.sim.stats().led_writes, 1);
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let f = fixture();
    let huge_body = format!(r#"{{"on": true, "pad": "{}"}}"#, "x".repeat(100_000));
    let (status, body) = send(&f.app, put_json(&huge_body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let huge_path = format!("/{}", "t".repeat(10_000));
    let (status, body) = send(&f.app, post(&huge_path)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap().len() < 200,
        "the echo is shortened: {body}"
    );
    let long_state = format!("/{}", "t".repeat(200));
    let (status, body) = send(&f.app, post(&long_state)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"].as_str().unwrap().len() < 200,
        "the echo is shortened: {body}"
    );
}

/// `{"on": true}` padded with spaces to exactly `size` bytes.
fn padded_body(size: usize) -> Vec<u8> {
    let mut body = br#"{"on": true}"#.to_vec();
    body.resize(size, b' ');
    body
}

/// A `PUT /led` that announces its length, as most clients do.
fn put_with_length(body: Vec<u8>) -> Request<Body> {
    Request::put("/led")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .unwrap()
}

/// A `PUT /led` whose body arrives in pieces of unknown total length, as a chunked upload.
fn put_chunked(body: Vec<u8>) -> Request<Body> {
    let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> = body
        .chunks(1000)
        .map(|chunk| Ok(axum::body::Bytes::copy_from_slice(chunk)))
        .collect();
    Request::put("/led")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap()
}

#[tokio::test]
async fn a_body_of_exactly_4_kib_is_accepted_and_one_byte_more_is_a_413_announced_or_chunked() {
    type Put = fn(Vec<u8>) -> Request<Body>;
    let modes: [(&str, Put); 2] = [
        ("with Content-Length", put_with_length),
        ("chunked", put_chunked),
    ];
    for (mode, put) in modes {
        let f = fixture();
        let request = put(padded_body(4097));
        assert!(
            (mode == "chunked") != request.headers().contains_key(header::CONTENT_LENGTH),
            "{mode}"
        );
        let (status, body) = send(&f.app, request).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{mode}: {body}");
        assert_eq!(
            body["error"], "the body is larger than 4096 bytes",
            "{mode}: {body}"
        );
        assert_eq!(
            f.sim.stats().led_writes,
            0,
            "{mode}: the LED was not touched"
        );

        let (status, body) = send(&f.app, put(padded_body(4096))).await;
        assert_eq!(status, StatusCode::OK, "{mode}: {body}");
        assert_eq!(body["on"], true, "{mode}: {body}");
        assert_eq!(f.sim.led().brightness, 200, "{mode}");
    }
}

#[tokio::test]
async fn healthz_names_the_buttons_firmware_and_an_instance_that_changes_at_every_start() {
    let f = fixture();
    let (status, body) = send(&f.app, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(
        body["firmware"], "1.3",
        "the simulated button's firmware: {body}"
    );
    let instance = body["instance"].as_str().unwrap().to_owned();
    assert!(!instance.is_empty(), "{body}");
    assert_eq!(
        (&body["bus"], &body["simulated"]),
        (&json!("sim"), &json!(true)),
        "a simulated bus says so: {body}"
    );
    let (_, again) = send(&f.app, get("/healthz")).await;
    assert_eq!(
        again["instance"],
        instance.as_str(),
        "the same while it runs"
    );

    // The firmware is read from the button, not assumed; another start is another instance.
    let older = SimButton::with_config(
        SimConfig {
            firmware: (1, 2),
            ..SimConfig::default()
        },
        SystemClock::new(),
    );
    let Cli { config, .. } = Cli::parse_from(["led-service", "--bus=sim"]);
    let state = AppState::start(
        Bus::Sim(older),
        &config.resolve().unwrap(),
        CancellationToken::new(),
    )
    .unwrap();
    let (status, body) = send(&app(state), get("/healthz")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["firmware"], "1.2", "{body}");
    assert_ne!(body["instance"], instance.as_str(), "{body}");
}

#[tokio::test]
async fn a_never_written_button_reports_its_led_on_at_255_and_is_switched_off() {
    let fresh = SimButton::with_config(
        SimConfig {
            eeprom: qwiic_sim::Eeprom::FRESH,
            ..SimConfig::default()
        },
        SystemClock::new(),
    );
    let Cli { config, .. } = Cli::parse_from(["led-service", "--bus=sim"]);
    let state = AppState::start(
        Bus::Sim(fresh.clone()),
        &config.resolve().unwrap(),
        CancellationToken::new(),
    )
    .unwrap();
    let app = app(state);
    let (status, body) = send(&app, get("/led")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["on"], true, "{body}");
    assert_eq!(body["brightness"], 255, "{body}");
    assert_eq!(send(&app, post("/false")).await.0, StatusCode::OK);
    test_kit::wait_until("the LED goes dark", Duration::from_secs(5), || {
        fresh.led_level() == 0
    })
    .await;
}

#[tokio::test]
async fn wrong_methods_and_unknown_routes_are_json_errors() {
    let f = fixture();
    for (method, path, expected) in [
        (Method::GET, "/true", StatusCode::METHOD_NOT_ALLOWED),
        (Method::DELETE, "/led", StatusCode::METHOD_NOT_ALLOWED),
        (Method::POST, "/led/x", StatusCode::NOT_FOUND),
        (Method::POST, "/healthz/x", StatusCode::NOT_FOUND),
        (Method::PUT, "/true", StatusCode::METHOD_NOT_ALLOWED),
        (Method::POST, "/metrics", StatusCode::METHOD_NOT_ALLOWED),
        (Method::POST, "/led", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let (status, body) = send(
            &f.app,
            Request::builder()
                .method(method.clone())
                .uri(path)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, expected, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{method} {path}: {body}");
    }
}

#[tokio::test]
async fn the_token_guards_mutating_routes_only() {
    let f = fixture_with(&["--api-token=s3cret"]);
    let with = |request: axum::http::request::Builder, token: &str| {
        request.header(header::AUTHORIZATION, token)
    };
    let (status, body) = send(&f.app, post("/true")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    for wrong in [
        "Bearer s3cre",
        "Bearer s3cret2",
        "Basic s3cret",
        "s3cret",
        "Bearer ",
    ] {
        let (status, _) = send(
            &f.app,
            with(Request::post("/true"), wrong)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}");
    }
    let (status, _) = send(&f.app, put_json(r#"{"on": true}"#)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.sim.led().brightness, 0, "no unauthorized change");

    let (status, _) = send(
        &f.app,
        with(Request::post("/true"), "Bearer s3cret")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(f.sim.led().brightness, 200);
    let response = f.app.clone().oneshot(post("/false")).await.unwrap();
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    for open in ["/led", "/healthz", "/metrics", "/openapi.json", "/"] {
        let (status, _) = send(&f.app, Request::get(open).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "GET {open} needs no token");
    }
}

#[tokio::test]
async fn an_unplugged_button_is_a_503_with_the_reason_and_degraded_health_then_recovers() {
    let f = fixture();
    assert_eq!(send(&f.app, get("/healthz")).await.0, StatusCode::OK);
    send(&f.app, post("/true")).await;
    f.sim.unplug();
    let (status, body) = send(&f.app, post("/false")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body["error"],
        "no Qwiic Button answers at 0x6f on sim (no acknowledge); the in-process simulator is unplugged or at another address"
    );
    // Healthy, as the service serves; the body says the button is missing.
    let (status, body) = send(&f.app, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(body["button"].as_str().unwrap().contains("no Qwiic Button"));
    assert!(body.get("firmware").is_none(), "{body}");
    let (_, metrics) = send(&f.app, get("/metrics")).await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("led_service_i2c_button_answering 0"),
        "{metrics}"
    );

    f.sim.replug();
    // Found again by itself, within a probe interval (a missing button is not probed faster).
    let until = std::time::Instant::now() + qwiic_bus::PROBE_INTERVAL * 3;
    loop {
        let (status, body) = send(&f.app, get("/healthz")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] == "ok" {
            assert_eq!(body["button"], "ok");
            break;
        }
        assert!(std::time::Instant::now() < until, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = send(&f.app, post("/false")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(f.sim.led().brightness, 0);
}

#[tokio::test]
async fn a_broken_transfer_is_retried_and_never_seen() {
    let f = fixture();
    send(&f.app, post("/true")).await;
    f.sim.fail_next(2, Fault::Bus);
    let (status, body) = send(&f.app, post("/false")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(f.sim.led().brightness, 0);
    assert_eq!(f.metrics.bus.errors.get(), 2, "but the metrics show them");
}

#[tokio::test]
async fn a_single_nack_of_a_button_that_answers_is_retried_and_never_seen() {
    let f = fixture();
    send(&f.app, post("/true")).await;
    f.sim.fail_next(2, Fault::Nack);
    let (status, body) = send(&f.app, post("/false")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(f.metrics.bus.errors.get(), 2, "but the metrics show them");
}

#[tokio::test]
async fn a_nack_that_persists_is_a_503_and_the_button_is_looked_for_again_without_retries() {
    let f = fixture();
    send(&f.app, post("/true")).await;
    f.sim.fail_next(4, Fault::Nack); // every attempt of one transaction, and the next look
    let (status, body) = send(&f.app, post("/false")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no acknowledge"),
        "{body}"
    );
    let until = std::time::Instant::now() + qwiic_bus::PROBE_INTERVAL * 3;
    while send(&f.app, post("/false")).await.0 != StatusCode::OK {
        assert!(std::time::Instant::now() < until, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(f.sim.led().brightness, 0);
}

#[tokio::test]
async fn a_hung_bus_is_a_504_within_the_bus_timeout() {
    let f = fixture_with(&["--bus-timeout=100ms"]);
    send(&f.app, get("/healthz")).await;
    f.sim.set_delay(Duration::from_millis(400));
    let started = std::time::Instant::now();
    let (status, body) = send(&f.app, post("/true")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 100 ms")
    );
    assert!(
        started.elapsed() < Duration::from_millis(390),
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn metrics_count_requests_i2c_and_led_changes() {
    let f = fixture();
    send(&f.app, post("/true")).await;
    send(&f.app, post("/true")).await;
    send(&f.app, post("/nope")).await;
    let (status, text) = send(&f.app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    for line in [
        r#"led_service_http_requests_total{route="/{state}",method="POST",status="200"} 2"#,
        r#"led_service_http_requests_total{route="/{state}",method="POST",status="422"} 1"#,
        "led_service_led_changes_total 1",
        "led_service_led_writes_skipped_total 1",
        "led_service_i2c_errors_total 0",
        "led_service_i2c_button_answering 1",
        r#"led_service_http_request_duration_seconds_count{route="/{state}"} 3"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(text.contains("led_service_i2c_transactions_total"));
}

#[tokio::test]
async fn a_request_its_client_abandons_is_counted_as_499() {
    let f = fixture();
    let never_ending = futures_util::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
    let request = Request::put("/led")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(never_ending))
        .unwrap();
    let mut answer = Box::pin(f.app.clone().oneshot(request));
    assert!(
        futures_util::poll!(answer.as_mut()).is_pending(),
        "waiting for the body"
    );
    drop(answer); // the client went away
    let (_, text) = send(&f.app, get("/metrics")).await;
    let line = r#"led_service_http_requests_total{route="/led",method="PUT",status="499"} 1"#;
    assert!(
        text.as_str().unwrap().contains(line),
        "missing {line:?} in\n{text}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let f = fixture();
    let (status, doc) = send(&f.app, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/{state}", "/led", "/healthz", "/metrics"] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["paths"]["/led"]["put"].is_object());
    assert!(doc["components"]["schemas"]["LedView"].is_object());
}

#[tokio::test]
async fn the_status_page_is_served() {
    let f = fixture();
    let response = f.app.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.into_body().collect().await.unwrap().to_bytes();
    let html = String::from_utf8_lossy(&html);
    assert!(html.contains("Qwiic Button LED") && html.contains("EventSource('/events')"));
}

#[tokio::test]
async fn integers_may_be_written_as_json_schema_counts_them() {
    let f = fixture();
    let (status, body) = send(
        &f.app,
        put_json(r#"{"on": true, "brightness": 128.0, "pulse": {"cycle_ms": 4087.0}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (f.sim.led().brightness, f.sim.led().cycle_time_ms),
        (128, 4087)
    );
    for bad in [
        r#"{"on": true, "brightness": 12.5}"#,
        r#"{"on": true, "brightness": 1e3}"#,
        r#"{"on": true, "pulse": {"cycle_ms": -1}}"#,
    ] {
        let (status, body) = send(&f.app, put_json(bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("expected an integer from 0 to"),
            "{bad}: {body}"
        );
    }
    let (status, body) = send(
        &f.app,
        put_json(r#"{"on": false, "pulse": {"cycle_ms": 100, "granularity": 0}}"#),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a bad pulse is refused even when off: {body}"
    );
}

#[tokio::test]
async fn under_corrupted_reads_the_led_metrics_count_every_write_that_reached_the_device() {
    let f = fixture();
    send(&f.app, get("/healthz")).await;
    // Most read-backs come back corrupted: some writes are never confirmed.
    f.sim.set_corrupt_rate(0.6).unwrap();
    for change in 0..30 {
        let path = if change % 2 == 0 { "/true" } else { "/false" };
        send(&f.app, post(path)).await;
        // Outside the merge window: each change is a write of its own.
        tokio::time::sleep(led_service::led::COALESCE_WINDOW).await;
    }
    f.sim.set_corrupt_rate(0.0).unwrap();
    assert_eq!(
        f.metrics.led_changes.get(),
        f.sim.stats().led_writes,
        "the metric against the simulator's record"
    );
}
