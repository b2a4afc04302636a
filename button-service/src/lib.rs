//! button-service: reads the SparkFun Qwiic Button and tells the LED service.
//!
//! - [`poller`]: the thread that owns the button and publishes its presses and releases;
//! - [`events`]: those events, on a channel any number of listeners subscribe to;
//! - [`sender`]: the listener that tells the LED service, through outages, without ever giving
//!   up;
//! - [`status`]: the internal /healthz and /metrics;
//! - [`metrics`]: Prometheus counters; [`config`]: flags and env vars.
//!
//! [`Service::start`] starts the poller; [`run`] serves the internal API and delivers events
//! until the shutdown token is cancelled, then returns promptly.
#![deny(unsafe_code, missing_docs)]

pub mod config;
pub mod events;
pub mod metrics;
pub mod poller;
pub mod sender;
pub mod status;

use qwiic_bus::{Bus, HealthView};
use service_kit::CancellationToken;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::sender::{LedClient, LinkState};

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The API token file could not be read.
    #[error(transparent)]
    Token(#[from] service_kit::args::TokenError),
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

/// A running poller and what [`run`] needs to deliver its events.
#[derive(Debug)]
pub struct Service {
    client: LedClient,
    events: Events,
    metrics: Metrics,
    button: HealthView,
    resend: Option<std::time::Duration>,
}

impl Service {
    /// The one way to start: polls the button on `bus` (opened from `config`'s bus string, or
    /// a test's simulated button) as `config` says, until `shutdown` is cancelled.
    pub fn start(
        bus: Bus,
        config: &Config,
        shutdown: CancellationToken,
    ) -> Result<Service, RunError> {
        let metrics = Metrics::default();
        let client = LedClient::new(
            config.led_url.clone(),
            config.service.api_token()?,
            config.request_timeout,
        )?;
        let link = config
            .service
            .link(bus, metrics.bus.clone(), "retrying every poll");
        let button = link.health();
        let events = Events::default();
        poller::spawn(
            link,
            config.poll_interval,
            events.clone(),
            metrics.clone(),
            shutdown,
        )
        .map_err(RunError::Thread)?;
        Ok(Service {
            client,
            events,
            metrics,
            button,
            resend: config.resend_interval,
        })
    }

    /// The button's events, for more listeners.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// Delivers `service`'s events to the LED service and serves /healthz and /metrics on
/// `listener`, until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    service: Service,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let (link, led_service) = watch::channel(LinkState::Starting);
    let server = service_kit::http::serve(
        listener,
        status::app(status::Status {
            button: service.button,
            led_service,
            metrics: service.metrics.clone(),
        }),
        service_kit::http::Limits::default(),
        shutdown.clone(),
    );
    let sender = sender::run(
        service.client,
        service.events.subscribe(),
        service.resend,
        service.metrics,
        link,
        shutdown.clone(),
    );
    let (served, ()) = tokio::join!(server, sender);
    served.map_err(RunError::Serve)
}
