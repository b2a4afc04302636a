//! Prometheus metrics: polls, sends, failures, outages, and the age of the last good send.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use qwiic_bus::BusCounters;
use service_kit::mqtt::MqttCounters;

/// Every metric of the service, with its registry. Clones share the values.
pub type Metrics = service_kit::metrics::Metrics<Instruments>;

/// The service's instruments.
#[derive(Debug, Default)]
pub struct Instruments {
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
    last_success: Mutex<Option<Instant>>,
}

impl service_kit::metrics::Instruments for Instruments {
    const PREFIX: &'static str = "button_service";

    fn register(&self, registry: &mut Registry) {
        for (name, help, counter) in [
            ("polls", "button reads attempted", &self.polls),
            ("poll_errors", "button reads that failed", &self.poll_errors),
            (
                "presses",
                "presses seen, including ones shorter than the poll period",
                &self.presses,
            ),
            ("sends", "requests sent to the LED service", &self.sends),
            (
                "send_failures",
                "requests to the LED service that failed",
                &self.send_failures,
            ),
            ("outages", "LED service outages", &self.outages),
            (
                "checks",
                "checks of the LED service (GET /healthz)",
                &self.checks,
            ),
            (
                "superseded",
                "button events not sent because a later state replaced them",
                &self.superseded,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        self.bus.register(registry);
        self.mqtt.register(registry);
        registry.register(
            "last_successful_send_age_milliseconds",
            "time since the LED service last accepted a state (-1: never)",
            self.last_send_age_ms.clone(),
        );
    }

    fn refresh(&self) {
        let age = self
            .last_success
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map_or(-1, |at| {
                i64::try_from(at.elapsed().as_millis()).unwrap_or(i64::MAX)
            });
        self.last_send_age_ms.set(age);
    }
}

impl Instruments {
    /// Notes a send the LED service accepted.
    pub fn record_success(&self) {
        *self
            .last_success
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }
}
