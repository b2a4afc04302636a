//! Prometheus metrics: requests by route and status, latency, I2C traffic and LED changes.

use std::borrow::Cow;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use qwiic_bus::BusCounters;
use service_kit::mqtt::MqttCounters;

/// Labels of `http_requests`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route pattern (`/{state}`), not the raw path, so cardinality stays bounded.
    pub route: Cow<'static, str>,
    /// HTTP method.
    pub method: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of `http_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route pattern.
    pub route: Cow<'static, str>,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Every metric of the service, with its registry; clones share the values and are one
/// reference count (every request clones it).
pub type Metrics = service_kit::metrics::Metrics<Instruments>;

/// The service's instruments.
#[derive(Debug)]
pub struct Instruments {
    /// Requests served.
    pub requests: Family<RequestLabels, Counter>,
    /// Time from request to response.
    pub latency: HistogramFamily,
    /// I2C transactions attempted and failed.
    pub bus: BusCounters,
    /// LED writes that reached the device (each write counts, read back right or not).
    pub led_changes: Counter,
    /// Requests for the setting the LED already had: no write, no EEPROM wear.
    pub led_writes_skipped: Counter,
    /// LED writes that read back something else (each is written once more).
    pub led_write_mismatches: Counter,
    /// EEPROM bytes the LED writes changed (the wear budget: ~100,000 per byte).
    pub eeprom_byte_writes: Counter,
    /// Requests whose change was merged into a later one (at most one write per window).
    pub led_writes_coalesced: Counter,
    /// Changes refused because the EEPROM wear budget was spent (429).
    pub led_writes_refused: Counter,
    /// Changes not written because every caller had gone (answered 504, or hung up).
    pub led_writes_abandoned: Counter,
    /// Live event streams now.
    pub event_streams: Gauge,
    /// The MQTT link's messages and connection (zero without MQTT).
    pub mqtt: MqttCounters,
    /// Messages on `<prefix>/led/set` that were not a light command.
    pub mqtt_commands_rejected: Counter,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Default for Instruments {
    fn default() -> Self {
        Instruments {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            bus: BusCounters::default(),
            led_changes: Counter::default(),
            led_writes_skipped: Counter::default(),
            led_write_mismatches: Counter::default(),
            eeprom_byte_writes: Counter::default(),
            led_writes_coalesced: Counter::default(),
            led_writes_refused: Counter::default(),
            led_writes_abandoned: Counter::default(),
            event_streams: Gauge::default(),
            mqtt: MqttCounters::default(),
            mqtt_commands_rejected: Counter::default(),
        }
    }
}

impl service_kit::metrics::Instruments for Instruments {
    const PREFIX: &'static str = "led_service";

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            self.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            self.latency.clone(),
        );
        self.bus.register(registry);
        self.mqtt.register(registry);
        for (name, help, counter) in [
            (
                "mqtt_commands_rejected",
                "messages on <prefix>/led/set that were not a light command (nothing changed)",
                &self.mqtt_commands_rejected,
            ),
            (
                "led_changes",
                "LED writes that reached the device (a write read back wrong and written again counts twice)",
                &self.led_changes,
            ),
            (
                "led_writes_skipped",
                "requests for the setting the LED already had (no EEPROM write)",
                &self.led_writes_skipped,
            ),
            (
                "led_write_mismatches",
                "LED writes that read back something else and were written again",
                &self.led_write_mismatches,
            ),
            (
                "led_writes_coalesced",
                "requests whose LED change was merged into a later one (a flood costs at most 10 writes a second)",
                &self.led_writes_coalesced,
            ),
            (
                "led_writes_refused",
                "LED changes refused because the EEPROM wear budget was spent (answered 429)",
                &self.led_writes_refused,
            ),
            (
                "led_writes_abandoned",
                "LED changes not written because every caller had gone (answered 504, or hung up)",
                &self.led_writes_abandoned,
            ),
            (
                "eeprom_byte_writes",
                "EEPROM bytes changed by LED writes (about 100,000 writes per byte in the ATtiny84's datasheet)",
                &self.eeprom_byte_writes,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "event_streams",
            "live event streams (GET /events) now",
            self.event_streams.clone(),
        );
    }
}
