//! Server-sent events of JSON values, for the pages that follow a device live: each item of a
//! stream becomes one event named `name` with the item as its JSON data, until `until`
//! completes (the service's shutdown), with keep-alive comments in between.

use std::convert::Infallible;
use std::future::Future;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt as _};
use serde::Serialize;

/// `items` as server-sent events named `name`, ending when `until` completes.
pub fn json_events<T, S, U>(
    name: &'static str,
    items: S,
    until: U,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    T: Serialize,
    S: Stream<Item = T> + Send + 'static,
    U: Future<Output: Send> + Send + 'static,
{
    let events = items
        .map(move |item| {
            let event = Event::default().event(name).json_data(item);
            Ok::<_, Infallible>(
                event.unwrap_or_else(|_| Event::default().comment("encoding failed")),
            )
        })
        .take_until(until);
    Sse::new(events).keep_alive(KeepAlive::default())
}
