//! button-service: reads the SparkFun Qwiic Button and tells the LED service.
//!
//! - [`poller`]: the thread that owns the bus and turns status readings into LED states;
//! - [`sender`]: delivers the states over HTTP, through outages, without ever giving up;
//! - [`metrics`]: Prometheus counters for /metrics;
//! - [`config`]: flags and env vars.
//!
//! [`run`] wires them together with a small internal HTTP server (/healthz, /metrics) and
//! returns promptly after the shutdown signal.
#![deny(unsafe_code, missing_docs)]

pub mod config;
pub mod metrics;
pub mod poller;
pub mod sender;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use qwiic_bus::Bus;
use qwiic_button::QwiicButton;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::poller::ButtonHealth;
use crate::sender::{LedClient, LinkState};

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The poll thread could not start.
    #[error("cannot start the poll thread: {0}")]
    Thread(std::io::Error),
    /// The internal HTTP server failed.
    #[error("internal HTTP server failed: {0}")]
    Serve(std::io::Error),
}

#[derive(Clone)]
struct Status {
    button: watch::Receiver<ButtonHealth>,
    link: watch::Receiver<LinkState>,
    metrics: Metrics,
}

/// The internal HTTP API: `/healthz` (200 while the button answers) and `/metrics`.
fn internal_app(status: Status) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(status)
}

async fn healthz(State(status): State<Status>) -> Response {
    let led_service = match *status.link.borrow() {
        LinkState::Starting => "starting",
        LinkState::Up => "up",
        LinkState::Down => "down",
    };
    let button = status.button.borrow().clone();
    match button {
        ButtonHealth::Ok { firmware } => Json(json!({
            "status": "ok", "firmware": firmware, "led_service": led_service,
        }))
        .into_response(),
        ButtonHealth::Starting => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the button has not been read yet", "led_service": led_service})),
        )
            .into_response(),
        ButtonHealth::Unavailable(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": reason, "led_service": led_service})),
        )
            .into_response(),
    }
}

async fn metrics(State(status): State<Status>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        status.metrics.encode(),
    )
}

/// Polls `button`, sends its state to the LED service and serves /healthz and /metrics on
/// `listener`, until `shutdown` completes.
pub async fn run(
    config: &Config,
    button: QwiicButton<Bus>,
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let client = LedClient::new(
        config.led_url.clone(),
        config.api_token.clone(),
        config.request_timeout,
    )?;
    // Room for a burst of clicks while one request waits for its timeout.
    let (states_tx, states) = mpsc::channel(256);
    let (health_tx, health) = watch::channel(ButtonHealth::Starting);
    let (link_tx, link) = watch::channel(LinkState::Starting);
    let stop = Arc::new(AtomicBool::new(false));
    poller::spawn(
        button,
        config.bus.clone(),
        config.poll_interval,
        metrics.clone(),
        states_tx,
        health_tx,
        Arc::clone(&stop),
    )
    .map_err(RunError::Thread)?;

    let (closing, closed) = watch::channel(false);
    let wait_closed = |mut closed: watch::Receiver<bool>| async move {
        let _ = closed.wait_for(|closing| *closing).await;
    };
    let server = axum::serve(
        listener,
        internal_app(Status {
            button: health,
            link,
            metrics: metrics.clone(),
        }),
    )
    .with_graceful_shutdown(wait_closed(closed.clone()))
    .into_future();
    let sender = sender::run(
        client,
        states,
        config.resend_interval,
        metrics,
        link_tx,
        wait_closed(closed),
    );
    tokio::pin!(server, sender, shutdown);
    let result = tokio::select! {
        () = &mut shutdown => Ok(()),
        result = &mut server => result.map_err(RunError::Serve),
        () = &mut sender => Ok(()),
    };
    // The poll thread notices at its next tick; nobody waits for it.
    stop.store(true, Ordering::Relaxed);
    closing.send_replace(true);
    result
}
