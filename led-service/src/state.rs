//! [`AppState`]: what every handler shares, and [`AppState::start`], the one way to build it:
//! the LED's owner on the bus, the MQTT link when set, the token, the request slots.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use qwiic_bus::Bus;
use service_kit::guard::AllowedHosts;
use service_kit::mqtt::Mqtt;
use service_kit::{CancellationToken, Secret};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::led::LedDevice;
use crate::limits::{Limits, MAX_EVENT_STREAMS};
use crate::metrics::Metrics;

/// What every handler shares: one allocation, so that the clone each request makes of it is
/// one reference count.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The LED's owner.
    pub led: LedDevice,
    /// Metrics for /metrics.
    pub metrics: Metrics,
    /// When set, mutating routes need `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// The names the API answers to (besides any address).
    pub allowed_hosts: AllowedHosts,
    /// Brightness of `POST /true`.
    pub default_brightness: u8,
    /// Cancelled when the service starts shutting down: live streams end.
    pub shutdown: CancellationToken,
    /// Random at every start, in /healthz: a client that sees it change knows the service
    /// restarted (and switched the LED off on its way out).
    pub instance: Arc<str>,
    /// The bus, as given (`/dev/i2c-1`, `tcp://simulator:7070`, `sim`).
    pub bus: qwiic_bus::BusSpec,
    /// Slots for live event streams.
    pub streams: Arc<Semaphore>,
    /// Requests on the device routes now (at most `limits.requests`; see
    /// [`RequestSlot`](crate::extract::RequestSlot)).
    pub(crate) device_requests: Arc<AtomicUsize>,
    /// How much the service gives its peers.
    pub limits: Limits,
    /// The MQTT link, when MQTT is set.
    pub mqtt: Option<Mqtt>,
    /// Tasks [`run`](crate::run) waits for at the end (the MQTT task's goodbye).
    pub tasks: TaskTracker,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The LED's owner thread could not start.
    #[error("cannot start the LED's owner thread: {0}")]
    Thread(#[from] std::io::Error),
}

impl AppState {
    /// The one way to build the state: starts the LED's owner on `bus` (opened from the
    /// settings' bus, or a test's simulated button) as `settings` say. `shutdown` ends the
    /// live streams and the MQTT link.
    pub fn start(
        bus: Bus,
        settings: &Settings,
        shutdown: CancellationToken,
    ) -> Result<AppState, StartError> {
        let metrics = Metrics::default();
        let link = settings
            .device
            .link(bus, metrics.bus.clone(), "retrying on every request");
        let led = LedDevice::spawn(link, &metrics, settings.bus_timeout, settings.limits.wear)?;
        let tasks = TaskTracker::new();
        let mqtt = settings.mqtt.clone().map(|mqtt_settings| {
            let (mqtt, commands) = Mqtt::start("led", mqtt_settings, metrics.mqtt.clone());
            tasks.spawn(crate::mqtt::run(
                mqtt.clone(),
                commands,
                led.clone(),
                settings.brightness,
                metrics.clone(),
                shutdown.clone(),
            ));
            mqtt
        });
        Ok(AppState(Arc::new(Shared {
            led,
            metrics,
            token: settings.service.token.clone(),
            allowed_hosts: settings.allowed_hosts.clone(),
            default_brightness: settings.brightness,
            shutdown,
            instance: Arc::from(format!("{:016x}", fastrand::u64(..))),
            bus: settings.device.bus.clone(),
            streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
            device_requests: Arc::new(AtomicUsize::new(0)),
            limits: settings.limits,
            mqtt,
            tasks,
        })))
    }
}
