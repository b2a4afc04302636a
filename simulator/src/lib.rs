//! The simulator server: ONE simulated Qwiic Button that both services reach over TCP
//! (`tcp://host:7070`, the protocol of `qwiic_bus::wire`), a page where a person holds the button
//! and watches the LED, and an HTTP control API for tests and benchmarks.
//!
//! - [`api`]: the page, the control API and the event stream;
//! - [`config`]: flags and env vars;
//! - [`run`]: serves TCP and HTTP until the shutdown signal.
#![deny(unsafe_code, missing_docs)]

pub mod api;
pub mod config;

use std::sync::Arc;
use std::time::Duration;

use qwiic_sim::SimButton;
use service_kit::CancellationToken;
use service_kit::guard::AllowedHosts;
use service_kit::http::Limits;
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast};

pub use api::{AppState, EventView, app};

/// How many events a slow event-stream client may fall behind before it skips ahead.
const EVENT_BUFFER: usize = 1024;

impl AppState {
    /// The one way to build the state: wires `button`'s events into a broadcast channel for
    /// the event streams, which end when `shutdown` is cancelled.
    pub fn new(button: SimButton, shutdown: CancellationToken) -> AppState {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let sink = events.clone();
        button.subscribe(move |event| {
            // No subscriber is fine: nobody is watching.
            let _ = sink.send(EventView::from(*event));
        });
        AppState {
            button,
            events,
            shutdown,
            bus_limits: qwiic_bus::server::Limits::default(),
            allowed_hosts: AllowedHosts::new(&[]),
        }
    }

    /// The same state answering to `allowed_hosts` (besides any address).
    pub fn with_allowed_hosts(mut self, allowed_hosts: AllowedHosts) -> AppState {
        self.allowed_hosts = allowed_hosts;
        self
    }
}

/// Applies the simulated button's scheduled changes (a click's release, an LED setting once
/// the firmware has saved it) when they are due, so that the page and the event streams hear of
/// them on time even when no client is looking at the device.
async fn apply_changes_on_time(button: SimButton, shutdown: CancellationToken) {
    let scheduled = Arc::new(Notify::new());
    let wake = Arc::clone(&scheduled);
    button.on_schedule(move || wake.notify_one());
    loop {
        let due = button.next_change_at_ms().map(|at_ms| {
            tokio::time::Instant::now()
                + Duration::from_millis(at_ms.saturating_sub(button.now_ms()))
        });
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = scheduled.notified() => {}
            () = runtime_kit::sleep_until(due) => button.catch_up(),
        }
    }
}

/// Serves the device on `tcp` and the page and control API on `http` until `shutdown` is
/// cancelled; then closes every connection and returns.
pub async fn run(
    tcp: TcpListener,
    http: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    tokio::spawn(apply_changes_on_time(
        state.button.clone(),
        shutdown.clone(),
    ));
    let device = qwiic_bus::server::serve(
        tcp,
        state.button.clone(),
        state.bus_limits,
        shutdown.clone(),
    );
    let web = service_kit::http::serve(http, app(state), Limits::default(), shutdown.clone());
    // Either failing stops both; at shutdown both finish at once (the TCP server drops its
    // clients, the event streams end).
    tokio::pin!(device, web);
    tokio::select! {
        result = &mut device => {
            shutdown.cancel();
            result.and(web.await)
        }
        result = &mut web => {
            shutdown.cancel();
            result.and(device.await)
        }
    }
}
