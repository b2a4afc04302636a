//! led-service: an HTTP API that drives the SparkFun Qwiic Button's LED over I2C.
//!
//! - [`api`]: routes, handlers, API types, limits and errors (`app(state) -> Router`), and
//!   [`AppState::start`], the one way to build the state;
//! - [`led`]: the one thread that owns the button and applies the EEPROM rule;
//! - [`state`]: the original service's boolean spellings;
//! - [`mqtt`]: the LED as a Home Assistant light over MQTT (when set);
//! - `front_door`: where every request comes in (metrics, the early 413);
//! - [`metrics`]: Prometheus counters and histograms;
//! - [`config`]: flags and env vars.
//!
//! [`run`] serves until the shutdown token is cancelled, then finishes in-flight requests,
//! switches the LED off and returns, all within a second.
#![deny(unsafe_code, missing_docs)]

pub mod api;
pub mod config;
mod front_door;
mod integer;
pub mod led;
pub mod metrics;
pub mod mqtt;
pub mod state;

use std::time::Duration;

use qwiic_button::LedConfig;
use service_kit::CancellationToken;
use tokio::net::TcpListener;

pub use api::{AppState, StartError, app};

/// How long switching the LED off at shutdown may take.
pub const SWITCH_OFF_DEADLINE: Duration = Duration::from_millis(300);

/// Serves `state` on `listener` until `shutdown` is cancelled (the state's own token or a
/// parent of it), within the state's [`Limits`](service_kit::http::Limits); then stops
/// accepting, lets in-flight requests finish (at most the limits' grace), ends live streams,
/// and switches the LED off.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let (led, limits, tasks) = (state.led.clone(), state.limits, state.tasks.clone());
    service_kit::http::serve(listener, app(state), limits, shutdown).await?;
    match tokio::time::timeout(SWITCH_OFF_DEADLINE, led.set(LedConfig::OFF, "shutdown")).await {
        Ok(Ok(_)) => tracing::info!("LED switched off; bye"),
        Ok(Err(error)) => tracing::warn!(%error, "could not switch the LED off at shutdown"),
        Err(_) => tracing::warn!("switching the LED off took too long; exiting anyway"),
    }
    // The MQTT task publishes the switch-off, says offline and disconnects (within ~1.5 s).
    tasks.close();
    tasks.wait().await;
    Ok(())
}
