//! What the project's tests share, and only its tests (a dev-dependency of every crate that
//! tests a service; nothing here reaches a production binary):
//!
//! - running a service in-process with a cancellation token ([`Background`]), or as its binary,
//!   configured by environment variables as a container runs it ([`RunningBinary`]). Services
//!   listen on port 0 and tests read the bound address from the service's own "ready" log line,
//!   so no port is ever probed and re-bound;
//! - time bounds that stretch under emulation ([`scaled`]) and waiting on a condition
//!   ([`wait_until`]);
//! - [`SimServer`]: a simulated button on a `tcp://` bus, as the simulator container serves it;
//! - [`mqtt`]: a real Mosquitto and a client that watches it;
//! - [`browser`]: a headless chromium for the pages' tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed expectation is a failed test

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub mod browser;
pub mod mqtt;
mod sim_server;

pub use sim_server::SimServer;

/// A service running on the test's runtime, stopped by cancelling its token.
pub struct Background<T> {
    token: CancellationToken,
    task: tokio::task::JoinHandle<T>,
}

impl<T: Send + 'static> Background<T> {
    /// Spawns `start(token)`.
    pub fn spawn<F>(start: impl FnOnce(CancellationToken) -> F) -> Background<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let token = CancellationToken::new();
        let task = tokio::spawn(start(token.clone()));
        Background { token, task }
    }

    /// Spawns `service`, which stops when `token` is cancelled.
    pub fn new(
        token: CancellationToken,
        service: impl Future<Output = T> + Send + 'static,
    ) -> Background<T> {
        Background {
            token,
            task: tokio::spawn(service),
        }
    }

    /// Cancels the token and waits for the service to return.
    pub async fn stop(self) -> T {
        self.token.cancel();
        self.task.await.expect("the service task panicked")
    }
}

/// An address on loopback where nothing listens (for a peer that comes up later). Prefer
/// binding port 0 and reading the address back wherever the listener can be kept.
pub fn unused_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// How much slower than native this test run is: `TEST_TIME_SCALE` (scripts/test-cross sets it
/// for the suite under qemu), else 1. Time bounds that prove a behaviour are multiplied by it;
/// speed figures belong to the benchmark.
pub fn time_scale() -> u32 {
    std::env::var("TEST_TIME_SCALE")
        .ok()
        .and_then(|scale| scale.parse().ok())
        .filter(|scale| *scale >= 1)
        .unwrap_or(1)
}

/// `bound` for this run: multiplied by [`time_scale`].
pub fn scaled(bound: Duration) -> Duration {
    bound * time_scale()
}

/// Waits until `condition` holds, checking every 2 ms, for at most `within` ([`scaled`]: a
/// bound on waiting for a condition is never a speed claim, and under an emulator everything is
/// slower; natively it is `within`).
pub async fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    wait_until_async(what, within, || std::future::ready(condition())).await;
}

/// [`wait_until`] for a condition that has to wait for something itself (a request).
pub async fn wait_until_async<F>(what: &str, within: Duration, mut condition: impl FnMut() -> F)
where
    F: std::future::Future<Output = bool>,
{
    let within = scaled(within);
    let until = Instant::now() + within;
    while !condition().await {
        assert!(
            Instant::now() < until,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Whether this workspace's binaries run under an emulator (`TEST_EXEC_WRAPPER`, set by
/// `scripts/test-cross`): then `/proc/PID` describes the emulator (its memory includes the
/// translated code), not the binary.
pub fn emulated() -> bool {
    std::env::var_os("TEST_EXEC_WRAPPER").is_some_and(|wrapper| !wrapper.is_empty())
}

/// A [`std::process::Command`] for one of this workspace's binaries.
///
/// When the test suite runs for another architecture under an emulator (`scripts/test-cross`
/// sets `TEST_EXEC_WRAPPER=qemu-aarch64-static`), the binary is started through that emulator,
/// since the kernel may have no binfmt_misc registration for it.
pub fn binary_command(path: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    match std::env::var_os("TEST_EXEC_WRAPPER").filter(|_| emulated()) {
        Some(wrapper) => {
            let mut command = std::process::Command::new(wrapper);
            command.arg(path);
            command
        }
        None => std::process::Command::new(path),
    }
}

/// A service binary running as a child process, its JSON log lines collected as they come.
pub struct RunningBinary {
    child: Child,
    path: String,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl RunningBinary {
    /// Starts `path` with `env` (plus `LISTEN_ADDR=127.0.0.1:0` and `LOG_FORMAT=json`, unless
    /// `env` sets them).
    pub fn start(path: &str, env: &[(&str, &str)]) -> RunningBinary {
        let mut command = binary_command(path);
        command.envs(env.iter().copied());
        Self::spawn(path, command)
    }

    /// Starts `command`, which runs the binary `path` (through a wrapper such as `prlimit`,
    /// say), with `LISTEN_ADDR=127.0.0.1:0` and `LOG_FORMAT=json` unless it sets them.
    pub fn spawn(path: &str, mut command: std::process::Command) -> RunningBinary {
        let set: Vec<_> = command
            .get_envs()
            .map(|(name, _)| name.to_owned())
            .collect();
        for (name, value) in [("LISTEN_ADDR", "127.0.0.1:0"), ("LOG_FORMAT", "json")] {
            if !set.iter().any(|set| set == name) {
                command.env(name, value);
            }
        }
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        RunningBinary {
            child,
            path: path.to_owned(),
            log,
            reader: Some(reader),
        }
    }

    /// Waits for a log line containing `needle` and returns it (for at most `within`,
    /// [`scaled`] as in [`wait_until`]).
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> String {
        let within = scaled(within);
        let until = Instant::now() + within;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            assert!(
                Instant::now() < until,
                "{} logged no line with {needle:?} within {within:?}:\n{}",
                self.path,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The address the service reports in its "ready" line's `field` (such as `listen`).
    pub fn address(&self, field: &str, within: Duration) -> SocketAddr {
        let line = self.wait_for_log("ready", within);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        value[field]
            .as_str()
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("no address in {field:?} of {line}"))
    }

    /// Runs the binary's `healthcheck` subcommand against this service: true when it exits 0.
    pub fn healthcheck(&self, within: Duration) -> bool {
        binary_command(&self.path)
            .arg("healthcheck")
            .env("LISTEN_ADDR", self.address("listen", within).to_string())
            .status()
            .unwrap()
            .success()
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits at most `within` for the exit. Returns the status and how long
    /// it took.
    pub fn terminate(&mut self, within: Duration) -> (ExitStatus, Duration) {
        let signalled = Instant::now();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success(), "kill -TERM {} failed", self.child.id());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let took = signalled.elapsed();
                self.read_to_end();
                return (status, took);
            }
            assert!(
                signalled.elapsed() < within,
                "{} still running {within:?} after SIGTERM:\n{}",
                self.path,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills the process (SIGKILL: no goodbye to anyone) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.read_to_end();
    }

    /// Waits until the exited process's last log lines are read (its stderr has closed).
    fn read_to_end(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
