//! What both services share at their edges: log setup (text or JSON), the SIGTERM/SIGINT
//! shutdown signal, the `healthcheck` subcommand's HTTP probe (the images have no curl), an I2C
//! wrapper that counts transactions for /metrics, and argument parsers for clap.
#![deny(unsafe_code, missing_docs)]

/// The allocator of every service: mimalloc. The images link musl (see scripts/lib/cross.sh),
/// whose own allocator halves led-service's request rate; mimalloc is as fast as glibc's or
/// faster, in the same memory (README "Benchmarks").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use embedded_hal::i2c::{Error as _, ErrorType, I2c, Operation};
use prometheus_client::metrics::counter::Counter;
use qwiic_button::Address;

/// Subcommands every service binary has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Exit 0 if the running service's /healthz answers 200, else 1 (for the image's
    /// HEALTHCHECK: the images have no curl).
    Healthcheck,
}

/// The body of every service's `main`. `healthcheck` probes `/healthz` where the service
/// listens; otherwise logging is set up and `serve` runs, and its error chain is logged once.
pub fn main(
    command: Option<Command>,
    listen: SocketAddr,
    log_format: LogFormat,
    serve: impl FnOnce() -> anyhow::Result<()>,
) -> ExitCode {
    if let Some(Command::Healthcheck) = command {
        let address = probe_address(listen);
        return match healthcheck(&address, "/healthz", Duration::from_secs(3)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("unhealthy: {error}");
                ExitCode::FAILURE
            }
        };
    }
    init_tracing(log_format);
    log_panics();
    if let Err(error) = can_start_threads() {
        tracing::error!("{error}");
        return ExitCode::FAILURE;
    }
    match serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs a panic as one error line, in the configured log format, before the process ends.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|at| format!("{}:{}", at.file(), at.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|message| (*message).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(%location, "panicked: {message}");
    }));
}

/// Starts and joins one thread, so that a system that refuses threads is reported with its
/// cause and fix before the async runtime would panic on it.
pub fn can_start_threads() -> Result<(), ThreadError> {
    let refused = |error| ThreadError {
        error,
        pids: pids_in_use(),
    };
    std::thread::Builder::new()
        .name("thread-check".into())
        .spawn(|| {})
        .map_err(refused)?
        .join()
        .map_err(|_| refused(io::Error::other("the check thread panicked")))
}

/// The system refused to start a thread. (musl reports every refusal as EAGAIN, so the cause
/// is told apart by whether the container's pids limit is reached.)
#[derive(Debug)]
pub struct ThreadError {
    /// What the system said.
    pub error: io::Error,
    /// The cgroup's processes in use and its limit, when it has one.
    pub pids: Option<(u64, u64)>,
}

/// `(pids.current, pids.max)` of this process's cgroup (v2, or v1's pids controller).
fn pids_in_use() -> Option<(u64, u64)> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/pids"]
        .iter()
        .find_map(|dir| {
            let read = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).ok();
            let max = read("pids.max")?.trim().parse().ok()?; // "max" means no limit
            let current = read("pids.current")?.trim().parse().ok()?;
            Some((current, max))
        })
}

impl std::fmt::Display for ThreadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let error = &self.error;
        match self.pids {
            Some((current, max)) if current + 1 >= max => write!(
                f,
                "cannot start a thread: {error}. The container's limit of {max} processes and threads is reached: raise it (compose `pids_limit`, the pod's pid limit in Kubernetes)"
            ),
            _ => write!(
                f,
                "cannot start a thread: {error}. No limit of processes is reached, so a seccomp profile most likely refuses thread creation: Docker before 20.10.10 and containerd before 1.4.11/1.5.7 refuse clone3, which these musl binaries do not use, so here another rule refuses clone; update Docker (or containerd), or give the container a profile that allows clone and clone3"
            ),
        }
    }
}

impl std::error::Error for ThreadError {}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global tracing subscriber. `RUST_LOG` overrides the default level (`info`).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_writer(io::stderr);
    // try_init: a second call (in tests) keeps the first subscriber instead of panicking.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Completes on SIGTERM (docker stop) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// `GET http://{address}{path}` with a deadline; Ok when the status is 2xx.
