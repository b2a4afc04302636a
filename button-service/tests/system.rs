//! button-service against the real led-service on port 0, both on ONE in-process simulated
//! button, as the two containers share one device. Waits are bounded polls of a condition;
//! time bounds have wide margins (speed is the benchmark's business).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use button_service::config::Cli as ButtonCli;
use button_service::events::{EventKind, Received};
use button_service::metrics::Metrics;
use button_service::{Service, run};
use clap::Parser as _;
use led_service::config::Cli as LedCli;
use qwiic_bus::Bus;
use qwiic_sim::{SimButton, SimEventKind};
use service_kit::CancellationToken;
use test_kit::{Background, SimServer, scaled, unused_address, wait_until};
use tokio::net::TcpListener;

/// A led-service on `address` (port 0 for any), driving `sim`.
struct LedService {
    address: SocketAddr,
    server: Background<std::io::Result<()>>,
}

impl LedService {
    async fn start(sim: &SimButton, address: SocketAddr) -> LedService {
        LedService::start_with(sim, address, &[]).await
    }

    async fn start_with(sim: &SimButton, address: SocketAddr, flags: &[&str]) -> LedService {
        let sim_bus = (!flags.iter().any(|flag| flag.starts_with("--bus"))).then_some("--bus=sim");
        let args = ["led-service"].into_iter().chain(sim_bus);
        let LedCli { config, .. } = LedCli::parse_from(args.chain(flags.iter().copied()));
        let bus = match config.device.bus.to_string().as_str() {
            "sim" => Bus::Sim(sim.clone()),
            _ => config.device.bus.open().unwrap(), // a --bus among the flags
        };
        let listener = TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = Background::spawn(|shutdown| {
            let state =
                led_service::AppState::start(bus, &config.resolve().unwrap(), shutdown.clone())
                    .unwrap();
            led_service::run(listener, state, shutdown)
        });
        LedService { address, server }
    }

    async fn stop(self) {
        self.server.stop().await.unwrap();
    }
}

