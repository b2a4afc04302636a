//! The LED on MQTT (see `service_kit::mqtt` for the link), in Home Assistant's JSON light
//! schema: commands on `<prefix>/led/set`, the LED on `<prefix>/led/state` (retained) after
//! every change from any source (HTTP, MQTT, the switch-off at shutdown), and the LED
//! announced to Home Assistant as a `light` with brightness.
//!
//! | topic | payload | |
//! |---|---|---|
//! | `<prefix>/led/set` | `{"state": "ON", "brightness": 1-255}` or `{"state": "OFF"}` | subscribed |
//! | `<prefix>/led/state` | `{"state": "ON", "brightness": N, "color_mode": "brightness"}` or `{"state": "OFF", ...}` | retained |
//! | `<prefix>/led/availability` | `online` or `offline` | retained, last will |
//!
//! A command that is not that (not JSON, a brightness out of range, an unknown field) changes
//! nothing, is counted, and is logged once per burst.

use std::time::Duration;

use qwiic_bus::HealthView;
use qwiic_button::LedConfig;
use runtime_kit::Burst;
use serde::Deserialize;
use serde_json::json;
use service_kit::CancellationToken;
use service_kit::mqtt::{Announcer, Incoming, Mqtt};
use tokio::sync::mpsc;

use crate::led::{LedDevice, LedState};
use crate::metrics::Metrics;

/// A command in Home Assistant's JSON light schema, as far as this LED goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct LightCommand {
    state: Switch,
    brightness: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum Switch {
    On,
    Off,
}

/// What the LED is to become, or why not.
fn command(payload: &[u8], last_brightness: u8) -> Result<LedConfig, String> {
    let command: LightCommand = serde_json::from_slice(payload).map_err(|error| {
        format!(
            "{error}; accepted: {{\"state\": \"ON\"}}, {{\"state\": \"ON\", \"brightness\": 1-255}} or {{\"state\": \"OFF\"}}"
        )
    })?;
    match command {
        LightCommand {
            state: Switch::Off, ..
        } => Ok(LedConfig::OFF),
        LightCommand {
            brightness: Some(0),
            ..
        } => Err("brightness 0 with state ON: use 1-255, or {\"state\": \"OFF\"}".into()),
        LightCommand { brightness, .. } => {
            Ok(LedConfig::steady(brightness.unwrap_or(last_brightness)))
        }
    }
}

/// The state Home Assistant reads: `state` always, brightness while on.
fn state_payload(led: LedConfig) -> String {
    if led.is_on() {
        json!({"state": "ON", "brightness": led.brightness, "color_mode": "brightness"})
    } else {
        json!({"state": "OFF", "color_mode": "brightness"})
    }
    .to_string()
}

