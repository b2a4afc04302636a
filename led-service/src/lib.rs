//! led-service: an HTTP API that drives the SparkFun Qwiic Button's LED over I2C.
//!
//! - [`config`]: flags and env vars, and the [`Settings`](config::Settings) they resolve into;
//! - [`state`]: [`AppState::start`], the one way to build what handlers share;
//! - [`api`]: the route table, the handlers and the OpenAPI document (`app(state) -> Router`);
//! - [`extract`], [`views`], [`error`], [`events`]: what handlers take, answer, fail with, and
//!   the live event stream;
//! - [`limits`]: every bound the API sets on its peers;
//! - `front_door`: where every request comes in (metrics, the early 413);
//! - [`led`]: the one thread that owns the button and applies the EEPROM rule;
//! - [`spelling`]: the original service's boolean spellings;
//! - [`mqtt`]: the LED as a Home Assistant light over MQTT (when set);
//! - [`metrics`]: Prometheus counters and histograms.
//!
//! [`run`] serves until the shutdown token is cancelled, then finishes in-flight requests
//! (within the grace period, 500 ms), switches the LED off (within [`SWITCH_OFF_DEADLINE`]),
//! lets the MQTT link say goodbye (within about a second) and returns.
#![deny(unsafe_code, missing_docs)]

pub mod api;
pub mod config;
pub mod effects;
pub mod error;
pub mod events;
pub mod extract;
mod front_door;
mod integer;
pub mod led;
pub mod limits;
pub mod metrics;
pub mod mqtt;
pub mod spelling;
pub mod state;
pub mod views;

use service_kit::CancellationToken;
use tokio::net::TcpListener;

pub use api::app;
pub use limits::{Limits, SWITCH_OFF_DEADLINE};
pub use state::{AppState, StartError};

/// Serves `state` on `listener` until `shutdown` is cancelled (the state's own token or a
/// parent of it), within the state's [`Limits`]; then stops
/// accepting, lets in-flight requests finish (at most the limits' grace), ends live streams,
/// and switches the LED off.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let (led, limits, tasks) = (state.led.clone(), state.limits, state.tasks.clone());
    service_kit::http::serve(listener, app(state), limits.http, shutdown).await?;
    match tokio::time::timeout(SWITCH_OFF_DEADLINE, led.switch_off()).await {
        Ok(Ok(_)) => tracing::info!("LED switched off; bye"),
        Ok(Err(error)) => tracing::warn!(%error, "could not switch the LED off at shutdown"),
        Err(_) => tracing::warn!("switching the LED off took too long; exiting anyway"),
    }
    // The MQTT task publishes the switch-off, says offline and disconnects.
    tasks.close();
    tasks.wait().await;
    Ok(())
}
