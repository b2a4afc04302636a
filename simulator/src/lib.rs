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

use std::future::Future;

use qwiic_sim::SimButton;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

pub use api::{AppState, EventView, app};

/// How many events a slow event-stream client may fall behind before it skips ahead.
const EVENT_BUFFER: usize = 1024;

/// Wires `button`'s events into a broadcast channel for the event streams.
pub fn state(button: SimButton) -> (AppState, watch::Sender<bool>) {
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let sink = events.clone();
    button.subscribe(move |event| {
        // No subscriber is fine: nobody is watching.
        let _ = sink.send(EventView::from(*event));
    });
    let (closing, closing_rx) = watch::channel(false);
    (
        AppState {
            button,
            events,
            closing: closing_rx,
        },
        closing,
    )
}

/// Serves the device on `tcp` and the page and control API on `http` until `shutdown`;
/// then closes every connection and returns.
pub async fn run(
    tcp: TcpListener,
    http: TcpListener,
    state: AppState,
    closing: watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let wait_closed = |mut closed: watch::Receiver<bool>| async move {
        let _ = closed.wait_for(|closing| *closing).await;
    };
    let device =
        qwiic_bus::server::serve(tcp, state.button.clone(), wait_closed(closing.subscribe()));
    let web = axum::serve(http, app(state))
        .with_graceful_shutdown(wait_closed(closing.subscribe()))
        .into_future();
    tokio::pin!(device, web, shutdown);
    tokio::select! {
        () = &mut shutdown => {}
        result = &mut device => {
            closing.send_replace(true);
            return result.and(web.await);
        }
        result = &mut web => {
            closing.send_replace(true);
            return result.and(device.await);
        }
    }
    closing.send_replace(true);
    // Both finish at once: the TCP server drops its clients, the event streams end.
    let (device, web) = tokio::join!(device, web);
    device.and(web)
}