/// Carries out commands from `incoming` and publishes every change of `led`, until `shutdown`;
/// then waits (briefly) for the switch-off, publishes it, and closes the link.
pub async fn run(
    mqtt: Mqtt,
    mut incoming: mpsc::Receiver<Incoming>,
    led: LedDevice,
    default_brightness: u8,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let (set, state) = (mqtt.topic("led/set"), mqtt.topic("led/state"));
    mqtt.subscribe(&set);
    let button: HealthView = led.button();
    let mut button_changes = button.updates();
    let mut updates = led.updates();
    let mut announcer = Announcer::default();
    let mut last_brightness = default_brightness;
    let mut rejecting = Burst::default();
    // Until the button is found, ask for it now and then: the announcement needs its firmware,
    // and without requests nothing else would look.
    let mut look = tokio::time::interval(Duration::from_secs(5));
    loop {
        if announcer.update(button.firmware(), |firmware| {
            announce(&mqtt, &set, &state, firmware);
        }) {
            // What the LED shows now, for the retained state (read from the device).
            let _ = led.get().await;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = button_changes.changed() => if changed.is_err() { break },
            _ = look.tick(), if !announcer.has_announced() => {
                let _ = led.health().await;
            }
            changed = updates.changed() => {
                if changed.is_err() {
                    break;
                }
                let current: Option<LedState> = updates.borrow_and_update().clone();
                if let Some(current) = current {
                    if current.led.is_on() {
                        last_brightness = current.led.brightness;
                    }
                    mqtt.publish(&state, state_payload(current.led), true);
                }
            }
            message = incoming.recv() => {
                let Some(message) = message else { break };
                match command(&message.payload, last_brightness) {
                    Ok(wanted) => {
                        if let Some(burst) = rejecting.end() {
                            tracing::info!(rejected = burst.count, "a valid command on {set} again");
                        }
                        if let Err(error) = led.set(wanted, "mqtt").await {
                            tracing::debug!(%error, "an MQTT command could not be carried out");
                        }
                    }
                    Err(why) => {
                        metrics.mqtt_commands_rejected.inc();
                        if rejecting.hit() {
                            tracing::warn!("ignoring commands on {set} that are not a light command: {why}");
                        }
                    }
                }
            }
        }
    }
    // The service switches the LED off on its way out: show that, then say offline.
    let _ = tokio::time::timeout(
        crate::limits::SWITCH_OFF_DEADLINE + Duration::from_millis(200),
        async {
            loop {
                let off =
                    updates.borrow_and_update().as_ref().map(|s| s.led.is_on()) == Some(false);
                if off || updates.changed().await.is_err() {
                    break;
                }
            }
        },
    )
    .await;
    if let Some(current) = updates.borrow().clone() {
        mqtt.publish(&state, state_payload(current.led), true);
    }
    mqtt.close().await;
}

/// The `light`, with brightness, under the one device.
fn announce(mqtt: &Mqtt, set: &str, state: &str, firmware: &str) {
    mqtt.announce(
        "light",
        "led",
        json!({
            "name": "LED",
            "schema": "json",
            "command_topic": set,
            "state_topic": state,
            "supported_color_modes": ["brightness"],
            "brightness": true,
            "brightness_scale": 255,
            "flash": false,
            "transition": false,
            "qos": 1,
        }),
        firmware,
        env!("CARGO_PKG_VERSION"),
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn home_assistants_commands_become_settings_and_anything_else_says_what_is_accepted() {
        for (payload, wanted) in [
            (r#"{"state": "ON"}"#, LedConfig::steady(77)),
            (
                r#"{"state": "ON", "brightness": 128}"#,
                LedConfig::steady(128),
            ),
            (r#"{"state": "OFF"}"#, LedConfig::OFF),
            (r#"{"state": "OFF", "brightness": 9}"#, LedConfig::OFF),
        ] {
            assert_eq!(
                command(payload.as_bytes(), 77).unwrap(),
                wanted,
                "{payload}"
            );
        }
        for (payload, says) in [
            ("ON", "accepted: {\"state\": \"ON\"}"),
            (r#"{"state": "on"}"#, "accepted"),
            (r#"{"state": "ON", "brightness": 256}"#, "accepted"),
            (r#"{"state": "ON", "brightness": -1}"#, "accepted"),
            (r#"{"state": "ON", "brightness": 0}"#, "use 1-255"),
            (r#"{"state": "ON", "color": {"r": 1}}"#, "unknown field"),
            (r#"{"brightness": 5}"#, "missing field `state`"),
            ("", "accepted"),
        ] {
            let why = command(payload.as_bytes(), 77).unwrap_err();
            assert!(why.contains(says), "{payload}: {why}");
        }
    }

    #[test]
    fn the_state_always_says_on_or_off_and_brightness_only_while_on() {
        let on: serde_json::Value =
            serde_json::from_str(&state_payload(LedConfig::steady(128))).unwrap();
        assert_eq!(on["state"], "ON");
        assert_eq!(on["brightness"], 128);
        let off: serde_json::Value = serde_json::from_str(&state_payload(LedConfig::OFF)).unwrap();
        assert_eq!(off["state"], "OFF");
        assert!(off.get("brightness").is_none(), "Home Assistant ignores 0");
    }
}
