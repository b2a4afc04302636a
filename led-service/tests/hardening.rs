//! What a peer on the LAN, a browser tab or a flood could do to the service, each reproduced
//! against the real server on a socket: none of it grows memory or wear without bound, and the
//! health check keeps answering.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser as _;
use led_service::Limits;
use led_service::config::Cli;
use led_service::limits::REQUEST_TIMEOUT;
use led_service::{AppState, run};
use qwiic_bus::Bus;
use qwiic_sim::SimButton;
use service_kit::http;
use test_kit::Background;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

struct Service {
    address: SocketAddr,
    sim: SimButton,
    metrics: led_service::metrics::Metrics,
    _server: Background<std::io::Result<()>>,
}

async fn start(limits: Limits) -> Service {
    start_with(limits, &[]).await
}

/// [`start`] with more flags.
async fn start_with(limits: Limits, flags: &[&str]) -> Service {
    let sim = SimButton::new();
    let args = ["led-service", "--bus=sim"]
        .into_iter()
        .chain(flags.iter().copied());
    let Cli { config, .. } = Cli::parse_from(args);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let bus = Bus::Sim(sim.clone());
    let shutdown = service_kit::CancellationToken::new();
    let mut settings = config.resolve().unwrap();
    settings.limits = limits;
    let state = AppState::start(bus, &settings, shutdown.clone()).unwrap();
    let metrics = state.metrics.clone();
    let server = Background::new(shutdown.clone(), run(listener, state, shutdown));
    Service {
        address,
        sim,
        metrics,
        _server: server,
    }
}

fn url(service: &Service, path: &str) -> String {
    format!("http://{}{path}", service.address)
}

/// A connection from another loopback address than the container's own health check uses.
async fn connect_from_the_network(address: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    socket.connect(address).await.unwrap()
}

