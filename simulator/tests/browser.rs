//! The page in a real headless browser (Debian's chromium, driven over the DevTools protocol):
//! holding the page's button shows up in the device's status register over TCP, and an LED
//! write over TCP shows up on the page. Screenshots are kept in target/artifacts/.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::time::Duration;

use qwiic_bus::{TcpBus, TcpTimeouts};
use qwiic_button::{Address, LedConfig, QwiicButton};
use qwiic_sim::SimButton;
use serde_json::json;
use test_kit::browser::Browser;
use test_kit::wait_until;

/// How long the page and the device get for what a test waits for.
const PATIENCE: Duration = Duration::from_secs(10);

#[test]
fn the_page_presses_the_device_and_shows_the_led() {
    // The simulator, on its own runtime thread.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (tcp, http) = runtime.block_on(async {
        (
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
    });
    let (tcp_port, http_address) = (tcp.local_addr().unwrap().port(), http.local_addr().unwrap());
    let sim = SimButton::new();
    let shutdown = service_kit::CancellationToken::new();
    let state = simulator::AppState::new(sim.clone(), shutdown.clone());
    runtime.spawn(simulator::run(tcp, http, state, shutdown));

    let url = format!("http://{http_address}/");
    let browser = Browser::launch(&url);
    let mut page = browser.page(&url);
    page.wait_for(
        "the live event stream",
        "document.getElementById('conn').textContent === 'live'",
    );
    let mut button = QwiicButton::new(
        TcpBus::new("127.0.0.1", tcp_port, TcpTimeouts::default()),
        Address::DEFAULT,
    );
    button.check_identity().unwrap();

    // Hold the page's button with the mouse: the status register says pressed.
    let (x, y) = page.centre("#button");
    page.mouse("mouseMoved", x, y);
    page.mouse("mousePressed", x, y);
    runtime.block_on(wait_until("the device to be pressed", PATIENCE, || {
        button.status().unwrap().is_pressed
    }));
    page.wait_for(
        "the page to show it held",
        "document.getElementById('held').textContent === 'held'",
    );
    page.wait_for(
        "the INT pin low on the page",
        "document.getElementById('int').textContent.startsWith('low')",
    );

    // An LED write over TCP shows on the page while the button is held.
    button.set_led(LedConfig::steady(200)).unwrap();
    page.wait_for(
        "the LED on the page",
        "document.getElementById('brightness').textContent === '200'",
    );
    page.wait_for(
        "the LED event in the log",
        "document.getElementById('events').textContent.includes('LED ← brightness 200')",
    );
    page.screenshot("simulator-page-phone.png");

    page.mouse("mouseReleased", x, y);
    runtime.block_on(wait_until("the device to be released", PATIENCE, || {
        !button.status().unwrap().is_pressed
    }));
    // The click holds INT low until the host clears the status.
    button.clear_status().unwrap();
    page.wait_for(
        "the INT pin released on the page",
        "document.getElementById('int').textContent.startsWith('high')",
    );

    // The keyboard works too: hold Space on the focused button.
    page.eval("document.getElementById('button').focus()");
    page.call(
        "Input.dispatchKeyEvent",
        json!({"type": "keyDown", "key": " ", "code": "Space", "windowsVirtualKeyCode": 32}),
    );
    runtime.block_on(wait_until("a keyboard press", PATIENCE, || sim.is_held()));
    page.call(
        "Input.dispatchKeyEvent",
        json!({"type": "keyUp", "key": " ", "code": "Space", "windowsVirtualKeyCode": 32}),
    );
    runtime.block_on(wait_until("a keyboard release", PATIENCE, || {
        !sim.is_held()
    }));

    // Pulsing, on a desktop-sized window.
    button
        .set_led(LedConfig::pulse(255, 1000, 200, 1).unwrap())
        .unwrap();
    page.wait_for(
        "the pulse on the page",
        "document.getElementById('pulse').textContent.startsWith('1000 ms ramp')",
    );
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
    );
    page.screenshot("simulator-page-desktop.png");
}
