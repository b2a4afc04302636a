//! The binary as a container runs it: env configuration, healthcheck subcommand, SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::time::Duration;

use service_kit::testing::{RunningBinary, binary_command, unused_address};

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
    ] {
        let output = binary_command(BINARY).env(env, value).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{env}={value}");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains(says), "{env}={value}: {message}");
    }
}