///
/// A plain HTTP/1.0 request over a socket: the scratch images have no curl, and a probe needs
/// nothing more.
pub fn healthcheck(address: &str, path: &str, timeout: Duration) -> Result<(), String> {
    let addresses: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {address}: {error}"))?
        .collect();
    let target = addresses
        .first()
        .ok_or_else(|| format!("{address} has no address"))?;
    let mut stream = TcpStream::connect_timeout(target, timeout)
        .map_err(|error| format!("cannot connect to {address}: {error}"))?;
    let io = |error: io::Error| format!("health request to {address} failed: {error}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").map_err(io)?;
    let mut response = Vec::new();
    // A server may reset the connection right after answering; what arrived still counts.
    if let Err(error) = stream.take(64 * 1024).read_to_end(&mut response) {
        if response.is_empty() {
            return Err(io(error));
        }
    }
    let response = String::from_utf8_lossy(&response);
    let status_line = response.lines().next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("malformed response from {address}: {status_line:?}"))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        Err(format!("{path} answered {status}: {}", body.trim()))
    }
}

/// The address to probe for a listen address: 0.0.0.0 and [::] become loopback.
pub fn probe_address(listen: SocketAddr) -> String {
    let ip = if listen.ip().is_unspecified() {
        if listen.is_ipv4() {
            "127.0.0.1".to_owned()
        } else {
            "[::1]".to_owned()
        }
    } else if listen.is_ipv6() {
        format!("[{}]", listen.ip())
    } else {
        listen.ip().to_string()
    };
    format!("{ip}:{}", listen.port())
}

/// Parses an I2C address for clap: `0x6F`, `0x6f` or `111`, checked to be 0x08-0x77.
pub fn parse_address(input: &str) -> Result<Address, String> {
    let trimmed = input.trim();
    let value = match trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
    {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => trimmed.parse::<u8>(),
    }
    .map_err(|_| {
        format!("{input:?} is not an I2C address: give 0x08 to 0x77 in hex (0x6F) or decimal (111)")
    })?;
    Address::new(value).map_err(|error| error.to_string())
}

/// Parses a duration for clap: `20ms`, `1s`, `1.5s`, `2m` (humantime-style units ms, s, m).
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let trimmed = input.trim();
    let invalid = || {
        format!("{input:?} is not a duration: give a number with a unit, such as 20ms, 1s or 1.5s")
    };
    let (number, unit) = trimmed
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|at| trimmed.split_at(at))
        .ok_or_else(invalid)?;
    let number: f64 = number.trim().parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return Err(invalid()),
    };
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("{input:?} is out of range: give 0 to 24 hours"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The bus as the services use it: every attempt counted for /metrics, a failed transaction
/// tried again up to `attempts` times in all.
pub type ServiceBus<B> = RetryingBus<CountingBus<B>>;

/// Wraps `bus` for a service (see [`ServiceBus`]).
pub fn service_bus<B>(
    bus: B,
    attempts: u32,
    transactions: Counter,
    errors: Counter,
) -> ServiceBus<B> {
    RetryingBus::new(CountingBus::new(bus, transactions, errors), attempts)
}

/// An I2C bus that tries a failed transaction again, up to `attempts` times in all, at once,
/// when the failure is one of the device's (no acknowledge, bus error, arbitration lost).
///
/// Noise, a mishandled clock stretch (Raspberry Pi) or a busy device makes single transactions
/// fail now and then; trying again at once hides that from the service without hiding a device
/// that is really gone. Only for transactions that may be repeated: every read, and writes of
/// whole settings or of the status clear. Never wrap a bus that pops the queues (a repeated pop
/// loses an entry).
#[derive(Debug)]
pub struct RetryingBus<B> {
    bus: B,
    attempts: u32,
}

impl<B> RetryingBus<B> {
    /// Wraps `bus`; `attempts` is at least 1.
    pub fn new(bus: B, attempts: u32) -> Self {
        RetryingBus {
            bus,
            attempts: attempts.max(1),
        }
    }
}

impl<B: ErrorType> ErrorType for RetryingBus<B> {
    type Error = B::Error;
}

impl<B: I2c> I2c for RetryingBus<B> {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let mut attempt = 1;
        loop {
            match self.bus.transaction(address, operations) {
                Err(error) if attempt < self.attempts && transient(error.kind()) => attempt += 1,
                result => return result,
            }
        }
    }
}

