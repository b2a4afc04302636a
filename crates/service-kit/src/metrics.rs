//! Prometheus metrics, one pattern for every service: a service declares its instruments as
//! one struct ([`Instruments`]: its counters, gauges and histograms, and how each is
//! registered), and [`Metrics`] holds them with their registry in one allocation, so that the
//! clone each request or task makes is one reference count. `/metrics` answers
//! [`Metrics::response`].

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::registry::Registry;

/// A service's instruments.
pub trait Instruments: Default + Send + Sync + 'static {
    /// The prefix of every metric's name (`led_service`).
    const PREFIX: &'static str;
    /// Registers every instrument (names without the prefix).
    fn register(&self, registry: &mut Registry);
    /// Brings what is computed at read time (the age of something, say) up to date, before
    /// each exposition.
    fn refresh(&self) {}
}

/// A service's instruments and their registry. Clones share the values.
#[derive(Debug)]
pub struct Metrics<I>(Arc<Registered<I>>);

#[derive(Debug)]
struct Registered<I> {
    registry: Registry,
    instruments: I,
}

impl<I> Clone for Metrics<I> {
    fn clone(&self) -> Self {
        Metrics(Arc::clone(&self.0))
    }
}

impl<I: Instruments> Default for Metrics<I> {
    fn default() -> Self {
        let instruments = I::default();
        let mut registry = Registry::with_prefix(I::PREFIX);
        instruments.register(&mut registry);
        Metrics(Arc::new(Registered {
            registry,
            instruments,
        }))
    }
}

impl<I> std::ops::Deref for Metrics<I> {
    type Target = I;

    fn deref(&self) -> &I {
        &self.0.instruments
    }
}

impl<I: Instruments> Metrics<I> {
    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        self.0.instruments.refresh();
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.0.registry);
        text
    }

    /// The answer to `GET /metrics`.
    pub fn response(&self) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            self.encode(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::gauge::Gauge;

    use super::*;

    #[derive(Debug, Default)]
    struct Probe {
        hits: Counter,
        refreshed: Gauge,
    }

    impl Instruments for Probe {
        const PREFIX: &'static str = "probe";

        fn register(&self, registry: &mut Registry) {
            registry.register("hits", "hits", self.hits.clone());
            registry.register("refreshed", "refreshes", self.refreshed.clone());
        }

        fn refresh(&self) {
            self.refreshed.inc();
        }
    }

    #[test]
    fn clones_share_the_values_and_each_exposition_is_refreshed_first() {
        let metrics = Metrics::<Probe>::default();
        metrics.clone().hits.inc();
        let text = metrics.encode();
        assert!(text.contains("probe_hits_total 1"), "{text}");
        assert!(text.contains("probe_refreshed 1"), "{text}");
        assert!(metrics.encode().contains("probe_refreshed 2"));
        let response = metrics.response();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
    }
}
