//! The LED page in a real headless browser (Debian's chromium over the DevTools protocol), on a
//! service that needs a token: "On" asks for the token, then lights the LED; a change made with
//! curl shows on the page at once (server-sent events); the page's own requests pass the
//! cross-site rule. Screenshots are kept in target/artifacts/.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::time::Duration;

use clap::Parser as _;
use led_service::config::Cli;
use led_service::{AppState, run};
use qwiic_bus::Bus;
use qwiic_sim::SimButton;
use serde_json::json;
use test_kit::browser::Browser;
use test_kit::wait_until;

/// How long the page and the device get for what a test waits for.
const PATIENCE: Duration = Duration::from_secs(10);

const TOKEN: &str = "s3cret-for-the-page";

#[test]
fn the_page_asks_for_the_token_lights_the_led_and_follows_changes_made_elsewhere() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = SimButton::new();
    let address = runtime.block_on(async {
        let Cli { config, .. } =
            Cli::parse_from(["led-service", "--bus=sim", &format!("--api-token={TOKEN}")]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = service_kit::CancellationToken::new();
        let state = AppState::start(
            Bus::Sim(sim.clone()),
            &config.resolve().unwrap(),
            shutdown.clone(),
        )
        .unwrap();
        tokio::spawn(run(listener, state, shutdown));
        address
    });

    let url = format!("http://{address}/");
    let browser = Browser::launch(&url);
    let mut page = browser.page(&url);
    page.call("Page.enable", json!({}));
    page.wait_for(
        "the LED's state",
        "document.getElementById('state').textContent.startsWith('off')",
    );
    page.wait_for(
        "the page to say the bus is simulated",
        "document.getElementById('simulated').textContent.startsWith('Simulated bus (sim)')",
    );

    // "On": the service wants the token, the page asks for it, then the LED lights.
    page.click("#on");
    let dialog = page.event("Page.javascriptDialogOpening");
    assert_eq!(dialog["type"], "prompt", "{dialog}");
    assert!(
        dialog["message"].as_str().unwrap().contains("API token"),
        "{dialog}"
    );
    page.call(
        "Page.handleJavaScriptDialog",
        json!({"accept": true, "promptText": TOKEN}),
    );
    runtime.block_on(wait_until("the LED to light", PATIENCE, || {
        sim.led().brightness == 255
    }));
    page.wait_for(
        "the page to show it lit",
        "document.getElementById('state').textContent.startsWith('on, brightness 255')",
    );
    assert_eq!(
        page.eval("document.getElementById('error').textContent"),
        "",
        "no error: the page's own request passed the cross-site rule"
    );
    page.screenshot("led-page-on.png");

    // A change made elsewhere (curl, the button) shows at once, through /events.
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{address}/false"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    page.wait_for(
        "the page to follow the change made with curl",
        "document.getElementById('state').textContent.startsWith('off')",
    );

    // The token is remembered: "On" again asks nothing.
    page.click("#on");
    runtime.block_on(wait_until("the LED to light again", PATIENCE, || {
        sim.led().brightness == 255
    }));
    page.wait_for(
        "the page to show it lit again",
        "document.getElementById('state').textContent.startsWith('on')",
    );
    page.screenshot("led-page-after-curl.png");
}
