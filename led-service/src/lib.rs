//! led-service: an HTTP API that drives the SparkFun Qwiic Button's LED over I2C.
//!
//! - [`api`]: routes, handlers, limits and errors (`app(state) -> Router`);
//! - [`device`]: the one thread that owns the bus and applies the EEPROM rule;
//! - [`state`]: the original service's boolean spellings;
//! - [`metrics`]: Prometheus counters and histograms;
//! - [`config`]: flags and env vars.
//!
//! [`run`] serves until a shutdown signal, then finishes in-flight requests, switches the LED
//! off and returns, all within a second.
#![deny(unsafe_code, missing_docs)]

pub mod api;
pub mod config;
pub mod device;
mod integer;
pub mod metrics;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use qwiic_button::LedConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use api::{AppState, app};

/// How long in-flight requests get to finish after the shutdown signal.
pub const GRACE: Duration = Duration::from_millis(500);
/// How long switching the LED off at shutdown may take.
pub const SWITCH_OFF_DEADLINE: Duration = Duration::from_millis(300);

/// Serves `state` on `listener` until `shutdown` completes; then stops accepting, lets
/// in-flight requests finish (at most [`GRACE`]), ends live streams, and switches the LED off.
///
/// `closing` must be the sender of `state.closing`.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    closing: watch::Sender<bool>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let led = state.led.clone();
    let mut closed = closing.subscribe();
    let server = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = closed.wait_for(|closing| *closing).await;
    })
    .into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result,
        () = shutdown => {}
    }
    closing.send_replace(true);
    match tokio::time::timeout(GRACE, &mut server).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!(
            grace_ms = GRACE.as_millis() as u64,
            "requests still running after the grace period were cut off"
        ),
    }
    match tokio::time::timeout(
        SWITCH_OFF_DEADLINE,
        led.set(LedConfig::OFF, "shutdown".into()),
    )
    .await
    {
        Ok(Ok(_)) => tracing::info!("LED switched off; bye"),
        Ok(Err(error)) => tracing::warn!(%error, "could not switch the LED off at shutdown"),
        Err(_) => tracing::warn!("switching the LED off took too long; exiting anyway"),
    }
    Ok(())
}
