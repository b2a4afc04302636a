//! button-service: reads the SparkFun Qwiic Button and tells the LED service.
//!
//! - [`poller`]: the thread that owns the button and publishes its presses and releases;
//! - [`events`]: those events, on a channel any number of listeners subscribe to;
//! - [`sender`]: the listener that tells the LED service, through outages, without ever giving
//!   up, over the HTTP [`client`];
//! - [`gestures`]: the listener that makes single, double and long presses of the events;
//! - [`mqtt`]: gestures and the level on MQTT, and the button in Home Assistant (when set);
//! - [`status`]: the internal /healthz and /metrics;
//! - [`metrics`]: Prometheus counters; [`config`]: flags and env vars, and the
//!   [`Settings`](config::Settings) they resolve into.
//!
//! [`Service::start`] starts the poller; [`run`] serves the internal API and delivers events
//! until the shutdown token is cancelled, then returns promptly.
#![deny(unsafe_code, missing_docs)]

pub mod client;
pub mod config;
pub mod events;
pub mod gestures;
pub mod metrics;
pub mod mqtt;
pub mod poller;
pub mod sender;
pub mod status;

use qwiic_bus::{Bus, HealthView, IntError, IntLine};
use service_kit::CancellationToken;
use service_kit::mqtt::{Mqtt, MqttSettings};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};

use crate::client::LedClient;
use crate::config::Settings;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::sender::LinkState;

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The poll thread could not start.
    #[error("cannot start the poll thread: {0}")]
    Thread(std::io::Error),
    /// The INT line could not be opened.
    #[error("{0}")]
    Int(#[from] IntError),
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
    timing: gestures::Timing,
    /// How late the poller may tell an edge (gestures wait that long past a deadline).
    lateness: std::time::Duration,
    gestures: broadcast::Sender<gestures::GestureEvent>,
    mqtt: Option<MqttSettings>,
    /// The listeners' subscriptions, taken at start so that no event is missed before
    /// [`run`] runs.
    listening: Listening,
}

#[derive(Debug)]
struct Listening {
    sender: events::Subscription,
    gestures: events::Subscription,
    mqtt: broadcast::Receiver<gestures::GestureEvent>,
}

impl Service {
    /// The one way to start: polls the button on `bus` (opened from the settings' bus, or a
    /// test's simulated button) as `settings` say, until `shutdown` is cancelled.
    pub fn start(
        bus: Bus,
        settings: &Settings,
        shutdown: CancellationToken,
    ) -> Result<Service, RunError> {
        let metrics = Metrics::default();
        let client = LedClient::new(
            settings.led_url.clone(),
            settings.service.token.clone(),
            settings.request_timeout,
        )?;
        let link = settings
            .device
            .link(bus, metrics.bus.clone(), "retrying every poll");
        let button = link.health();
        let events = Events::default();
        let gestures = broadcast::channel(events::CAPACITY).0;
        let listening = Listening {
            sender: events.subscribe(),
            gestures: events.subscribe(),
            mqtt: gestures.subscribe(),
        };
        let wake = match &settings.int {
            None => poller::Wake::Poll(settings.poll_interval),
            Some((spec, heartbeat)) => poller::Wake::Int {
                line: Box::new(IntLine::open(spec, &settings.device.bus)?),
                heartbeat: *heartbeat,
                period: settings.poll_interval,
            },
        };
        poller::spawn(
            link,
            wake,
            settings.debounce_ms,
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
            resend: settings.resend_interval,
            timing: settings.timing,
            lateness: poller::lateness(settings.poll_interval),
            gestures,
            mqtt: settings.mqtt.clone(),
            listening,
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
    let gestures = tokio::spawn(gestures::run(
        service.listening.gestures,
        service.timing,
        service.lateness,
        service.gestures.clone(),
        shutdown.clone(),
    ));
    let mqtt = service.mqtt.map(|settings| {
        let (mqtt, _) = Mqtt::start("button", settings, service.metrics.mqtt.clone());
        let task = tokio::spawn(mqtt::run(
            mqtt.clone(),
            service.listening.mqtt,
            service.button.clone(),
            service.metrics.bus.clone(),
            service.timing.max_presses,
            shutdown.clone(),
        ));
        (mqtt, task)
    });
    let server = service_kit::http::serve(
        listener,
        status::app(status::Status {
            button: service.button,
            led_service,
            metrics: service.metrics.clone(),
            mqtt: mqtt.as_ref().map(|(mqtt, _)| mqtt.health_updates()),
        }),
        service_kit::http::Limits::default(),
        shutdown.clone(),
    );
    let sender = sender::run(
        service.client,
        service.listening.sender,
        service.resend,
        service.metrics,
        link,
        shutdown.clone(),
    );
    let (served, ()) = tokio::join!(server, sender);
    let _ = gestures.await;
    if let Some((_, task)) = mqtt {
        let _ = task.await; // it says offline and disconnects
    }
    served.map_err(RunError::Serve)
}
