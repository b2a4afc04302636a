//! The binary as a container runs it: env configuration, healthcheck subcommand, SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::time::Duration;

use test_kit::{RunningBinary, SimServer, binary_command, unused_address};

const BINARY: &str = env!("CARGO_BIN_EXE_button-service");

#[test]
fn the_binary_exits_0_promptly_on_sigterm_even_while_the_led_service_is_down() {
    let led_url = format!("http://{}", unused_address());
    let mut service = RunningBinary::start(
        BINARY,
        &[
            ("BUS", "sim"),
            ("LED_URL", &led_url),
            ("POLL_INTERVAL", "1s"),
        ],
    );
    service.wait_for_log("LED service is not answering", Duration::from_secs(10));
    assert!(
        service.healthcheck(Duration::from_secs(10)),
        "{}",
        service.log()
    );
    let (status, took) = service.terminate(Duration::from_secs(5));
    let log = service.log();
    assert!(status.success(), "exit {status:?}\n{log}");
    // The budget is 100 ms (see the benchmark); this bound only proves "long before SIGKILL".
    assert!(took < Duration::from_secs(1), "exit took {took:?}");
    assert_eq!(
        log.matches("LED service is not answering").count(),
        1,
        "one outage line:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn bad_settings_are_refused_with_what_is_accepted() {
    for (env, value, says) in [
        ("POLL_INTERVAL", "0ms", "poll at most every 1ms"),
        ("POLL_INTERVAL", "fast", "such as 20ms"),
        ("REQUEST_TIMEOUT", "0s", "longer than 0"),
        ("RESEND_INTERVAL", "0s", "longer than 0"),
        ("LED_URL", "not a url", "LED_URL"),
        ("I2C_ADDRESS", "0x05", "0x08 to 0x77"),
        ("BUS", "", "empty"),
        ("DEBOUNCE", "0ms", "whole milliseconds from 1ms to 1s"),
        ("DEBOUNCE", "62s", "whole milliseconds from 1ms to 1s"),
        ("DEBOUNCE", "1.5ms", "whole milliseconds from 1ms to 1s"),
        ("INT_GPIO", "18", "give CHIP:LINE"),
        ("MAX_PRESSES", "0", "give 1 to 5"),
        ("MAX_PRESSES", "6", "give 1 to 5"),
        ("MAX_PRESSES", "three", "give 1 to 5"),
        ("HOLD_REPEAT", "10ms", "outside 50ms to 10s"),
        ("HOLD_REPEAT", "1m", "or 0 for no repeats"),
        ("INT_GPIO", "pinctrl-bcm2711:GPIO24", "is not a line number"),
    ] {
        let output = binary_command(BINARY).env(env, value).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{env}={value}");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains(says), "{env}={value}: {message}");
    }
}

#[test]
fn an_int_gpio_that_cannot_be_opened_stops_the_service_with_what_to_do() {
    // This machine has no GPIO chip: one named by label is not found, and a node that is not
    // a chip is told as such (a board's own refusals are unit-tested in qwiic-bus).
    for (value, says) in [
        (
            "pinctrl-bcm2711:24",
            "INT_GPIO: no GPIO chip here is labelled \"pinctrl-bcm2711\" (this process sees no /dev/gpiochip* at all)",
        ),
        (
            "/dev/null:24",
            "INT_GPIO: /dev/null is not a GPIO chip (a /dev/gpiochipN node)",
        ),
    ] {
        let output = binary_command(BINARY)
            .env("BUS", "sim")
            .env("INT_GPIO", value)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "INT_GPIO={value}");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains(says), "INT_GPIO={value}: {message}");
    }
}

#[test]
fn over_tcp_a_bus_outage_is_logged_once_at_each_end_and_polling_resumes_by_itself() {
    let sim = qwiic_sim::SimButton::new();
    let mut server = SimServer::start(sim.clone());
    let (bus, led_url) = (server.url(), format!("http://{}", unused_address()));
    let mut service = RunningBinary::start(
        BINARY,
        &[
            ("BUS", bus.as_str()),
            ("LED_URL", &led_url),
            ("POLL_INTERVAL", "10ms"),
        ],
    );
    service.wait_for_log("Qwiic Button found", Duration::from_secs(10));
    // A hundred polls fail while the simulator is away: one line for all of them.
    server.stop();
    service.wait_for_log("the button stopped answering", Duration::from_secs(10));
    let polls = |service: &RunningBinary| {
        let health = service.address("listen", Duration::from_secs(10));
        let text = std::process::Command::new("curl")
            .args(["-s", &format!("http://{health}/metrics")])
            .output()
            .unwrap()
            .stdout;
        String::from_utf8_lossy(&text)
            .lines()
            .find_map(|line| line.strip_prefix("button_service_poll_errors_total "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while polls(&service) < 20.0 {
        assert!(std::time::Instant::now() < until, "{}", service.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    server.restart(sim.clone());
    service.wait_for_log("the button answers again", Duration::from_secs(10));
    let (status, _) = service.terminate(Duration::from_secs(5));
    assert!(status.success());
    let log = service.log();
    for line in log.lines() {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "LOG_FORMAT=json: not JSON: {line}");
    }
    for message in ["the button stopped answering", "the button answers again"] {
        assert_eq!(log.matches(message).count(), 1, "{message:?}:\n{log}");
    }
}
