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

/// A service's command line: its flags (each with its environment variable), or one of the
/// subcommands. [`CommandLine`] gives it the service's name, version and defaults.
#[derive(Debug)]
pub struct Cli<C> {
    /// What to do; without a subcommand the service runs.
    pub command: Option<Command>,
    /// The service's flags.
    pub config: C,
}

/// What [`main`] needs to know of a service's flags.
pub trait CommandLine: clap::Args {
    /// The binary's name.
    const NAME: &'static str;
    /// Its version (the service crate's).
    const VERSION: &'static str;
    /// One line on what it does.
    const ABOUT: &'static str;
    /// Its own default for `--listen` (a flag the services share), if it takes one.
    const LISTEN: Option<&'static str> = None;
    /// Where the service answers `/healthz` (the `healthcheck` subcommand asks there).
    fn health_listen(&self) -> SocketAddr;
    /// How it logs.
    fn log_format(&self) -> LogFormat;
}

/// The command line of `C`, named and with its defaults.
fn describe<C: CommandLine>(command: clap::Command) -> clap::Command {
    let command = command.name(C::NAME).version(C::VERSION).about(C::ABOUT);
    match C::LISTEN {
        Some(listen) => command.mut_arg("listen", |arg| arg.default_value(listen)),
        None => command,
    }
}

/// [`Cli`] as clap derives it, before it is described.
#[derive(clap::Parser)]
struct Derived<C: clap::Args> {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: C,
}

impl<C: CommandLine> clap::CommandFactory for Cli<C> {
    fn command() -> clap::Command {
        describe::<C>(Derived::<C>::command())
    }

    fn command_for_update() -> clap::Command {
        describe::<C>(Derived::<C>::command_for_update())
    }
}

impl<C: CommandLine> clap::FromArgMatches for Cli<C> {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let Derived { command, config } = Derived::<C>::from_arg_matches(matches)?;
        Ok(Cli { command, config })
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        if matches.subcommand_name().is_some() {
            self.command = Some(Command::from_arg_matches(matches)?);
        }
        self.config.update_from_arg_matches(matches)
    }
}

impl<C: CommandLine> clap::Parser for Cli<C> {}

/// Runs a service binary from its command line. `healthcheck` probes `/healthz` where the
/// service listens; `print-config` prints its settings; otherwise logging is set up, threads
/// are checked, and `serve` runs with the settings, its error chain logged once.
pub fn main<C: CommandLine>(serve: impl FnOnce(C) -> anyhow::Result<()>) -> ExitCode {
    use clap::{CommandFactory as _, Parser as _};
    let Cli { command, config } = Cli::<C>::parse();
    match command {
        Some(Command::Healthcheck) => {
            let address = probe::probe_address(config.health_listen());
            return match probe::healthcheck(&address, "/healthz", Duration::from_secs(3)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("unhealthy: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::PrintConfig) => {
            println!("{}", args::reference_json(&Cli::<C>::command()));
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    logging::init(config.log_format());
    log_panics();
    if let Err(error) = can_start_threads() {
        tracing::error!("{error}");
        return ExitCode::FAILURE;
    }
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The services' tokio runtime: `workers` threads (one per core when `None`), with I/O and
/// timers.
pub fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")
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
