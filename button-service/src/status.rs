//! The internal HTTP API, on the private network only: `/healthz` (200 while the service
//! serves; says whether the button answers and the LED service is up) and `/metrics`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use qwiic_bus::{HealthView, LinkHealth};
use serde_json::json;
use tokio::sync::watch;

use service_kit::mqtt::MqttHealth;

use crate::metrics::Metrics;
use crate::sender::LinkState;

/// What the internal API reads.
#[derive(Clone)]
pub struct Status {
    /// The button, as the poller's device link sees it.
    pub button: HealthView,
    /// The LED service, as the sender sees it.
    pub led_service: watch::Receiver<LinkState>,
    /// Metrics for /metrics.
    pub metrics: Metrics,
    /// The MQTT link, when MQTT is set (informative: it never fails health).
    pub mqtt: Option<watch::Receiver<MqttHealth>>,
}

/// The internal routes.
pub fn app(status: Status) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(status)
}

/// 200 while the service serves, with whether the button answers (`status`: `ok`,
/// `starting` before the first reading, `degraded` while it does not answer, with `button`
/// saying why) and whether the LED service is up: neither is the service failing, and a
/// restart would bring neither back.
async fn healthz(State(status): State<Status>) -> Response {
    let led_service = match *status.led_service.borrow() {
        LinkState::Starting => "starting",
        LinkState::Up => "up",
        LinkState::Down => "down",
    };
    let mut body = match status.button.current() {
        LinkHealth::Answering(firmware) => {
            json!({"status": "ok", "button": "ok", "firmware": firmware.to_string()})
        }
        LinkHealth::Starting => {
            json!({"status": "starting", "button": "the button has not been read yet"})
        }
        LinkHealth::Unavailable(reason) => json!({"status": "degraded", "button": reason}),
    };
    body["led_service"] = json!(led_service);
    if let Some(mqtt) = &status.mqtt {
        body["mqtt"] = json!(mqtt.borrow().to_string());
    }
    (StatusCode::OK, Json(body)).into_response()
}

async fn metrics(State(status): State<Status>) -> Response {
    status.metrics.response()
}
