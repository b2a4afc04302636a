//! Prometheus metrics: requests by route and status, latency, I2C traffic and LED changes.

use std::borrow::Cow;
use std::sync::Arc;

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

/// Every metric of the service. Clones share the same values, and are one reference count
/// (every request clones it, with the route axum clones for it; a clone of every metric's own
/// count was ~17 of them).
#[derive(Debug, Clone, Default)]
pub struct Metrics(Arc<Instruments>);

impl std::ops::Deref for Metrics {
    type Target = Instruments;

    fn deref(&self) -> &Instruments {
        &self.0
    }
}

/// What [`Metrics`] holds.
#[derive(Debug)]
pub struct Instruments {
    registry: Registry,
    /// Requests served.
    pub requests: Family<RequestLabels, Counter>,
    /// Time from request to response.
    pub latency: HistogramFamily,
    /// I2C transactions attempted and failed.
    pub bus: BusCounters,
    /// LED settings written to the device.
    pub led_changes: Counter,
    /// Requests for the setting the LED already had: no write, no EEPROM wear.
    pub led_writes_skipped: Counter,
    /// LED writes that read back something else (each is written once more).
    pub led_write_mismatches: Counter,
    /// EEPROM bytes the LED writes changed (the wear budget: ~100,000 per byte).
    pub eeprom_byte_writes: Counter,
    /// Requests whose change was merged into a later one (at most one write per window).
    pub led_writes_coalesced: Counter,
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
        let mut registry = Registry::with_prefix("led_service");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let bus = BusCounters::default();
        let led_changes = Counter::default();
        let led_writes_skipped = Counter::default();
        let led_write_mismatches = Counter::default();
        let eeprom_byte_writes = Counter::default();
        let led_writes_coalesced = Counter::default();
        let event_streams = Gauge::default();
        let mqtt = MqttCounters::default();
        let mqtt_commands_rejected = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        bus.register(&mut registry);
        mqtt.register(&mut registry);
        registry.register(
            "mqtt_commands_rejected",
            "messages on <prefix>/led/set that were not a light command (nothing changed)",
            mqtt_commands_rejected.clone(),
        );
        registry.register(
            "led_changes",
            "LED settings written to the device",
            led_changes.clone(),
        );
        registry.register(
            "led_writes_skipped",
            "requests for the setting the LED already had (no EEPROM write)",
            led_writes_skipped.clone(),
        );
        registry.register(
            "led_write_mismatches",
            "LED writes that read back something else and were written again",
            led_write_mismatches.clone(),
        );
        registry.register(
            "led_writes_coalesced",
            "requests whose LED change was merged into a later one (a flood costs at most 10 writes a second)",
            led_writes_coalesced.clone(),
        );
        registry.register(
            "event_streams",
            "live event streams (GET /events) now",
            event_streams.clone(),
        );
        registry.register(
            "eeprom_byte_writes",
            "EEPROM bytes changed by LED writes (about 100,000 writes per byte in the ATtiny84's datasheet)",
            eeprom_byte_writes.clone(),
        );
        Instruments {
            registry,
            requests,
            latency,
            bus,
            led_changes,
            led_writes_skipped,
            led_write_mismatches,
            eeprom_byte_writes,
            led_writes_coalesced,
            event_streams,
            mqtt,
            mqtt_commands_rejected,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
