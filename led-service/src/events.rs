//! `GET /events`: the LED as server-sent events, one `led` event per change, ending when the
//! service stops; at most [`MAX_EVENT_STREAMS`](crate::limits::MAX_EVENT_STREAMS) at once, each counted in /metrics while it
//! lives.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use futures_util::StreamExt as _;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::wrappers::WatchStream;

use crate::error::ApiError;
use crate::state::AppState;
use crate::views::LedView;

/// The LED as server-sent events.
pub async fn events(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let slot = Arc::clone(&state.streams)
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyStreams)?;
    let open = StreamGauge::new(state.metrics.event_streams.clone(), slot);
    let changes = WatchStream::new(state.led.updates())
        .filter_map(std::future::ready)
        // The gauge and the slot go with the stream: released when it is dropped.
        .map(move |led| {
            let _ = &open;
            LedView::from(led)
        });
    Ok(service_kit::sse::json_events(
        "led",
        changes,
        state.shutdown.clone().cancelled_owned(),
    ))
}

/// One open event stream: counted in /metrics while it lives, holding its slot.
struct StreamGauge {
    gauge: Gauge,
    _slot: OwnedSemaphorePermit,
}

impl StreamGauge {
    fn new(gauge: Gauge, slot: OwnedSemaphorePermit) -> Self {
        gauge.inc();
        StreamGauge { gauge, _slot: slot }
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