/// Errors worth trying again at once: the device was there but the transfer failed. A
/// transport failure (`Other`: the simulator server unreachable, a timeout) is not; repeating
/// it only multiplies the wait.
fn transient(kind: embedded_hal::i2c::ErrorKind) -> bool {
    use embedded_hal::i2c::ErrorKind;
    matches!(
        kind,
        ErrorKind::NoAcknowledge(_) | ErrorKind::Bus | ErrorKind::ArbitrationLoss
    )
}

/// An I2C bus that counts its transactions and failures for /metrics.
#[derive(Debug)]
pub struct CountingBus<B> {
    bus: B,
    transactions: Counter,
    errors: Counter,
}

impl<B> CountingBus<B> {
    /// Wraps `bus`; the counters are usually registered with a Prometheus registry.
    pub fn new(bus: B, transactions: Counter, errors: Counter) -> Self {
        CountingBus {
            bus,
            transactions,
            errors,
        }
    }

    /// The wrapped bus.
    pub fn inner(&self) -> &B {
        &self.bus
    }
}

impl<B: ErrorType> ErrorType for CountingBus<B> {
    type Error = B::Error;
}

impl<B: I2c> I2c for CountingBus<B> {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.transactions.inc();
        let result = self.bus.transaction(address, operations);
        if result.is_err() {
            self.errors.inc();
        }
        result
    }
}

/// Helpers for the tests that run a service binary as a container would.
pub mod testing {
    use std::io::Read as _;
    use std::process::{Child, ExitStatus};
    use std::time::{Duration, Instant};

    /// A [`std::process::Command`] for one of this workspace's binaries, for tests that run it.
    ///
    /// When the test suite runs for another architecture under an emulator (`scripts/test-arm64`
    /// sets `TEST_EXEC_WRAPPER=qemu-aarch64-static`), the binary is started through that emulator,
    /// since the kernel may have no binfmt_misc registration for it.
    pub fn binary_command(path: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        match std::env::var_os("TEST_EXEC_WRAPPER").filter(|wrapper| !wrapper.is_empty()) {
            Some(wrapper) => {
                let mut command = std::process::Command::new(wrapper);
                command.arg(path);
                command
            }
            None => std::process::Command::new(path),
        }
    }

