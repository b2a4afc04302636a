//! Prometheus metrics: polls, sends, failures, outages, and the age of the last good send.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use qwiic_bus::BusCounters;
use service_kit::mqtt::MqttCounters;

/// Every metric of the service. Clones share the same values.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Button reads attempted.
    pub polls: Counter,
    /// Button reads that failed.
    pub poll_errors: Counter,
    /// Presses seen (including those shorter than the poll period).
    pub presses: Counter,
    /// Requests sent to the LED service.
    pub sends: Counter,
    /// Requests that failed (timeout, refused, non-2xx).
    pub send_failures: Counter,
    /// Outages of the LED service (each counted once, when it starts).
    pub outages: Counter,
    /// Checks of the LED service (`GET /healthz`).
    pub checks: Counter,
    /// Events never sent because a later state replaced them (a backlog or an outage).
    pub superseded: Counter,
    /// I2C transactions attempted and failed.
    pub bus: BusCounters,
    /// The MQTT link's messages and connection (zero without MQTT).
    pub mqtt: MqttCounters,
    last_send_age_ms: Gauge,
    last_success: Arc<Mutex<Option<Instant>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("button_service");
        let metrics = Metrics {
            registry: Arc::new(Registry::default()),
            polls: Counter::default(),
            poll_errors: Counter::default(),
            presses: Counter::default(),
            sends: Counter::default(),
            send_failures: Counter::default(),
            outages: Counter::default(),
            checks: Counter::default(),
            superseded: Counter::default(),
            bus: BusCounters::default(),
            mqtt: MqttCounters::default(),
            last_send_age_ms: Gauge::default(),
            last_success: Arc::new(Mutex::new(None)),
        };
        for (name, help, counter) in [
            ("polls", "button reads attempted", &metrics.polls),
            (
                "poll_errors",
                "button reads that failed",
                &metrics.poll_errors,
            ),
            (
                "presses",
                "presses seen, including ones shorter than the poll period",
                &metrics.presses,
            ),
            ("sends", "requests sent to the LED service", &metrics.sends),
            (
                "send_failures",
                "requests to the LED service that failed",
                &metrics.send_failures,
            ),
            ("outages", "LED service outages", &metrics.outages),
            (
                "checks",
                "checks of the LED service (GET /healthz)",
                &metrics.checks,
            ),
            (
                "superseded",
                "button events not sent because a later state replaced them",
                &metrics.superseded,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        metrics.bus.register(&mut registry);
        metrics.mqtt.register(&mut registry);
        registry.register(
            "last_successful_send_age_milliseconds",
            "time since the LED service last accepted a state (-1: never)",
            metrics.last_send_age_ms.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            ..metrics
        }
    }
}

impl Metrics {
    /// Notes a send the LED service accepted.
    pub fn record_success(&self) {
        *self
            .last_success
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let age = self
            .last_success
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map_or(-1, |at| {
                i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX)
            });
        self.last_send_age_ms.set(age);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
