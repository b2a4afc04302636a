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

use qwiic_sim::SimButton;
use service_kit::CancellationToken;
use tokio::net::TcpListener;
use tokio::sync::broadcast;

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
    let device = qwiic_bus::server::serve(tcp, state.button.clone(), shutdown.clone());
    let web = axum::serve(http, app(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
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
