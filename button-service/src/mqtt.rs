//! The button on MQTT (see `service_kit::mqtt` for the link): every gesture on
//! `<prefix>/button/event`, the level on `<prefix>/button/state` (retained), and the button
//! announced to Home Assistant as an `event` entity and a `binary_sensor`.
//!
//! | topic | payload | |
//! |---|---|---|
//! | `<prefix>/button/event` | `{"event": "single", "event_type": "single", "at": "...", "seq": N}` | QoS 1, not retained |
//! | `<prefix>/button/state` | `pressed` or `released` | retained |
//! | `<prefix>/button/availability` | `online` or `offline` | retained, last will |
//!
//! (`event_type` repeats `event` for Home Assistant's event entity, which reads that key.)

use qwiic_bus::HealthView;
use serde_json::json;
use service_kit::CancellationToken;
use service_kit::mqtt::{Announcer, Mqtt};
use tokio::sync::broadcast;

use crate::gestures::{Gesture, GestureEvent};

/// Publishes `gestures` until `shutdown`, then closes the link (`offline`); announces the
/// button to Home Assistant once its firmware is known (and again if it changes).
pub async fn run(
    mqtt: Mqtt,
    mut gestures: broadcast::Receiver<GestureEvent>,
    button: HealthView,
    shutdown: CancellationToken,
) {
    let (event, state) = (mqtt.topic("button/event"), mqtt.topic("button/state"));
    let mut announcer = Announcer::default();
    let mut button_changes = button.updates();
    loop {
        announcer.update(button.firmware(), |firmware| {
            announce(&mqtt, &event, &state, firmware);
        });
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = button_changes.changed() => if changed.is_err() { break },
            received = gestures.recv() => match received {
                Ok(told) => {
                    let name = told.gesture.name();
                    let payload = json!({
                        "event": name,
                        "event_type": name,
                        "at": humantime::format_rfc3339_millis(told.at).to_string(),
                        "seq": told.seq,
                    });
                    mqtt.publish(&event, payload.to_string(), false);
                    match told.gesture {
                        Gesture::Press => mqtt.publish(&state, "pressed", true),
                        Gesture::Release => mqtt.publish(&state, "released", true),
                        _ => {}
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "MQTT fell behind the gestures; they are not sent");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    mqtt.close().await;
}

/// The `event` entity (every gesture) and the `binary_sensor` (pressed), one device.
fn announce(mqtt: &Mqtt, event: &str, state: &str, firmware: &str) {
    let version = env!("CARGO_PKG_VERSION");
    let types: Vec<&str> = Gesture::ALL.iter().map(|gesture| gesture.name()).collect();
    mqtt.announce(
        "event",
        "button",
        json!({
            "name": "Button",
            "state_topic": event,
            "event_types": types,
            "device_class": "button",
            "qos": 1,
        }),
        firmware,
        version,
    );
    mqtt.announce(
        "binary_sensor",
        "pressed",
        json!({
            "name": "Pressed",
            "state_topic": state,
            "payload_on": "pressed",
            "payload_off": "released",
            "qos": 1,
        }),
        firmware,
        version,
    );
}
