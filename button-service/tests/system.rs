//! button-service against the real led-service router on port 0, both on ONE in-process
//! simulated button, as the two containers share one device. Waits are bounded polls of a
//! condition; time bounds have wide margins (speed is the benchmark's business).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use button_service::config::Cli;
use button_service::metrics::Metrics;
use clap::Parser as _;
use led_service::device::LedDevice;
use qwiic_bus::{Bus, BusSpec};
use qwiic_button::{Address, QwiicButton};
use qwiic_sim::{SimButton, SimEventKind};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

async fn wait_for(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < until,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A led-service on `address` (port 0 for any), driving `sim`.
struct LedService {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl LedService {
    async fn start(sim: &SimButton, address: SocketAddr) -> LedService {
        let metrics = led_service::metrics::Metrics::default();
        let button = QwiicButton::new(Bus::Sim(sim.clone()), Address::DEFAULT);
        let led = LedDevice::spawn(button, BusSpec::Sim, &metrics, Duration::from_secs(2)).unwrap();
        let (closing, closing_rx) = tokio::sync::watch::channel(false);
        let state = led_service::AppState {
            led,
            metrics,
            token: None::<Arc<str>>,
            default_brightness: 255,
            closing: closing_rx,
        };
        let listener = TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(led_service::run(listener, state, closing, async {
            let _ = stopped.await;
        }));
        LedService {
            address,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Any HTTP server, for LED services that misbehave.
async fn serve_router(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

async fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

struct ButtonService {
    metrics: Metrics,
    health_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), button_service::RunError>>,
}

impl ButtonService {
    async fn start(sim: &SimButton, led: SocketAddr, extra: &[&str]) -> ButtonService {
        let mut args = vec![
            "button-service".to_owned(),
            "--bus=sim".to_owned(),
            format!("--led-url=http://{led}"),
            "--listen=127.0.0.1:0".to_owned(),
        ];
        args.extend(extra.iter().map(|arg| arg.to_string()));
        let config = Cli::parse_from(args).config;
        let listener = TcpListener::bind(config.listen).await.unwrap();
        let health_url = format!("http://{}/healthz", listener.local_addr().unwrap());
        let button = QwiicButton::new(Bus::Sim(sim.clone()), config.address);
        let metrics = Metrics::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let metrics = metrics.clone();
            async move {
                button_service::run(&config, button, listener, metrics, async {
                    let _ = stopped.await;
                })
                .await
            }
        });
        ButtonService {
            metrics,
            health_url,
            stop: Some(stop),
            task,
        }
    }

    async fn health(&self) -> (u16, serde_json::Value) {
        let response = reqwest::get(&self.health_url).await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
        )
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

fn led_events(sim: &SimButton) -> Vec<(u64, u8)> {
    sim.recent_events()
        .into_iter()
        .filter_map(|event| match event.kind {
            SimEventKind::Led(led) => Some((event.at_ms, led.brightness)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn press_lights_the_led_within_a_poll_period_and_release_switches_it_off() {
    let sim = SimButton::new();
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    let button = ButtonService::start(&sim, led.address, &["--poll-interval=20ms"]).await;
    wait_for("the first poll", Duration::from_secs(5), || {
        button.metrics.sends.get() >= 1
    })
    .await;

    for _ in 0..5 {
        let pressed_at = sim.now_ms();
        sim.press();
        wait_for("LED on", Duration::from_secs(2), || {
            sim.led().brightness == 255
        })
        .await;
        let (lit_at, _) = *led_events(&sim).last().unwrap();
        // One poll period plus the HTTP hop, with a wide margin for a loaded CI machine.
        assert!(
            lit_at - pressed_at <= 20 + 100,
            "press to LED took {} ms",
            lit_at - pressed_at
        );
        sim.release();
        wait_for("LED off", Duration::from_secs(2), || {
            sim.led().brightness == 0
        })
        .await;
    }
    assert_eq!(button.metrics.presses.get(), 5);
    let (status, body) = button.health().await;
    assert_eq!(
        (status, body["led_service"].as_str()),
        (200, Some("up")),
        "{body}"
    );
    button.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30ms_click_with_a_1s_poll_is_on_then_off() {
    let sim = SimButton::new();
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    let button = ButtonService::start(&sim, led.address, &["--poll-interval=1s"]).await;
    wait_for("the first poll", Duration::from_secs(5), || {
        button.metrics.sends.get() >= 1
    })
    .await;
    let before = led_events(&sim).len();
    sim.click(Duration::from_millis(30));
    wait_for("on then off", Duration::from_secs(5), || {
        let events = led_events(&sim);
        events.len() >= before + 2
    })
    .await;
    let events = led_events(&sim);
    let brightness: Vec<u8> = events[before..].iter().map(|(_, b)| *b).collect();
    assert_eq!(brightness, [255, 0], "the short press was shown");
    assert_eq!(button.metrics.presses.get(), 1);
    button.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_led_service_down_at_start_gets_the_state_when_it_comes_up() {
    let sim = SimButton::new();
    let address = free_address().await;
    let button = ButtonService::start(
        &sim,
        address,
        &["--poll-interval=20ms", "--request-timeout=200ms"],
    )
    .await;
    sim.press();
    wait_for("failed sends", Duration::from_secs(5), || {
        button.metrics.send_failures.get() >= 2
    })
    .await;
    assert_eq!(
        button.metrics.outages.get(),
        1,
        "one outage, however many failures"
    );
    let (status, body) = button.health().await;
    assert_eq!(
        (status, body["led_service"].as_str()),
        (200, Some("down")),
        "{body}"
    );

    let led = LedService::start(&sim, address).await;
    let up = Instant::now();
    wait_for("LED on", Duration::from_secs(5), || {
        sim.led().brightness == 255
    })
    .await;
    assert!(
        up.elapsed() < Duration::from_secs(2),
        "converged after {:?}",
        up.elapsed()
    );
    assert_eq!(button.metrics.outages.get(), 1);
    button.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_led_service_restarted_mid_run_is_healed() {
    let sim = SimButton::new();
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    let address = led.address;
    let button = ButtonService::start(
        &sim,
        address,
        &["--poll-interval=20ms", "--request-timeout=200ms"],
    )
    .await;
    sim.press();
    wait_for("LED on", Duration::from_secs(5), || {
        sim.led().brightness == 255
    })
    .await;

    led.stop().await; // switches the LED off on its way out
    assert_eq!(sim.led().brightness, 0);
    wait_for("the outage to be noticed", Duration::from_secs(5), || {
        button.metrics.outages.get() == 1
    })
    .await;

    let led = LedService::start(&sim, address).await;
    let up = Instant::now();
    wait_for("LED on again", Duration::from_secs(5), || {
        sim.led().brightness == 255
    })
    .await;
    assert!(
        up.elapsed() < Duration::from_secs(2),
        "healed after {:?}",
        up.elapsed()
    );
    assert_eq!(button.metrics.outages.get(), 1);
    button.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_led_service_is_cut_off_by_the_timeout() {
    let sim = SimButton::new();
    // Accepts connections, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let button = ButtonService::start(
        &sim,
        address,
        &["--poll-interval=20ms", "--request-timeout=100ms"],
    )
    .await;
    let started = Instant::now();
    wait_for("two timed-out sends", Duration::from_secs(5), || {
        button.metrics.send_failures.get() >= 2
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout did not fire in time"
    );
    assert_eq!(button.metrics.outages.get(), 1);
    // Polling goes on regardless.
    let polls = button.metrics.polls.get();
    wait_for("more polls", Duration::from_secs(2), || {
        button.metrics.polls.get() > polls + 5
    })
    .await;
    button.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_led_service_answering_500_or_422_is_an_outage_not_a_crash() {
    use axum::http::StatusCode;
    for status in [
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::UNPROCESSABLE_ENTITY,
    ] {
        let sim = SimButton::new();
        let router =
            Router::new().fallback(move || async move { (status, "{\"error\":\"boom\"}") });
        let address = serve_router(router).await;
        let button = ButtonService::start(&sim, address, &["--poll-interval=20ms"]).await;
        wait_for("failed sends", Duration::from_secs(5), || {
            button.metrics.send_failures.get() >= 2
        })
        .await;
        assert_eq!(button.metrics.outages.get(), 1, "{status}");
        let (health, body) = button.health().await;
        assert_eq!(
            (health, body["led_service"].as_str()),
            (200, Some("down")),
            "{body}"
        );
        button.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_button_is_reported_and_recovers_without_a_restart() {
    let sim = SimButton::new();
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    let button = ButtonService::start(&sim, led.address, &["--poll-interval=20ms"]).await;
    wait_for("the first poll", Duration::from_secs(5), || {
        button.metrics.sends.get() >= 1
    })
    .await;
    sim.unplug();
    let errors = button.metrics.poll_errors.get();
    wait_for("poll errors", Duration::from_secs(5), || {
        button.metrics.poll_errors.get() > errors + 2
    })
    .await;
    let (status, body) = button.health().await;
    assert_eq!(status, 503);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no Qwiic Button answers at 0x6f on sim"),
        "{body}"
    );

    sim.replug();
    sim.press();
    wait_for("LED on after replug", Duration::from_secs(5), || {
        sim.led().brightness == 255
    })
    .await;
    assert_eq!(button.health().await.0, 200);
    button.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_button_at_another_address_is_reported() {
    let sim = SimButton::new();
    let address = free_address().await;
    let button = ButtonService::start(&sim, address, &["--address=0x22"]).await;
    wait_for("a poll error", Duration::from_secs(5), || {
        button.metrics.poll_errors.get() >= 1
    })
    .await;
    let (status, body) = button.health().await;
    assert_eq!(status, 503);
    assert!(body["error"].as_str().unwrap().contains("0x22"), "{body}");
    button.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_polls_sends_and_the_last_send_age() {
    let sim = SimButton::new();
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    let button = ButtonService::start(&sim, led.address, &["--poll-interval=20ms"]).await;
    wait_for("a send", Duration::from_secs(5), || {
        button.metrics.sends.get() >= 1
    })
    .await;
    let text = reqwest::get(button.health_url.replace("healthz", "metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "button_service_polls_total",
        "button_service_sends_total",
        "button_service_send_failures_total 0",
        "button_service_outages_total 0",
        "button_service_i2c_transactions_total",
        "button_service_last_successful_send_age_milliseconds",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    button.stop().await;
    led.stop().await;
}