    /// Waits until `binary healthcheck` (with `LISTEN_ADDR=listen`) succeeds, at most `within`.
    pub fn wait_until_healthy(binary: &str, listen: &str, within: Duration) -> Result<(), String> {
        let until = Instant::now() + within;
        loop {
            let healthy = binary_command(binary)
                .arg("healthcheck")
                .env("LISTEN_ADDR", listen)
                .stderr(std::process::Stdio::null())
                .status()
                .map_err(|error| format!("cannot run {binary} healthcheck: {error}"))?
                .success();
            if healthy {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(format!("{binary} did not become healthy within {within:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM to `child` and waits at most `within` for it to exit. Returns its status,
    /// how long it took, and what it wrote to its (piped) stderr.
    pub fn terminate(
        child: &mut Child,
        within: Duration,
    ) -> Result<(ExitStatus, Duration, String), String> {
        let signalled = Instant::now();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .map_err(|error| format!("cannot run kill: {error}"))?;
        if !killed.success() {
            return Err(format!("kill -TERM {} failed", child.id()));
        }
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|error| error.to_string())? {
                break status;
            }
            if signalled.elapsed() > within {
                return Err(format!("still running {within:?} after SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let took = signalled.elapsed();
        let mut log = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            stderr
                .read_to_string(&mut log)
                .map_err(|error| error.to_string())?;
        }
        Ok((status, took, log))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_in_hex_and_decimal_and_are_range_checked() {
        assert_eq!(parse_address("0x6F").unwrap().get(), 0x6F);
        assert_eq!(parse_address("0x6f").unwrap().get(), 0x6F);
        assert_eq!(parse_address("111").unwrap().get(), 111);
        assert!(parse_address("0x78").unwrap_err().contains("0x08 to 0x77"));
        assert!(
            parse_address("zz")
                .unwrap_err()
                .contains("not an I2C address")
        );
        assert!(parse_address("0x1FF").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("20ms").unwrap(), Duration::from_millis(20));
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "20", "fast", "5h", "-1s", "1e9s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_retrying_bus_tries_again_and_counts_every_attempt() {
        use embedded_hal::i2c::{ErrorKind, ErrorType};

        /// Fails the first `failures` transactions.
        struct Flaky {
            failures: u32,
            calls: u32,
        }
        impl ErrorType for Flaky {
            type Error = ErrorKind;
        }
        impl I2c for Flaky {
            fn transaction(&mut self, _: u8, _: &mut [Operation<'_>]) -> Result<(), ErrorKind> {
                self.calls += 1;
                if self.calls <= self.failures {
                    Err(ErrorKind::Bus)
                } else {
                    Ok(())
                }
            }
        }
        let (transactions, errors) = (Counter::default(), Counter::default());
        let mut bus = RetryingBus::new(
            CountingBus::new(
                Flaky {
                    failures: 2,
                    calls: 0,
                },
                transactions.clone(),
                errors.clone(),
            ),
            3,
        );
        assert!(bus.write(0x6F, &[0]).is_ok());
        assert_eq!((transactions.get(), errors.get()), (3, 2));
        let mut bus = RetryingBus::new(
            Flaky {
                failures: 3,
                calls: 0,
            },
            3,
        );
        assert_eq!(bus.write(0x6F, &[0]), Err(ErrorKind::Bus));
        assert_eq!(bus.bus.calls, 3, "gives up after three attempts");

        /// Fails every transaction like an unreachable simulator server.
        struct Unreachable(u32);
        impl ErrorType for Unreachable {
            type Error = ErrorKind;
        }
        impl I2c for Unreachable {
            fn transaction(&mut self, _: u8, _: &mut [Operation<'_>]) -> Result<(), ErrorKind> {
                self.0 += 1;
                Err(ErrorKind::Other)
            }
        }
        let mut bus = RetryingBus::new(Unreachable(0), 3);
        assert_eq!(bus.write(0x6F, &[0]), Err(ErrorKind::Other));
        assert_eq!(bus.bus.0, 1, "a transport failure is not repeated");
    }

    #[test]
    fn a_refused_thread_names_the_cause_and_the_fix() {
        let refused = |pids| ThreadError {
            error: io::Error::from_raw_os_error(11),
            pids,
        };
        for pids in [None, Some((3, 64))] {
            let seccomp = refused(pids).to_string();
            assert!(
                seccomp.starts_with("cannot start a thread: Resource temporarily unavailable")
                    && seccomp.contains("seccomp profile")
                    && seccomp.contains("Docker before 20.10.10")
                    && seccomp.contains("allows clone and clone3"),
                "{seccomp}"
            );
        }
        let limit = refused(Some((64, 64))).to_string();
        assert!(
            limit.contains("limit of 64 processes and threads is reached")
                && limit.contains("pids_limit"),
            "{limit}"
        );
        assert!(can_start_threads().is_ok());
    }

    #[test]
    fn probe_addresses_use_loopback_for_wildcards() {
        assert_eq!(
            probe_address("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080"
        );
        assert_eq!(probe_address("[::]:8080".parse().unwrap()), "[::1]:8080");
        assert_eq!(probe_address("10.1.2.3:80".parse().unwrap()), "10.1.2.3:80");
    }

    #[test]
    fn healthcheck_reads_the_status() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            for reply in [
                "HTTP/1.1 200 OK\r\n\r\nok",
                "HTTP/1.1 503 Service Unavailable\r\n\r\n{\"error\":\"no button\"}",
            ] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut byte = [0];
                while !request.ends_with(b"\r\n\r\n") {
                    stream.read_exact(&mut byte).unwrap();
                    request.push(byte[0]);
                }
                assert!(request.starts_with(b"GET /healthz HTTP/1.0\r\n"));
                stream.write_all(reply.as_bytes()).unwrap();
            }
        });
        assert_eq!(
            healthcheck(&address, "/healthz", Duration::from_secs(2)),
            Ok(())
        );
        let error = healthcheck(&address, "/healthz", Duration::from_secs(2)).unwrap_err();
        assert!(
            error.contains("503") && error.contains("no button"),
            "{error}"
        );
        server.join().unwrap();
    }

    #[test]
    fn healthcheck_reports_a_refused_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let error = healthcheck(&address, "/healthz", Duration::from_secs(1)).unwrap_err();
        assert!(error.contains("cannot connect"), "{error}");
    }
}