/// Any HTTP server, for LED services that misbehave.
async fn serve_router(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

struct ButtonService {
    metrics: Metrics,
    events: button_service::events::Events,
    health_url: String,
    server: Background<Result<(), button_service::RunError>>,
}

impl ButtonService {
    async fn start(sim: &SimButton, led: SocketAddr, flags: &[&str]) -> ButtonService {
        let led_url = format!("--led-url=http://{led}");
        let sim_bus = (!flags.iter().any(|flag| flag.starts_with("--bus"))).then_some("--bus=sim");
        let args = ["button-service", led_url.as_str()]
            .into_iter()
            .chain(sim_bus);
        let ButtonCli { config, .. } = ButtonCli::parse_from(args.chain(flags.iter().copied()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let health_url = format!("http://{}/healthz", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let bus = match config.device.bus.to_string().as_str() {
            "sim" => Bus::Sim(sim.clone()),
            _ => config.device.bus.open().unwrap(), // a --bus among the flags
        };
        let service = Service::start(bus, &config.resolve().unwrap(), shutdown.clone()).unwrap();
        let (metrics, events) = (service.metrics().clone(), service.events().clone());
        let server = Background::new(shutdown.clone(), run(listener, service, shutdown));
        ButtonService {
            metrics,
            events,
            health_url,
            server,
        }
    }

    /// Waits until the button has been read once (its level is known).
    async fn wait_ready(&self) {
        let events = self.events.clone();
        wait_until("the first reading", Duration::from_secs(5), move || {
            events.level().is_some()
        })
        .await;
    }

    async fn health(&self) -> (u16, serde_json::Value) {
        let response = reqwest::get(&self.health_url).await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap(),
        )
    }

    async fn stop(self) {
        self.server.stop().await.unwrap();
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

/// Clicks for 40 ms and waits until the button service has seen the press and the release.
async fn click_and_wait(sim: &SimButton, button: &ButtonService) {
    let (events, metrics) = (button.events.clone(), button.metrics.clone());
    let seen = metrics.presses.get();
    sim.click(Duration::from_millis(40));
    wait_until("the click to be seen", Duration::from_secs(2), move || {
        metrics.presses.get() > seen && events.level() == Some(false)
    })
    .await;
}

/// The LED gives full light (the firmware shows a setting once it has saved it to EEPROM).
fn lit(sim: &SimButton) -> impl FnMut() -> bool + '_ {
    || sim.led_level() == 255
}

fn dark(sim: &SimButton) -> impl FnMut() -> bool + '_ {
    || sim.led_level() == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn press_lights_the_led_within_a_poll_period_and_release_switches_it_off() {
    let sim = SimButton::new();
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    let button = ButtonService::start(&sim, led.address, &["--poll-interval=20ms"]).await;
    button.wait_ready().await;

    for _ in 0..5 {
        let pressed_at = sim.now_ms();
        sim.press();
        wait_until("LED on", Duration::from_secs(2), lit(&sim)).await;
        let (lit_at, _) = *led_events(&sim).last().unwrap();
        // One poll period plus the HTTP hop, with a wide margin for a loaded CI machine (and
        // more under emulation).
        let bound = scaled(Duration::from_millis(20 + 100)).as_millis() as u64;
        assert!(
            lit_at - pressed_at <= bound,
            "press to LED took {} ms (bound {bound} ms)",
            lit_at - pressed_at
        );
        sim.release();
        wait_until("LED off", Duration::from_secs(2), dark(&sim)).await;
    }
    assert_eq!(button.metrics.presses.get(), 5);
    let metrics = button.metrics.clone();
    wait_until("every edge sent", Duration::from_secs(2), || {
        metrics.sends.get() >= 10
    })
    .await;
    assert_eq!(button.metrics.sends.get(), 10, "one request per edge");
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
async fn with_the_token_on_both_sides_presses_light_the_led_and_a_wrong_one_is_one_outage() {
    let sim = SimButton::new();
    let token = ["--api-token=s3cret"];
    let led = LedService::start_with(&sim, "127.0.0.1:0".parse().unwrap(), &token).await;
    let button = ButtonService::start(&sim, led.address, &["--api-token=s3cret"]).await;
    button.wait_ready().await;
    sim.press();
    wait_until("LED on", Duration::from_secs(2), lit(&sim)).await;
    sim.release();
    wait_until("LED off", Duration::from_secs(2), dark(&sim)).await;
    assert_eq!(button.metrics.send_failures.get(), 0);
    button.stop().await;

    // The wrong token: refused (401), one outage however many presses, the LED untouched.
    let writes_before = led_events(&sim).len();
    let wrong = ButtonService::start(&sim, led.address, &["--api-token=guess"]).await;
    wrong.wait_ready().await;
    for _ in 0..3 {
        click_and_wait(&sim, &wrong).await;
    }
    let metrics = wrong.metrics.clone();
    wait_until("refused sends", Duration::from_secs(5), || {
        metrics.send_failures.get() >= 2
    })
    .await;
    assert_eq!(wrong.metrics.outages.get(), 1, "one outage, logged once");
    assert_eq!(
        led_events(&sim).len(),
        writes_before,
        "no LED write for a refused press"
    );
    let text = reqwest::get(format!("http://{}/metrics", led.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused: f64 = text
        .lines()
        .filter(|line| line.contains("status=\"401\"") && line.contains("method=\"POST\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(refused >= 2.0, "401s in the LED service's metrics:\n{text}");
    wrong.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_tcp_bus_both_services_share_one_button_and_ride_out_a_simulator_restart() {
    // The simulator as its container serves it, restarted mid-run with nothing remembered.
    let first = SimButton::new();
    let mut server = SimServer::start(first.clone());
    let bus = format!("--bus={}", server.url());
    let led = LedService::start_with(&first, "127.0.0.1:0".parse().unwrap(), &[&bus]).await;
    let button = ButtonService::start(&first, led.address, &[&bus, "--poll-interval=20ms"]).await;
    button.wait_ready().await;
    first.press();
    wait_until("LED on", Duration::from_secs(2), lit(&first)).await;
    first.release();
    wait_until("LED off", Duration::from_secs(2), dark(&first)).await;

    let second = SimButton::new();
    server.restart(second.clone());
    second.press();
    wait_until(
        "LED on after the restart",
        Duration::from_secs(5),
        lit(&second),
    )
    .await;
    second.release();
    wait_until(
        "LED off after the restart",
        Duration::from_secs(2),
        dark(&second),
    )
    .await;
    let (status, body) = button.health().await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ok")),
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
    button.wait_ready().await;
    let before = led_events(&sim).len();
    sim.click(Duration::from_millis(30));
    wait_until("on then off", Duration::from_secs(5), || {
        led_events(&sim).len() >= before + 2
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
async fn a_led_set_by_hand_stays_set_until_the_next_press() {
    let sim = SimButton::new();
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    let button = ButtonService::start(&sim, led.address, &["--poll-interval=20ms"]).await;
    button.wait_ready().await;
    let response = reqwest::Client::new()
        .post(format!("http://{}/true", led.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(sim.led().brightness, 255);
    // Three checks of the LED service and a hundred polls later, the LED is still lit (the
    // original re-sent the button's state every second and switched it off within 85 ms).
    let (metrics, checks, polls) = (
        button.metrics.clone(),
        button.metrics.checks.get(),
        button.metrics.polls.get(),
    );
    wait_until("checks and polls", Duration::from_secs(10), || {
        metrics.checks.get() >= checks + 3 && metrics.polls.get() >= polls + 100
    })
    .await;
    assert_eq!(sim.led().brightness, 255, "the hand-set LED stays set");
    assert_eq!(button.metrics.sends.get(), 0, "nothing was sent");

    // A press still wins.
    sim.click(Duration::from_millis(60));
    wait_until(
        "the press to end with the LED dark",
        Duration::from_secs(2),
        || button.metrics.sends.get() == 2 && sim.led().brightness == 0,
    )
    .await;
    button.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_resend_interval_the_led_mirrors_the_button_strictly() {
    let sim = SimButton::new();
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    let button = ButtonService::start(
        &sim,
        led.address,
        &["--poll-interval=20ms", "--resend-interval=200ms"],
    )
    .await;
    button.wait_ready().await;
    reqwest::Client::new()
        .post(format!("http://{}/true", led.address))
        .send()
        .await
        .unwrap();
    wait_until(
        "the re-sent state to switch the LED off",
        Duration::from_secs(2),
        dark(&sim),
    )
    .await;
    // A period apart, not back to back: 5 more sends span at least 3 periods, however the
    // first one falls.
    let (metrics, sent, counting) = (
        button.metrics.clone(),
        button.metrics.sends.get(),
        Instant::now(),
    );
    wait_until("5 more re-sends", Duration::from_secs(10), || {
        metrics.sends.get() >= sent + 5
    })
    .await;
    assert!(
        counting.elapsed() >= Duration::from_millis(600),
        "5 re-sends in {:?} with a 200 ms interval",
        counting.elapsed()
    );
    button.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_led_service_down_at_start_gets_the_state_when_it_comes_up() {
    let sim = SimButton::new();
    let address = unused_address();
    let button = ButtonService::start(
        &sim,
        address,
        &["--poll-interval=20ms", "--request-timeout=200ms"],
    )
    .await;
    button.wait_ready().await;
    sim.press();
    let pressed = Instant::now();
    let metrics = button.metrics.clone();
    wait_until("failed sends", Duration::from_secs(5), || {
        metrics.send_failures.get() >= 4
    })
    .await;
    assert!(
        pressed.elapsed() >= Duration::from_millis(250),
        "4 attempts in {:?}: the retries must back off (50, 100, 200 ms, -20% at most)",
        pressed.elapsed()
    );
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
    wait_until("LED on", Duration::from_secs(5), lit(&sim)).await;
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
async fn an_led_service_restarted_mid_run_gets_the_state_again() {
    let sim = SimButton::new();
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    let address = led.address;
    let button = ButtonService::start(
        &sim,
        address,
        &["--poll-interval=20ms", "--request-timeout=200ms"],
    )
    .await;
    button.wait_ready().await;
    sim.press();
    wait_until("LED on", Duration::from_secs(5), lit(&sim)).await;

    led.stop().await; // switches the LED off on its way out
    assert_eq!(sim.led().brightness, 0);
    let metrics = button.metrics.clone();
    wait_until("the outage to be noticed", Duration::from_secs(5), || {
        metrics.outages.get() == 1
    })
    .await;

    let led = LedService::start(&sim, address).await;
    let up = Instant::now();
    wait_until("LED on again", Duration::from_secs(5), lit(&sim)).await;
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
    button.wait_ready().await;
    let started = Instant::now();
    sim.press();
    let metrics = button.metrics.clone();
    wait_until("two timed-out sends", Duration::from_secs(5), || {
        metrics.send_failures.get() >= 2
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout did not fire in time"
    );
    assert_eq!(button.metrics.outages.get(), 1);
    // Polling goes on regardless.
    let polls = button.metrics.polls.get();
    wait_until("more polls", Duration::from_secs(2), || {
        metrics.polls.get() > polls + 5
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
        button.wait_ready().await;
        sim.press();
        let metrics = button.metrics.clone();
        wait_until("failed sends", Duration::from_secs(5), || {
            metrics.send_failures.get() >= 2
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
async fn an_endless_error_body_is_read_only_as_far_as_the_log_needs() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    // A LED service that answers 500 with a body that never ends (one that answered 200 MB
    // took the button service to 681 MB): only the prefix the log shows is read.
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let router = Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            let chunks = futures_util::stream::repeat_with(move || {
                counter.fetch_add(65_536, Ordering::Relaxed);
                Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(vec![b'x'; 65_536]))
            });
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                axum::body::Body::from_stream(chunks),
            )
        }
    });
    let address = serve_router(router).await;
    let sim = SimButton::new();
    let button = ButtonService::start(&sim, address, &["--poll-interval=20ms"]).await;
    button.wait_ready().await;
    sim.press();
    let metrics = button.metrics.clone();
    wait_until("three failed sends", Duration::from_secs(10), || {
        metrics.send_failures.get() >= 3
    })
    .await;
    // What the server got out: the prefix, plus what the sockets' buffers took.
    let megabytes = sent.load(Ordering::Relaxed) / 1_000_000;
    assert!(
        megabytes < 32,
        "{megabytes} MB of the error body were taken in for three failed sends"
    );
    button.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_led_service_gets_the_latest_state_not_the_backlog() {
    let sim = SimButton::new();
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    // Every request to the LED service takes 300 ms on its way through this proxy.
    let target = led.address;
    let proxy = Router::new().fallback(move |request: axum::extract::Request| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let url = format!("http://{target}{}", request.uri().path());
        let response = reqwest::Client::new()
            .request(request.method().clone(), url)
            .send()
            .await
            .unwrap();
        (
            axum::http::StatusCode::from_u16(response.status().as_u16()).unwrap(),
            response.text().await.unwrap(),
        )
    });
    let address = serve_router(proxy).await;
    let button = ButtonService::start(
        &sim,
        address,
        &["--poll-interval=10ms", "--request-timeout=2s"],
    )
    .await;
    button.wait_ready().await;
    // 20 clicks in about 2 s: 40 edges, each POST taking 300 ms.
    for _ in 0..20 {
        click_and_wait(&sim, &button).await;
    }
    let metrics = button.metrics.clone();
    wait_until("the last state delivered", Duration::from_secs(5), || {
        metrics.sends.get() >= 2 && dark(&sim)()
    })
    .await;
    let sends = button.metrics.sends.get();
    assert!(
        sends <= 12,
        "{sends} requests for 40 edges: the backlog was replayed"
    );
    assert!(button.metrics.superseded.get() >= 20);
    button.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_listener_sees_every_press_and_release_in_order() {
    let sim = SimButton::new();
    let button = ButtonService::start(&sim, unused_address(), &["--poll-interval=10ms"]).await;
    let mut listener = button.events.subscribe();
    button.wait_ready().await;
    for _ in 0..3 {
        click_and_wait(&sim, &button).await;
    }
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let Received::Event(event) = listener.recv().await else {
            panic!("events only");
        };
        seen.push((event.kind, event.seq));
    }
    use EventKind::{Pressed, Released};
    assert_eq!(
        seen,
        [
            (Pressed, 1),
            (Released, 2),
            (Pressed, 3),
            (Released, 4),
            (Pressed, 5),
            (Released, 6)
        ]
    );
    button.stop().await;
}

/// Presses and releases `presses` times, each held 60 ms, waiting for the LED to follow; then
/// checks that the LED saw exactly on, off, on, off, ... and the service counted each press once.
async fn presses_reach_the_led_exactly(sim: &SimButton, button: &ButtonService, presses: u64) {
    let before = led_events(sim).len();
    presses_reach_the_led(sim, button, presses).await;
    let seen: Vec<u8> = led_events(sim)[before..].iter().map(|(_, b)| *b).collect();
    let expected: Vec<u8> = (0..presses).flat_map(|_| [255, 0]).collect();
    assert_eq!(seen, expected, "the LED followed each press exactly once");
}

/// Presses and releases `presses` times, each held 60 ms, waiting (5 s at most) for the LED to
/// follow each.
async fn press_and_release(sim: &SimButton, presses: u64) {
    for _ in 0..presses {
        sim.press();
        wait_until("LED on", Duration::from_secs(5), lit(sim)).await;
        tokio::time::sleep(Duration::from_millis(60)).await; // how long a person holds it
        sim.release();
        wait_until("LED off", Duration::from_secs(5), dark(sim)).await;
        tokio::time::sleep(Duration::from_millis(30)).await; // and before the next press
    }
}

/// With the INT line and a heartbeat far longer than every wait: each press and release
/// reaches the LED because INT changed, exactly once each.
async fn presses_reach_the_led_by_int(sim: &SimButton, button: &ButtonService, presses: u64) {
    let (before, counted) = (led_events(sim).len(), button.metrics.presses.get());
    press_and_release(sim, presses).await;
    let seen: Vec<u8> = led_events(sim)[before..].iter().map(|(_, b)| *b).collect();
    let expected: Vec<u8> = (0..presses).flat_map(|_| [255, 0]).collect();
    assert_eq!(seen, expected, "the LED followed each press exactly once");
    assert_eq!(button.metrics.presses.get() - counted, presses);
}

/// Presses and releases `presses` times, each held 60 ms, waiting for the LED to follow; then
/// checks that the service counted each press once: no phantom, none lost. (Where writes are
/// corrupted the LED may show a wrong setting for the moment before led-service writes it
/// again.)
async fn presses_reach_the_led(sim: &SimButton, button: &ButtonService, presses: u64) {
    let counted = button.metrics.presses.get();
    press_and_release(sim, presses).await;
    // A phantom would come from what the last release left behind: ten more polls read it.
    let polls = button.metrics.polls.get();
    let metrics = button.metrics.clone();
    wait_until("ten more polls", Duration::from_secs(5), || {
        metrics.polls.get() >= polls + 10
    })
    .await;
    assert_eq!(
        button.metrics.presses.get() - counted,
        presses,
        "no phantom press, none lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_5_and_30_percent_of_reads_and_writes_corrupted_every_press_arrives_and_no_phantom() {
    for rate in [0.30, 0.05] {
        let sim = SimButton::new();
        let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
        let button = ButtonService::start(&sim, led.address, &["--poll-interval=20ms"]).await;
        button.wait_ready().await;
        sim.set_corrupt_rate(rate).unwrap();
        sim.set_write_corrupt_rate(rate).unwrap();
        presses_reach_the_led(&sim, &button, 20).await;
        let rejected = button.metrics.bus.rejected_readings.get();
        let stats = sim.stats();
        eprintln!(
            "figure: {:.0}% corrupted reads and writes: {} reads and {} writes corrupted, {rejected} readings rejected by button-service, no phantom, none lost",
            rate * 100.0,
            stats.corrupted_reads,
            stats.corrupted_writes
        );
        assert!(stats.corrupted_reads > 0, "the fault was active");
        button.stop().await;
        led.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_that_bounces_once_more_after_every_lockout_is_one_press_per_press() {
    let sim = SimButton::new();
    sim.set_late_bounce_rate(1.0).unwrap();
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    let button = ButtonService::start(&sim, led.address, &["--poll-interval=20ms"]).await;
    button.wait_ready().await;
    presses_reach_the_led_exactly(&sim, &button, 15).await;
    button.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bouncing_switch_is_one_press_per_press() {
    let sim = SimButton::new();
    sim.set_bounce(Duration::from_millis(6));
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    // Polling every 2 ms reads the raw pin inside the bounce window again and again.
    let button = ButtonService::start(&sim, led.address, &["--poll-interval=2ms"]).await;
    button.wait_ready().await;
    presses_reach_the_led_exactly(&sim, &button, 15).await;
    button.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_button_is_reported_and_recovers_without_a_restart() {
    let sim = SimButton::new();
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    let button = ButtonService::start(&sim, led.address, &["--poll-interval=20ms"]).await;
    button.wait_ready().await;
    sim.unplug();
    let errors = button.metrics.poll_errors.get();
    let metrics = button.metrics.clone();
    wait_until("poll errors", Duration::from_secs(5), || {
        metrics.poll_errors.get() > errors + 2
    })
    .await;
    // The service serves on: healthy, saying the button is missing.
    let (status, body) = button.health().await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(
        body["button"]
            .as_str()
            .unwrap()
            .contains("no Qwiic Button answers at 0x6f on sim"),
        "{body}"
    );

    sim.replug();
    sim.press();
    wait_until("LED on after replug", Duration::from_secs(5), lit(&sim)).await;
    let (status, body) = button.health().await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    button.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_button_at_another_address_is_reported() {
    let sim = SimButton::new();
    let button = ButtonService::start(&sim, unused_address(), &["--address=0x22"]).await;
    let metrics = button.metrics.clone();
    wait_until("a poll error", Duration::from_secs(5), || {
        metrics.poll_errors.get() >= 1
    })
    .await;
    let (status, body) = button.health().await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(body["button"].as_str().unwrap().contains("0x22"), "{body}");
    button.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_polls_sends_and_the_last_send_age() {
    let sim = SimButton::new();
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    let button = ButtonService::start(&sim, led.address, &["--poll-interval=20ms"]).await;
    button.wait_ready().await;
    sim.press();
    let metrics = button.metrics.clone();
    wait_until("a send", Duration::from_secs(5), || {
        metrics.sends.get() >= 1
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
        "button_service_sends_total 1",
        "button_service_send_failures_total 0",
        "button_service_outages_total 0",
        "button_service_checks_total",
        "button_service_superseded_total 0",
        "button_service_i2c_transactions_total",
        "button_service_last_successful_send_age_milliseconds",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    button.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_button_unplugged_the_bus_rests_at_about_one_transaction_a_second() {
    let sim = SimButton::new();
    let led = LedService::start(&sim, "127.0.0.1:0".parse().unwrap()).await;
    let button = ButtonService::start(&sim, led.address, &["--poll-interval=20ms"]).await;
    button.wait_ready().await;
    sim.unplug();
    // Both services notice; then the bus is watched for a few seconds.
    let metrics = button.metrics.clone();
    wait_until("the poller noticed", Duration::from_secs(5), || {
        metrics.poll_errors.get() > 0
    })
    .await;
    // The pauses between looks grow to a second within two seconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (before, started) = (sim.stats().transactions, std::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(4)).await; // the window the rate is measured over
    let transactions = sim.stats().transactions - before;
    let seconds = started.elapsed().as_secs_f64();
    let rate = transactions as f64 / seconds;
    eprintln!(
        "figure: {rate:.2} bus transactions a second with the button unplugged (both services)"
    );
    assert!(rate <= 2.0, "{transactions} transactions in {seconds:.1} s");
    button.stop().await;
    led.stop().await;
}

/// The simulator's bus and INT line served as its container serves them, both services on it,
/// button-service reading the button when INT changes (its heartbeat far beyond every wait
/// here, so that only INT can be what read it).
async fn on_the_int_line(sim: &SimButton) -> (SimServer, LedService, ButtonService) {
    let server = SimServer::start(sim.clone());
    let bus = format!("--bus={}", server.url());
    let led = LedService::start_with(sim, "127.0.0.1:0".parse().unwrap(), &[&bus]).await;
    let flags = [bus.as_str(), "--int-gpio=simulator", "--int-heartbeat=60s"];
    let button = ButtonService::start(sim, led.address, &flags).await;
    button.wait_ready().await;
    (server, led, button)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_int_line_every_press_and_release_is_read_when_int_changes() {
    let sim = SimButton::new();
    let (_server, led, button) = on_the_int_line(&sim).await;
    presses_reach_the_led_by_int(&sim, &button, 10).await;
    // A click shorter than any poll period is a press and a release too.
    let before = led_events(&sim).len();
    sim.click(Duration::from_millis(30));
    wait_until("on then off", Duration::from_secs(5), || {
        led_events(&sim).len() >= before + 2
    })
    .await;
    let seen: Vec<u8> = led_events(&sim)[before..].iter().map(|(_, b)| *b).collect();
    assert_eq!(seen, [255, 0]);
    button.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_int_line_the_interrupt_enables_are_written_when_the_button_holds_others() {
    let sim = SimButton::new();
    let mut driver = qwiic_button::QwiicButton::new(sim.clone(), qwiic_button::Address::DEFAULT);
    driver
        .set_interrupt_config(qwiic_button::InterruptConfig::default())
        .unwrap();
    wait_until("the enables saved off", Duration::from_secs(2), || {
        sim.settings().interrupt_config == 0
    })
    .await;
    let (_server, led, button) = on_the_int_line(&sim).await;
    wait_until(
        "the pressed interrupt saved on",
        Duration::from_secs(5),
        || sim.settings().interrupt_config == 0b10,
    )
    .await;
    presses_reach_the_led_by_int(&sim, &button, 2).await;
    button.stop().await;
    led.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_int_line_a_simulator_restart_is_ridden_out() {
    let first = SimButton::new();
    let (mut server, led, button) = on_the_int_line(&first).await;
    presses_reach_the_led_by_int(&first, &button, 1).await;
    let second = SimButton::new();
    server.restart(second.clone());
    presses_reach_the_led_by_int(&second, &button, 3).await;
    button.stop().await;
    led.stop().await;
}
