//! The button on MQTT (see `service_kit::mqtt` for the link): every gesture (`gestures.rs`) on
//! `<prefix>/button/event`, the level on `<prefix>/button/state` (retained), and the button
//! announced to Home Assistant as an `event` entity, a `binary_sensor`, a device trigger per
//! gesture, and the bus's errors and rejected readings as diagnostics.
//!
//! | topic | payload | |
//! |---|---|---|
//! | `<prefix>/button/event` | `{"event": "single", "event_type": "single", "at": "...", "seq": N}` | QoS 1, not retained; kept through a broker outage (the link's outbox) |
//! | `<prefix>/button/state` | `pressed` or `released` | retained |
//! | `<prefix>/button/availability` | `online` or `offline` | retained, last will |
//! | `<prefix>/button/device` | `online` while the button answers, else `offline` | retained |
//!
//! (`event_type` repeats `event` for Home Assistant's event entity, which reads that key.)

use qwiic_bus::{BusCounters, HealthView};
use serde_json::json;
use service_kit::CancellationToken;
use service_kit::mqtt::{Announcer, Component, DIAGNOSTICS_EVERY, Diagnostic, Legacy, Mqtt};
use tokio::sync::broadcast;

use crate::gestures::{Gesture, GestureEvent};

/// Publishes `gestures` until `shutdown`, then closes the link (`offline`); announces the
/// button to Home Assistant once its firmware is known (and again if it changes), with the
/// gestures a machine counting up to `max_presses` tells.
pub async fn run(
    mqtt: Mqtt,
    mut gestures: broadcast::Receiver<GestureEvent>,
    button: HealthView,
    bus: BusCounters,
    max_presses: u8,
    shutdown: CancellationToken,
) {
    let (event, state) = (mqtt.topic("button/event"), mqtt.topic("button/state"));
    let mut announcer = Announcer::default();
    let mut button_changes = button.updates();
    let mut look = tokio::time::interval(DIAGNOSTICS_EVERY);
    loop {
        mqtt.set_device_answering(button.firmware().is_some());
        announcer.update(button.firmware(), |firmware| {
            let mut components = components(&event, &state, max_presses);
            components.extend(mqtt.diagnostic_components(&DIAGNOSTICS));
            mqtt.announce_device(&components, &LEGACY, firmware, env!("CARGO_PKG_VERSION"));
        });
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = button_changes.changed() => if changed.is_err() { break },
            _ = look.tick() => mqtt.publish_diagnostics(&json!({
                "bus_errors": bus.errors.get(),
                "rejected_readings": bus.rejected_readings.get(),
            })),
            received = gestures.recv() => match received {
                Ok(told) => {
                    let name = told.gesture.name();
                    let payload = json!({
                        "event": name,
                        "event_type": name,
                        "at": humantime::format_rfc3339_millis(told.at).to_string(),
                        "seq": told.seq,
                    });
                    mqtt.deliver(&event, payload.to_string());
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

/// The single-entity configs of earlier versions, handed over to the device's message.
const LEGACY: [Legacy; 2] = [("event", "button"), ("binary_sensor", "pressed")];

/// What button-service tells Home Assistant about the bus, as diagnostic sensors.
const DIAGNOSTICS: [Diagnostic; 2] = [
    Diagnostic {
        key: "bus_errors",
        name: "Bus errors",
        unit: None,
        count: true,
    },
    Diagnostic {
        key: "rejected_readings",
        name: "Rejected readings",
        unit: None,
        count: true,
    },
];

/// Home Assistant's device-trigger type for a gesture that is one (press and release are
/// edges: the `pressed` sensor has them). Home Assistant's automation editor names the first
/// seven ("double clicked", "released after long press"); `repeat` it shows as it is.
pub fn trigger_type(gesture: Gesture) -> Option<&'static str> {
    Some(match gesture {
        Gesture::Press | Gesture::Release => return None,
        Gesture::Presses(1) => "button_short_press",
        Gesture::Presses(2) => "button_double_press",
        Gesture::Presses(3) => "button_triple_press",
        Gesture::Presses(4) => "button_quadruple_press",
        Gesture::Presses(_) => "button_quintuple_press",
        Gesture::Long => "button_long_press",
        Gesture::Repeat => "repeat",
        Gesture::LongRelease => "button_long_release",
    })
}

/// The button's part of the device: the `event` entity (every gesture), the `binary_sensor`
/// (pressed), and a device trigger per gesture, announced before any press so that
/// automations can be built from them at once.
fn components(event: &str, state: &str, max_presses: u8) -> Vec<Component> {
    let gestures = Gesture::all(max_presses);
    let types: Vec<&str> = gestures.iter().map(|gesture| gesture.name()).collect();
    let mut components = vec![
        Component::new(
            "event",
            "button",
            json!({
                "name": "Button",
                "state_topic": event,
                "event_types": types,
                "device_class": "button",
            }),
        ),
        Component::new(
            "binary_sensor",
            "pressed",
            json!({
                "name": "Pressed",
                "state_topic": state,
                "payload_on": "pressed",
                "payload_off": "released",
            }),
        ),
    ];
    for gesture in gestures {
        if let Some(kind) = trigger_type(gesture) {
            components.push(Component::new(
                "device_automation",
                format!("trigger_{}", gesture.name()),
                json!({
                    "automation_type": "trigger",
                    "topic": event,
                    "value_template": "{{ value_json.event }}",
                    "payload": gesture.name(),
                    "type": kind,
                    "subtype": "button_1",
                }),
            ));
        }
    }
    components
}
