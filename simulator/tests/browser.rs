//! The page in a real headless browser (Debian's chromium, driven over the DevTools protocol):
//! holding the page's button shows up in the device's status register over TCP, and an LED
//! write over TCP shows up on the page. Screenshots are kept in target/artifacts/.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use qwiic_bus::{TcpBus, TcpTimeouts};
use qwiic_button::{Address, LedConfig, QwiicButton};
use qwiic_sim::SimButton;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

struct Browser {
    child: Child,
    _profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromium on `url` and returns it with its DevTools port.
fn launch(url: &str) -> (Browser, u16) {
    let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = std::env::temp_dir().join(format!("qwiic-browser-{}", std::process::id()));
    let mut child = Command::new(&binary)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--remote-debugging-port=0",
            "--window-size=412,860",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("cannot start {binary} ({error}): install Debian's chromium or set CHROMIUM")
        });
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut port = None;
    for line in stderr.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("DevTools listening on ws://127.0.0.1:") {
            port = rest.split('/').next().and_then(|p| p.parse().ok());
            break;
        }
    }
    let port = port.expect("chromium did not print its DevTools address");
    // Keep draining its log, or chromium blocks on a full pipe.
    std::thread::spawn(move || stderr.for_each(drop));
    (
        Browser {
            child,
            _profile: profile,
        },
        port,
    )
}

struct Page {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Page {
    fn connect(port: u16, url: &str) -> Page {
        let until = Instant::now() + Duration::from_secs(20);
        let url = loop {
            let list: Value = ureq_get(port, "/json/list");
            if let Some(url) = list
                .as_array()
                .and_then(|targets| {
                    targets.iter().find(|t| {
                        t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url))
                    })
                })
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            {
                break url.to_owned();
            }
            assert!(Instant::now() < until, "no page target");
            std::thread::sleep(Duration::from_millis(50));
        };
        let (socket, _) = tungstenite::connect(url).unwrap();
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
        }
        Page { socket, next_id: 1 }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(message)).unwrap();
        loop {
            let reply = self.socket.read().unwrap();
            let Message::Text(text) = reply else { continue };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["id"] == id {
                assert!(value["error"].is_null(), "{method}: {value}");
                return value["result"].clone();
            }
        }
    }

    fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        result["result"]["value"].clone()
    }

    fn wait_for(&mut self, what: &str, expression: &str) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.eval(expression) != json!(true) {
            if Instant::now() > until {
                let text = self.eval("document.querySelector('main').innerText");
                panic!("timed out waiting for {what}; the page shows:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn mouse(&mut self, kind: &str, x: f64, y: f64) {
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": if kind == "mousePressed" { 1 } else { 0 }, "clickCount": 1}),
        );
    }

    fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

/// A bare HTTP GET of the DevTools JSON endpoints.
fn ureq_get(port: u16, path: &str) -> Value {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return Value::Null;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .unwrap();
    // Chromium keeps the connection open: read until the body parses as JSON.
    let mut response = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let Ok(read) = stream.read(&mut chunk) else {
            return Value::Null;
        };
        if read == 0 {
            return Value::Null;
        }
        response.extend_from_slice(&chunk[..read]);
        let text = String::from_utf8_lossy(&response);
        if let Some(body) = text.split("\r\n\r\n").nth(1) {
            if let Ok(value) = serde_json::from_str(body) {
                return value;
            }
        }
    }
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

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
    let (_browser, devtools) = launch(&url);
    let mut page = Page::connect(devtools, &url);
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
    let rect =
        page.eval("JSON.stringify(document.getElementById('button').getBoundingClientRect())");
    let rect: Value = serde_json::from_str(rect.as_str().unwrap()).unwrap();
    let (x, y) = (
        rect["x"].as_f64().unwrap() + rect["width"].as_f64().unwrap() / 2.0,
        rect["y"].as_f64().unwrap() + rect["height"].as_f64().unwrap() / 2.0,
    );
    page.mouse("mouseMoved", x, y);
    page.mouse("mousePressed", x, y);
    wait_until("the device to be pressed", || {
        button.status().unwrap().is_pressed
    });
    page.wait_for(
        "the page to show it held",
        "document.getElementById('held').textContent === 'held'",
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
    let phone = page.screenshot("simulator-page-phone.png");

    page.mouse("mouseReleased", x, y);
    wait_until("the device to be released", || {
        !button.status().unwrap().is_pressed
    });

    // The keyboard works too: hold Space on the focused button.
    page.eval("document.getElementById('button').focus()");
    page.call(
        "Input.dispatchKeyEvent",
        json!({"type": "keyDown", "key": " ", "code": "Space", "windowsVirtualKeyCode": 32}),
    );
    wait_until("a keyboard press", || sim.is_held());
    page.call(
        "Input.dispatchKeyEvent",
        json!({"type": "keyUp", "key": " ", "code": "Space", "windowsVirtualKeyCode": 32}),
    );
    wait_until("a keyboard release", || !sim.is_held());

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
    let desktop = page.screenshot("simulator-page-desktop.png");
    for shot in [phone, desktop] {
        assert!(
            std::fs::metadata(&shot).unwrap().len() > 5_000,
            "{} looks empty",
            shot.display()
        );
    }
}
