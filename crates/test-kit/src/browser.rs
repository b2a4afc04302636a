//! A real headless browser for the pages' tests: Debian's chromium, driven
//! over the DevTools protocol. Panics are the point here: a failed step is a failed test.
//!
//! ```no_run
//! # use test_kit::browser::Browser;
//! let browser = Browser::launch("http://127.0.0.1:8080/");
//! let mut page = browser.page("http://127.0.0.1:8080/");
//! page.wait_for("the LED", "document.getElementById('state').textContent === 'off'");
//! page.click("#on");
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

/// How long a page gets for anything it is waited for.
const PATIENCE: Duration = Duration::from_secs(10);

/// A headless chromium (`$CHROMIUM`, else `chromium`) with its own profile; killed on drop.
pub struct Browser {
    child: Child,
    devtools_port: u16,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Starts chromium on `url`, 412 by 860 pixels (a phone).
    pub fn launch(url: &str) -> Browser {
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = std::env::temp_dir().join(format!(
            "qwiic-browser-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        let mut child = Command::new(&binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--no-zygote",
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
                panic!(
                    "cannot start {binary} ({error}): install Debian's chromium (scripts/test-deps) or set CHROMIUM"
                )
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
        let devtools_port = port.expect("chromium did not print its DevTools address");
        // Keep draining its log, or chromium blocks on a full pipe.
        std::thread::spawn(move || stderr.for_each(drop));
        Browser {
            child,
            devtools_port,
            profile,
        }
    }

    /// The open page whose address starts with `url`.
    pub fn page(&self, url: &str) -> Page {
        let until = Instant::now() + Duration::from_secs(20);
        let socket_url = loop {
            let list = devtools_get(self.devtools_port, "/json/list");
            if let Some(found) = list
                .as_array()
                .and_then(|targets| {
                    targets.iter().find(|t| {
                        t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(url))
                    })
                })
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            {
                break found.to_owned();
            }
            assert!(Instant::now() < until, "no page target for {url}");
            std::thread::sleep(Duration::from_millis(50));
        };
        let (socket, _) = tungstenite::connect(socket_url).unwrap();
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
        }
        Page {
            socket,
            next_id: 1,
            events: VecDeque::new(),
        }
    }
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos())
}

/// One page, over its DevTools WebSocket.
pub struct Page {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Events that arrived while a call waited for its reply.
    events: VecDeque<Value>,
}

impl Page {
    /// Calls a DevTools method; its result. Events that arrive meanwhile are kept for
    /// [`Page::event`].
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(message)).unwrap();
        loop {
            let value = self.read();
            if value["id"] == id {
                assert!(value["error"].is_null(), "{method}: {value}");
                return value["result"].clone();
            }
            if value.get("method").is_some() {
                self.events.push_back(value);
            }
        }
    }

    /// The next event `method` (such as `Page.javascriptDialogOpening`): its parameters.
    /// Its domain must be enabled first (`Page.enable`).
    pub fn event(&mut self, method: &str) -> Value {
        if let Some(at) = self
            .events
            .iter()
            .position(|event| event["method"] == method)
        {
            return self.events.remove(at).unwrap()["params"].clone();
        }
        let until = Instant::now() + PATIENCE;
        loop {
            assert!(Instant::now() < until, "no {method} event");
            let value = self.read();
            if value["method"] == method {
                return value["params"].clone();
            }
        }
    }

    fn read(&mut self) -> Value {
        loop {
            let Message::Text(text) = self.socket.read().unwrap() else {
                continue;
            };
            return serde_json::from_str(&text).unwrap();
        }
    }

    /// Evaluates JavaScript in the page; its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true; on timeout, fails with `what` and the page's text.
    pub fn wait_for(&mut self, what: &str, expression: &str) {
        let until = Instant::now() + PATIENCE;
        while self.eval(expression) != json!(true) {
            if Instant::now() > until {
                let text = self.eval("document.body.innerText");
                panic!("timed out waiting for {what}; the page shows:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The centre of the element `selector` selects, in page pixels.
    pub fn centre(&mut self, selector: &str) -> (f64, f64) {
        let rect = self.eval(&format!(
            "JSON.stringify(document.querySelector({selector:?}).getBoundingClientRect())"
        ));
        let rect: Value = serde_json::from_str(
            rect.as_str()
                .unwrap_or_else(|| panic!("no element {selector}")),
        )
        .unwrap();
        (
            rect["x"].as_f64().unwrap() + rect["width"].as_f64().unwrap() / 2.0,
            rect["y"].as_f64().unwrap() + rect["height"].as_f64().unwrap() / 2.0,
        )
    }

    /// A mouse event (`mouseMoved`, `mousePressed`, `mouseReleased`) with the left button.
    pub fn mouse(&mut self, kind: &str, x: f64, y: f64) {
        let buttons = if kind == "mousePressed" { 1 } else { 0 };
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": buttons, "clickCount": 1}),
        );
    }

    /// A click with the mouse on the element `selector` selects, as a person makes it.
    pub fn click(&mut self, selector: &str) {
        let (x, y) = self.centre(selector);
        self.mouse("mouseMoved", x, y);
        self.mouse("mousePressed", x, y);
        self.mouse("mouseReleased", x, y);
    }

    /// A PNG of the page in target/artifacts/`name`; its path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/artifacts");
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join(name);
        std::fs::write(&path, png).unwrap();
        assert!(
            std::fs::metadata(&path).unwrap().len() > 5_000,
            "{} looks empty",
            path.display()
        );
        path
    }
}

/// A bare HTTP GET of the DevTools JSON endpoints; `Null` until it answers.
fn devtools_get(port: u16, path: &str) -> Value {
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
