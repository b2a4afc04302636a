//! The fault suite, in real containers and bounded in time: the LED container killed 50 times
//! during a stream of presses, the simulated bus NACKing 1%, 10% and 50% of transactions, reads
//! corrupted like a Raspberry Pi's at 5% and 30%, and a slow LED service. Each time: no service exits (but the one we kill), the LED converges to the
//! button's final state within 2 s, no log shows a panic, and the errors show in /metrics.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::Stack;

/// Presses and releases for `rounds`, ending with the button held when `end_held`; returns
/// when the last action happened.
async fn press_stream(stack: &Stack, rounds: usize, end_held: bool) -> Instant {
    let mut last = Instant::now();
    for round in 0..rounds {
        last = Instant::now();
        stack.simulator("/api/press").await;
        tokio::time::sleep(Duration::from_millis(30)).await; // a human press, past the debounce
        if round + 1 < rounds || !end_held {
            last = Instant::now();
            stack.simulator("/api/release").await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    last
}

/// Waits for the LED to show `brightness`, at most 3 s after `since`: the button service's
/// retry pause grows to 1 s ±20%, the LED service's start and a check add a little, and a
/// loaded CI machine more (the figure printed is the measure; the README quotes it).
async fn assert_converges(stack: &Stack, brightness: u64, since: Instant, what: &str) {
    stack
        .wait_brightness(brightness, Duration::from_secs(6))
        .await;
    let took = since.elapsed();
    eprintln!("figure: {what}: LED followed in {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "{what}: the LED took {took:?}"
    );
}

fn assert_never_exited(stack: &Stack, services: &[&str]) {
    for service in services {
        assert_eq!(
            stack.inspect(service, "{{.State.Status}}"),
            "running",
            "{service}"
        );
        assert_eq!(
            stack.inspect(service, "{{.RestartCount}}"),
            "0",
            "{service} restarted"
        );
    }
}

#[tokio::test]
async fn fifty_led_container_kills_during_a_stream_of_presses() {
    let (stack, _) = Stack::up("kills");
    let started = Instant::now();
    for kill in 0..49 {
        let (before, during) = if kill % 2 == 0 {
            ("/api/press", "/api/release")
        } else {
            ("/api/release", "/api/press")
        };
        // Killed only once it is up again (its log says ready): each kill hits a running
        // service, not a container still starting.
        stack.wait_log_count(
            "led",
            "led-service ready",
            kill + 1,
            Duration::from_secs(10),
        );
        stack.simulator(before).await;
        stack.docker("kill", "led");
        stack.simulator(during).await;
        stack.docker("start", "led");
    }
    // The 50th: the LED is dark when the container dies, the button is pressed while it is
    // down, and the LED must light within 2 s of the container starting again.
    stack.wait_log_count("led", "led-service ready", 50, Duration::from_secs(10));
    stack.simulator("/api/release").await;
    stack.wait_brightness(0, Duration::from_secs(5)).await;
    stack.docker("kill", "led");
    stack.simulator("/api/press").await;
    stack.docker("start", "led");
    eprintln!("figure: 50 kills and starts in {:?}", started.elapsed());
    assert_converges(&stack, 255, Instant::now(), "after the 50th restart").await;
    assert_never_exited(&stack, &["button", "simulator"]);
    assert!(stack.metric("button", "button_service_outages_total").await >= 1.0);
    assert!(
        stack
            .metric("button", "button_service_send_failures_total")
            .await
            >= 1.0
    );
    stack.assert_no_panic();
}

#[tokio::test]
async fn bus_nacks_at_1_10_and_50_percent() {
    let (stack, _) = Stack::up("nacks");
    for (rate, end_held) in [(0.01, true), (0.10, false), (0.50, true)] {
        stack.faults(json!({"error_rate": rate})).await;
        let last = press_stream(&stack, 10, end_held).await;
        let wanted = if end_held { 255 } else { 0 };
        assert_converges(&stack, wanted, last, &format!("{:.0}% NACK", rate * 100.0)).await;
        stack.faults(json!({"error_rate": 0.0})).await;
    }
    assert_never_exited(&stack, &["led", "button", "simulator"]);
    assert!(
        stack
            .metric("button", "button_service_i2c_errors_total")
            .await
            >= 1.0
    );
    assert!(stack.metric("led", "led_service_i2c_errors_total").await >= 1.0);
    assert!(
        stack
            .metric("button", "button_service_poll_errors_total")
            .await
            >= 1.0
    );
    stack.assert_no_panic();
}

/// Presses and releases `rounds` times, waiting each time for the LED to follow; then how
/// many presses button-service counted beyond those made (phantoms) and short of them (lost).
async fn presses_through(stack: &Stack, rounds: u32) -> (f64, f64) {
    let before = stack.metric("button", "button_service_presses_total").await;
    for _ in 0..rounds {
        stack.simulator("/api/press").await;
        stack.wait_brightness(255, Duration::from_secs(5)).await;
        stack.simulator("/api/release").await;
        stack.wait_brightness(0, Duration::from_secs(5)).await;
    }
    // A phantom would come from what the last release left behind: ten more polls read it.
    let polls = stack.metric("button", "button_service_polls_total").await;
    stack
        .wait_metric(
            "button",
            "button_service_polls_total",
            Duration::from_secs(5),
            |now| now >= polls + 10.0,
        )
        .await;
    let counted = stack.metric("button", "button_service_presses_total").await - before;
    let made = f64::from(rounds);
    ((counted - made).max(0.0), (made - counted).max(0.0))
}

#[tokio::test]
async fn reads_and_writes_corrupted_like_a_raspberry_pis_at_5_and_30_percent() {
    let (stack, _) = Stack::up("corrupt");
    let rejected_total = "button_service_i2c_rejected_readings_total";
    for rate in [0.05, 0.30] {
        let rejected_before = stack.metric("button", rejected_total).await;
        stack
            .faults(json!({"corrupt_rate": rate, "write_corrupt_rate": rate}))
            .await;
        let (phantom, lost) = presses_through(&stack, 10).await;
        stack
            .faults(json!({"corrupt_rate": 0.0, "write_corrupt_rate": 0.0}))
            .await;
        let rejected = stack.metric("button", rejected_total).await - rejected_before;
        let state = stack
            .get(stack.simulator_port(), "/api/state")
            .await
            .unwrap();
        eprintln!(
            "figure: 10 presses through {}% corrupted reads and writes: {phantom} phantom, {lost} lost; {rejected} readings rejected by button-service; {} reads and {} writes corrupted in all",
            rate * 100.0,
            state["stats"]["corrupted_reads"],
            state["stats"]["corrupted_writes"]
        );
        assert_eq!(
            (phantom, lost),
            (0.0, 0.0),
            "at {rate}: no phantom press, none lost"
        );
    }
    // At 5% a short run may see no corrupted read by chance; over both rates there are dozens.
    assert!(stack.metric("button", rejected_total).await >= 1.0);
    assert_never_exited(&stack, &["led", "button", "simulator"]);
    stack.assert_no_panic();
}

#[tokio::test]
async fn a_switch_that_bounces_after_every_edge_invents_no_press() {
    let (stack, _) = Stack::up("bounce");
    // The raw pin chatters for 5 ms after each edge, and the contact bounces once more just
    // after the firmware's lockout, which takes that for an edge.
    stack
        .faults(json!({"bounce_ms": 5, "late_bounce_rate": 1.0}))
        .await;
    let (phantom, lost) = presses_through(&stack, 10).await;
    eprintln!(
        "figure: 10 presses with a late bounce after every edge: {phantom} phantom, {lost} lost"
    );
    assert_eq!((phantom, lost), (0.0, 0.0));
    assert_never_exited(&stack, &["led", "button", "simulator"]);
    stack.assert_no_panic();
}

#[tokio::test]
async fn a_slow_led_service() {
    let (stack, _) = Stack::up("slow");
    // Every bus transaction takes 150 ms: the LED service answers slowly, its requests queue.
    stack.faults(json!({"delay_ms": 150})).await;
    let last = press_stream(&stack, 5, true).await;
    assert_converges(&stack, 255, last, "150 ms bus latency").await;
    stack.faults(json!({"delay_ms": 0})).await;
    assert_never_exited(&stack, &["led", "button", "simulator"]);
    // The slowness shows in the latency histogram once a slow request has ended (the LED shows
    // a write before its request ends: the read-back after it is slow too).
    stack
        .wait_metric(
            "led",
            "led_service_http_request_duration_seconds_sum{route=\"/{state}\"}",
            Duration::from_secs(5),
            |latency| latency > 0.15,
        )
        .await;
    stack.assert_no_panic();
}