/// A `PUT /led` from the network that announces a 100-byte body and sends one byte of it.
async fn put_a_body_that_stalls(address: SocketAddr) -> TcpStream {
    let mut stream = connect_from_the_network(address).await;
    stream
        .write_all(b"PUT /led HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    stream
}

/// The first bytes the server answers within `within`, and how long they took.
async fn first_answer(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut answer = [0; 1024];
    let read = tokio::time::timeout(within, stream.read(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("no answer within {within:?}"))
        .unwrap();
    (
        String::from_utf8_lossy(&answer[..read]).into_owned(),
        started.elapsed(),
    )
}

/// Reads until the server closes the connection; the bytes it sent, and how long it took.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .unwrap_or_else(|_| panic!("the server kept the connection open for {within:?}"))
        .unwrap_or_default();
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn invented_methods_are_counted_as_other_so_metrics_stay_small() {
    let service = start(Limits::default()).await;
    let client = reqwest::Client::new();
    let size = || async {
        client
            .get(url(&service, "/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    client.post(url(&service, "/true")).send().await.unwrap();
    let before = size().await.len();
    for n in 0..200 {
        let method = reqwest::Method::from_bytes(format!("M{n}").as_bytes()).unwrap();
        client
            .request(method, url(&service, "/true"))
            .send()
            .await
            .unwrap();
    }
    let after = size().await;
    assert!(after.contains(r#"method="OTHER""#), "{after}");
    let growth = after.len() - before;
    assert!(
        growth < 2000,
        "/metrics grew by {growth} bytes for 200 invented methods"
    );
}

#[tokio::test]
async fn a_flood_of_alternating_requests_costs_a_handful_of_eeprom_writes() {
    let service = start(Limits::default()).await;
    let client = reqwest::Client::new();
    let requests = (0..100).flat_map(|_| ["/true", "/false"]).map(|path| {
        let request = client.post(url(&service, path));
        async move { request.send().await.unwrap().status() }
    });
    let started = Instant::now();
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    let stats = service.sim.stats();
    eprintln!(
        "figure: 100 pairs of /true and /false in {:?}: {} LED writes, {} EEPROM bytes",
        started.elapsed(),
        stats.led_writes,
        stats.eeprom_byte_writes
    );
    // At most one write per window, whatever the flood (under emulation it lasts seconds).
    let elapsed = started.elapsed();
    let allowed = 2 + (elapsed.as_millis() / led_service::led::COALESCE_WINDOW.as_millis()) as u64;
    assert!(
        stats.led_writes <= allowed,
        "{} LED writes in {elapsed:?}: more than one per window",
        stats.led_writes
    );
    assert!(stats.eeprom_byte_writes <= stats.led_writes);
    assert!(service.metrics.led_writes_coalesced.get() >= 150);
}

#[tokio::test]
async fn cross_site_browser_requests_may_not_change_the_led() {
    let service = start(Limits::default()).await;
    let client = reqwest::Client::new();
    let host = service.address.to_string();
    for (header, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        for request in [
            client.post(url(&service, "/true")),
            client
                .put(url(&service, "/led"))
                .header("content-type", "application/json")
                .body(r#"{"on": true}"#),
        ] {
            let response = request.header(header, value).send().await.unwrap();
            assert_eq!(response.status(), 403, "{header}: {value}");
            let body: serde_json::Value = response.json().await.unwrap();
            assert!(
                body["error"].as_str().unwrap().contains("cross-site"),
                "{body}"
            );
        }
        assert_eq!(service.sim.led().brightness, 0, "{header}: {value}");
    }
    // The page itself, a person typing the URL, and clients that are not browsers.
    for (header, value) in [
        ("origin", format!("http://{host}")),
        ("sec-fetch-site", "same-origin".to_owned()),
        ("sec-fetch-site", "none".to_owned()),
        ("user-agent", "curl/8".to_owned()),
    ] {
        let response = client
            .post(url(&service, "/true"))
            .header(header, value.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{header}: {value}");
    }
}

#[tokio::test]
async fn a_request_head_that_never_ends_is_cut_off_at_the_deadline() {
    let service = start(Limits {
        http: http::Limits {
            header_read: Duration::from_millis(300),
            ..http::Limits::default()
        },
        ..Limits::default()
    })
    .await;
    let mut partial = connect_from_the_network(service.address).await;
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let (_, took) = read_until_closed(&mut partial, Duration::from_secs(5)).await;
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_head_deadline() {
    let service = start(Limits {
        http: http::Limits {
            header_read: Duration::from_millis(300),
            ..http::Limits::default()
        },
        ..Limits::default()
    })
    .await;
    let mut idle = connect_from_the_network(service.address).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (answer, took) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    // One that never sends anything at all is closed too.
    let mut silent = connect_from_the_network(service.address).await;
    let (answer, _) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(answer.is_empty(), "{answer}");
}

#[tokio::test]
async fn a_connection_in_use_outlives_the_head_deadline_and_closes_that_long_after_its_last_request()
 {
    let idle = Duration::from_millis(300);
    let service = start(Limits {
        http: http::Limits {
            header_read: idle,
            ..http::Limits::default()
        },
        ..Limits::default()
    })
    .await;
    let mut connection = connect_from_the_network(service.address).await;
    let started = Instant::now();
    let mut last_request = started;
    // A request every 100 ms for twice the deadline, all on the one connection.
    while started.elapsed() < 2 * idle {
        connection
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        last_request = Instant::now();
        let mut answer = [0; 1024];
        let read = connection.read(&mut answer).await.unwrap();
        assert!(
            answer[..read].starts_with(b"HTTP/1.1 200"),
            "after {:?}: {}",
            started.elapsed(),
            String::from_utf8_lossy(&answer[..read])
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, _) = read_until_closed(&mut connection, Duration::from_secs(5)).await;
    let quiet = last_request.elapsed();
    assert!(
        quiet >= idle - Duration::from_millis(50),
        "closed {quiet:?} after the last request"
    );
}

#[tokio::test]
async fn connections_over_the_cap_get_a_503_and_the_local_health_check_still_answers() {
    let service = start(Limits {
        http: http::Limits {
            connections: 4,
            local_reserve: 2,
            ..http::Limits::default()
        },
        ..Limits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from_the_network(service.address).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    // Wait until the server has taken all four: then the fifth is over the cap.
    let mut over = connect_from_the_network(service.address).await;
    let (answer, _) = read_until_closed(&mut over, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    let health = reqwest::get(url(&service, "/healthz")).await.unwrap();
    assert_eq!(health.status(), 200, "127.0.0.1 has slots of its own");
    drop(held);
}

#[tokio::test]
async fn more_than_64_event_streams_get_a_503_with_retry_after() {
    let service = start(Limits::default()).await;
    let client = reqwest::Client::new();
    let mut streams = Vec::new();
    for _ in 0..64 {
        let stream = client.get(url(&service, "/events")).send().await.unwrap();
        assert_eq!(stream.status(), 200);
        streams.push(stream);
    }
    let refused = client.get(url(&service, "/events")).send().await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(service.metrics.event_streams.get(), 64);
    drop(streams);
}

#[tokio::test]
async fn health_answers_at_once_while_stalled_bodies_fill_every_request_slot() {
    let service = start(Limits {
        requests: 20,
        ..Limits::default()
    })
    .await;
    // The button is found before the flood.
    let health: serde_json::Value = reqwest::get(url(&service, "/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    let mut stalled = Vec::new();
    for _ in 0..30 {
        stalled.push(put_a_body_that_stalls(service.address).await);
    }
    // The slots fill: a further API request is refused at once rather than queued.
    let client = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let response = client.post(url(&service, "/true")).send().await.unwrap();
        if response.status() == 503 {
            assert_eq!(response.headers()["retry-after"], "1");
            break;
        }
        assert!(
            Instant::now() < until,
            "the stalled bodies never filled the slots"
        );
    }
    let started = Instant::now();
    let health = client.get(url(&service, "/healthz")).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(health.status(), 200);
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    // The slots come back when the stalled requests end.
    drop(stalled);
    let until = Instant::now() + Duration::from_secs(5);
    while client
        .post(url(&service, "/true"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(
            Instant::now() < until,
            "the slots were not given back when the stalled requests ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_body_that_stalls_past_the_servers_stall_limit_is_a_400_that_says_so_not_a_413() {
    let service = start(Limits {
        http: http::Limits {
            body_stall: Duration::from_millis(300),
            ..http::Limits::default()
        },
        ..Limits::default()
    })
    .await;
    let mut stalled = put_a_body_that_stalls(service.address).await;
    // Before the request deadline.
    let (answer, _) = first_answer(&mut stalled, REQUEST_TIMEOUT).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("data was not received within the designated timeout"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_408_at_the_request_deadline() {
    let service = start(Limits::default()).await;
    let mut stalled = put_a_body_that_stalls(service.address).await;
    let (answer, took) = first_answer(&mut stalled, 2 * REQUEST_TIMEOUT).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        took >= REQUEST_TIMEOUT - Duration::from_millis(100),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn a_lowercase_bearer_scheme_is_accepted_and_a_huge_announced_body_is_refused_at_once() {
    let sim = SimButton::new();
    let Cli { config, .. } = Cli::parse_from(["led-service", "--bus=sim", "--api-token=s3cret"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let _server = Background::spawn(|shutdown| {
        let state = AppState::start(
            Bus::Sim(sim.clone()),
            &config.resolve().unwrap(),
            shutdown.clone(),
        )
        .unwrap();
        run(listener, state, shutdown)
    });
    let client = reqwest::Client::new();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let response = client
            .post(format!("http://{address}/true"))
            .header("authorization", format!("{scheme} s3cret"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
    let mut huge = TcpStream::connect(address).await.unwrap();
    huge.write_all(b"PUT /led HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = vec![0; 512];
    let read = tokio::time::timeout(Duration::from_secs(2), huge.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_request_by_a_name_the_service_does_not_answer_to_is_refused_with_421() {
    let service = start(Limits::default()).await;
    let client = reqwest::Client::new();
    let port = service.address.port();
    // DNS rebinding: the attacker's name now points at the device, and its page is
    // same-origin with it as far as the browser knows.
    for (method, path) in [("POST", "/true"), ("GET", "/led"), ("GET", "/metrics")] {
        let response = client
            .request(method.parse().unwrap(), url(&service, path))
            .header("host", format!("rebind.attacker.example:{port}"))
            .header("origin", format!("http://rebind.attacker.example:{port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 421, "{method} {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains("rebind.attacker.example") && error.contains("ALLOWED_HOSTS"),
            "{error}"
        );
    }
    assert_eq!(service.sim.led().brightness, 0, "nothing changed");
    // Addresses, localhost and this machine's own name are answered.
    let own = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for host in [
        format!("192.168.1.7:{port}"),
        format!("[fe80::7]:{port}"),
        format!("localhost:{port}"),
        format!("{}:{port}", own.trim()),
    ] {
        let response = client
            .get(url(&service, "/healthz"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{host}");
    }
}

#[tokio::test]
async fn the_page_may_not_be_framed_by_another_site() {
    let service = start(Limits::default()).await;
    let page = reqwest::get(url(&service, "/")).await.unwrap();
    assert_eq!(
        page.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
}

/// A client whose every request comes from `source`, another peer on the network, on a
/// connection of its own (as a probe or a curl does).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

#[tokio::test]
async fn one_host_holding_every_connection_it_can_leaves_the_others_served() {
    let service = start(Limits::default()).await;
    let address = service.address;
    // 127.0.0.2 opens partial heads, keeps them, and goes on opening more.
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut stream = connect_from_the_network(address).await;
        if stream.write_all(b"GET /healthz HTTP/1.1\r\n").await.is_ok() {
            held.push(stream);
        }
    }
    let attack = tokio::spawn(async move {
        loop {
            let mut stream = connect_from_the_network(address).await;
            let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\n").await;
            tokio::task::yield_now().await;
        }
    });
    // Meanwhile another peer (button-service, a person, a probe) asks 50 times, each time on
    // a new connection.
    let other = client_from("127.0.0.3");
    let mut served = 0;
    for _ in 0..50 {
        let response = other.get(url(&service, "/healthz")).send().await.unwrap();
        served += usize::from(response.status() == 200);
    }
    attack.abort();
    eprintln!("figure: another peer served {served} of 50 while one host held all it could");
    assert_eq!(served, 50);
    drop(held);
}

/// POSTs `/true` or `/false` as a client of its own would; the status.
async fn switch(client: &reqwest::Client, service: &Service, on: bool) -> u16 {
    let path = if on { "/true" } else { "/false" };
    let response = client.post(url(service, path)).send().await.unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_never_starve_changes_on_a_slow_bus() {
    let service = start(Limits::default()).await;
    // A real 100 kHz transaction takes about a millisecond.
    service.sim.set_delay(Duration::from_millis(1));
    let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = (0..64)
        .map(|_| {
            let (url, read) = (url(&service, "/led"), read.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                loop {
                    let _ = client.get(&url).send().await;
                    read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        })
        .collect();
    // The readers are all at it before the changes come.
    let until = Instant::now() + Duration::from_secs(10);
    while read.load(std::sync::atomic::Ordering::Relaxed) < 256 {
        assert!(Instant::now() < until, "the readers never got going");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Six changes at once: the first is written at once, the others are held for the end of
    // its window and merged, while the readers keep asking.
    let changes: Vec<_> = (0..6)
        .map(|change| {
            let url = url(&service, if change % 2 == 0 { "/true" } else { "/false" });
            tokio::spawn(async move {
                let response = reqwest::Client::new().post(&url).send().await.unwrap();
                response.status().as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for change in changes {
        statuses.push(change.await.unwrap());
    }
    for reader in readers {
        reader.abort();
    }
    assert_eq!(statuses, [200; 6], "LED changes among 64 readers");
}

#[tokio::test]
async fn a_change_whose_caller_was_answered_504_is_never_written() {
    let service = start_with(Limits::default(), &["--bus-timeout=200ms"]).await;
    let client = reqwest::Client::new();
    assert_eq!(
        switch(&client, &service, false).await,
        200,
        "the button found"
    );
    // Once what the service knows of the LED is older than a second, a change reads the LED
    // first; every transaction now takes longer than a caller waits, so that read outlasts
    // the caller's deadline.
    tokio::time::sleep(qwiic_bus::FRESH + Duration::from_millis(100)).await;
    service.sim.set_delay(Duration::from_millis(300));
    assert_eq!(switch(&client, &service, true).await, 504);
    // The owner finishes what it started (the read), then must not write.
    let until = Instant::now() + Duration::from_secs(5);
    while service.metrics.led_writes_abandoned.get() == 0 {
        assert!(
            Instant::now() < until,
            "the abandoned change was never dropped: {} LED writes, LED {:?}",
            service.sim.stats().led_writes,
            service.sim.led(),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        service.sim.led().brightness,
        0,
        "nothing written after the 504"
    );
    assert_eq!(service.sim.stats().led_writes, 0, "no LED write at all");
}

#[tokio::test]
async fn a_sustained_flood_is_held_to_the_wear_budget_and_told_when_to_retry() {
    let service = start(Limits {
        wear: led_service::limits::WearBudget {
            burst: 3,
            per_second: 5.0,
        },
        ..Limits::default()
    })
    .await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let (mut refused, mut retry_after) = (0, None);
    let mut on = true;
    while started.elapsed() < Duration::from_secs(2) {
        let path = if on { "/true" } else { "/false" };
        let response = client.post(url(&service, path)).send().await.unwrap();
        if response.status() == 429 {
            refused += 1;
            retry_after = response.headers().get("retry-after").cloned();
            let body: serde_json::Value = response.json().await.unwrap();
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .contains("wears the button's EEPROM"),
                "{body}"
            );
        }
        on = !on;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let writes = service.sim.stats().led_writes;
    eprintln!(
        "figure: a flood of {elapsed:.1} s wrote the LED {writes} times with a burst of 3 and 5 a second ({refused} refused)"
    );
    assert!(refused > 0, "nothing was refused");
    assert_eq!(retry_after.unwrap(), "1");
    assert!(
        (writes as f64) <= 3.0 + 5.0 * elapsed + 1.0,
        "{writes} writes in {elapsed:.1} s"
    );
    assert_eq!(service.metrics.led_writes_refused.get(), refused);
}
