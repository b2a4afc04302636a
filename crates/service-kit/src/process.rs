//! The body of every service's `main`: subcommands, logging, a check that threads can start,
//! one log line for a panic, and the error chain of a failed start logged once.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use crate::logging::{self, LogFormat};
use crate::{args, probe};

/// Subcommands every service binary has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Exit 0 if the running service's /healthz answers 200, else 1 (for the image's
    /// HEALTHCHECK: the images have no curl).
    Healthcheck,
    /// Print every setting (flag, environment variable, default) as JSON, for the drift tests.
    #[command(hide = true)]
    PrintConfig,
}

/// Runs a service binary. `healthcheck` probes `/healthz` where the service listens;
/// `print-config` prints `C`'s settings; otherwise logging is set up, threads are checked, and
/// `serve` runs, its error chain logged once.
pub fn main<C: clap::CommandFactory>(
    command: Option<Command>,
    listen: SocketAddr,
    log_format: LogFormat,
    serve: impl FnOnce() -> anyhow::Result<()>,
) -> ExitCode {
    match command {
        Some(Command::Healthcheck) => {
            let address = probe::probe_address(listen);
            return match probe::healthcheck(&address, "/healthz", Duration::from_secs(3)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("unhealthy: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::PrintConfig) => {
            println!("{}", args::reference_json(&C::command()));
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    logging::init(log_format);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
