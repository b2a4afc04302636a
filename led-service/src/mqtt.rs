//! The LED on MQTT (see `service_kit::mqtt` for the link), in Home Assistant's JSON light
//! schema: commands on `<prefix>/led/set`, the LED on `<prefix>/led/state` (retained) after
//! every change from any source (HTTP, MQTT, the switch-off at shutdown), and the LED
//! announced to Home Assistant as a `light` with brightness, effects (`effects.rs`) and flash,
//! and the EEPROM bytes written and the wear budget spent as diagnostics.
//!
//! | topic | payload | |
//! |---|---|---|
//! | `<prefix>/led/set` | `{"state": "ON", "brightness": 1-255, "effect": "pulse", "flash": 2}` (each but `state` optional) or `{"state": "OFF"}` | subscribed |
//! | `<prefix>/led/state` | `{"state": "ON", "brightness": N, "color_mode": "brightness", "effect": "steady"}` (or the effect shown) or `{"state": "OFF", ...}` | retained |
//! | `<prefix>/led/availability` | `online` or `offline` | retained, last will |
//! | `<prefix>/led/device` | `online` while the button answers, else `offline` | retained |
//!
//! A flash blinks for its seconds, then sets back what the LED showed before (a command in
//! between, or a change from the button or HTTP, ends it). A command without an effect keeps
//! the one shown. No transitions: each step would be an EEPROM write on the button.
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
use service_kit::mqtt::{Announcer, Component, Diagnostic, Incoming, Legacy, Mqtt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::effects::Effect;
use crate::led::{LedDevice, LedState};
use crate::metrics::Metrics;

/// How often the button is asked for while nothing else asks: the light shows unavailable at
/// most this long after the button stops answering.
const LOOK: Duration = Duration::from_secs(5);

/// A command in Home Assistant's JSON light schema, as far as this LED goes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct LightCommand {
    state: Switch,
    brightness: Option<u8>,
    effect: Option<String>,
    /// Seconds (Home Assistant sends its `flash_time_short` or `flash_time_long`).
    flash: Option<u16>,
    /// Refused with a reason: not announced, and each step would be an EEPROM write.
    transition: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum Switch {
    On,
    Off,
}

/// The longest flash: Home Assistant's long flash is 10 s.
const MAX_FLASH_S: u16 = 60;
/// After a failed attempt to end a flash, the next.
const FLASH_RETRY: Duration = Duration::from_secs(1);
/// Who changes the LED, for the LED's record of its last change.
const BY: &str = "mqtt";

/// What a command asks of the LED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// This setting, until told otherwise.
    Set(LedConfig),
    /// Blink for this long, then back to what it showed.
    Flash(LedConfig, Duration),
}

/// What the LED is to become, or why not; `shown` is the effect it shows now (kept when a
/// command names none: Home Assistant's brightness slider sends only the brightness).
fn command(payload: &[u8], last_brightness: u8, shown: Option<Effect>) -> Result<Wanted, String> {
    let command: LightCommand = serde_json::from_slice(payload).map_err(|error| {
        format!(
            "{error}; accepted: {{\"state\": \"ON\"}}, {{\"state\": \"ON\", \"brightness\": 1-255}}, {{\"state\": \"ON\", \"effect\": \"pulse\"}}, {{\"state\": \"ON\", \"flash\": 2}} or {{\"state\": \"OFF\"}}"
        )
    })?;
    if command.transition.is_some() {
        return Err("transition is not supported: each step would be an EEPROM write on the button; send the brightness wanted".into());
    }
    if command.state == Switch::Off {
        return Ok(Wanted::Set(LedConfig::OFF));
    }
    let brightness = match command.brightness {
        Some(0) => {
            return Err("brightness 0 with state ON: use 1-255, or {\"state\": \"OFF\"}".into());
        }
        Some(brightness) => brightness,
        None => last_brightness,
    };
    let effect = match command.effect.as_deref() {
        None => None,
        Some(name) => Some(Effect::named(name).ok_or_else(|| {
            let names: Vec<&str> = Effect::ALL.iter().map(|effect| effect.name()).collect();
            format!("no effect {name:?}: the LED has {}", names.join(", "))
        })?),
    };
    match command.flash {
        Some(seconds) if (1..=MAX_FLASH_S).contains(&seconds) => Ok(Wanted::Flash(
            Effect::Blink.at(brightness),
            Duration::from_secs(seconds.into()),
        )),
        Some(seconds) => Err(format!(
            "flash for {seconds} s: give 1 to {MAX_FLASH_S} seconds (Home Assistant sends 2 or 10)"
        )),
        None => Ok(Wanted::Set(
            effect.or(shown).unwrap_or(Effect::Steady).at(brightness),
        )),
    }
}

/// The state Home Assistant reads: `state` always, brightness while on, and the effect
/// (`steady` without one; `null` when dark or a pulse that is none of them: Home Assistant
/// keeps the last one it was told otherwise).
fn state_payload(led: LedConfig) -> String {
    let effect = Effect::shown_by(led).map(Effect::name);
    if led.is_on() {
        json!({"state": "ON", "brightness": led.brightness, "color_mode": "brightness", "effect": effect})
    } else {
        json!({"state": "OFF", "color_mode": "brightness", "effect": null})
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
    // A flash under way: when it ends, and what the LED showed before it.
    let mut flash: Option<(Instant, LedConfig)> = None;
    // Ask for the button now and then: the announcement needs its firmware, and the light's
    // availability whether it still answers; without requests nothing else would look (a
    // health check is free when the button answered within the last second).
    let mut look = tokio::time::interval(LOOK);
    loop {
        mqtt.set_device_answering(button.firmware().is_some());
        if announcer.update(button.firmware(), |firmware| {
            let mut components = components(&set, &state);
            components.extend(mqtt.diagnostic_components(&DIAGNOSTICS));
            mqtt.announce_device(&components, &LEGACY, firmware, env!("CARGO_PKG_VERSION"));
        }) {
            // What the LED shows now, for the retained state (read from the device).
            let _ = led.get().await;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = button_changes.changed() => if changed.is_err() { break },
            _ = look.tick() => {
                let _ = led.health().await;
                mqtt.publish_diagnostics(&json!({
                    "eeprom_byte_writes": metrics.eeprom_byte_writes.get(),
                    "wear_budget_spent": led.wear_budget_spent_percent(),
                }));
            }
            () = runtime_kit::sleep_until(flash.map(|(until, _)| until)) => {
                if let Some((_, before)) = flash.take() {
                    if let Err(error) = led.set(before, BY).await {
                        // Refused (the wear budget) or the bus: try again rather than blink on.
                        tracing::debug!(%error, "the LED could not be set back after a flash; trying again in 1 s");
                        flash = Some((Instant::now() + FLASH_RETRY, before));
                    }
                }
            }
            changed = updates.changed() => {
                if changed.is_err() {
                    break;
                }
                let current: Option<LedState> = updates.borrow_and_update().clone();
                if let Some(current) = current {
                    // A change from elsewhere (the button, HTTP) ends a flash: setting back
                    // what the LED showed before would undo it.
                    if current.change.as_ref().is_some_and(|change| change.by != BY) {
                        flash = None;
                    }
                    if current.led.is_on() {
                        last_brightness = current.led.brightness;
                    }
                    mqtt.publish(&state, state_payload(current.led), true);
                }
            }
            message = incoming.recv() => {
                let Some(message) = message else { break };
                let shown = updates
                    .borrow()
                    .as_ref()
                    .and_then(|current| Effect::shown_by(current.led));
                match command(&message.payload, last_brightness, shown) {
                    Ok(wanted) => {
                        if let Some(burst) = rejecting.end() {
                            tracing::info!(rejected = burst.count, "a valid command on {set} again");
                        }
                        let setting = match wanted {
                            Wanted::Set(setting) => {
                                flash = None;
                                setting
                            }
                            Wanted::Flash(blink, length) => {
                                // Back to what it showed before the first of several flashes.
                                let before = match flash {
                                    Some((_, before)) => Ok(before),
                                    None => led.get().await.map(|current| current.led),
                                };
                                match before {
                                    Ok(before) => {
                                        flash = Some((Instant::now() + length, before));
                                        blink
                                    }
                                    Err(error) => {
                                        tracing::debug!(%error, "no flash: the LED could not be read");
                                        continue;
                                    }
                                }
                            }
                        };
                        if let Err(error) = led.set(setting, BY).await {
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

/// The single-entity config of earlier versions, handed over to the device's message.
const LEGACY: [Legacy; 1] = [("light", "led")];

/// What led-service tells Home Assistant about the LED's EEPROM, as diagnostic sensors.
const DIAGNOSTICS: [Diagnostic; 2] = [
    Diagnostic {
        key: "eeprom_byte_writes",
        name: "EEPROM bytes written",
        unit: None,
        count: true,
    },
    Diagnostic {
        key: "wear_budget_spent",
        name: "Wear budget spent",
        unit: Some("%"),
        count: false,
    },
];

/// The LED's part of the device: the `light`, with brightness, effects and flash.
fn components(set: &str, state: &str) -> Vec<Component> {
    vec![Component::new(
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
            "effect": true,
            "effect_list": Effect::ALL.map(Effect::name),
            "flash": true,
            "flash_time_short": 2,
            "flash_time_long": 10,
            "transition": false,
        }),
    )]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn home_assistants_commands_become_settings_and_anything_else_says_what_is_accepted() {
        use Wanted::{Flash, Set};
        for (payload, wanted) in [
            (r#"{"state": "ON"}"#, Set(LedConfig::steady(77))),
            (
                r#"{"state": "ON", "brightness": 128}"#,
                Set(LedConfig::steady(128)),
            ),
            (r#"{"state": "OFF"}"#, Set(LedConfig::OFF)),
            (r#"{"state": "OFF", "brightness": 9}"#, Set(LedConfig::OFF)),
            (
                r#"{"state": "ON", "effect": "breathe"}"#,
                Set(Effect::Breathe.at(77)),
            ),
            (
                r#"{"state": "ON", "effect": "pulse", "brightness": 30}"#,
                Set(Effect::Pulse.at(30)),
            ),
            (
                r#"{"state": "ON", "flash": 2}"#,
                Flash(Effect::Blink.at(77), Duration::from_secs(2)),
            ),
            (
                r#"{"state": "ON", "flash": 10, "brightness": 9}"#,
                Flash(Effect::Blink.at(9), Duration::from_secs(10)),
            ),
            (r#"{"state": "OFF", "flash": 2}"#, Set(LedConfig::OFF)),
        ] {
            assert_eq!(
                command(payload.as_bytes(), 77, None).unwrap(),
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
            (
                r#"{"state": "ON", "effect": "rainbow"}"#,
                "the LED has steady, pulse, breathe, blink",
            ),
            (r#"{"state": "ON", "flash": 0}"#, "give 1 to 60 seconds"),
            (r#"{"state": "ON", "flash": 61}"#, "give 1 to 60 seconds"),
            (
                r#"{"state": "ON", "transition": 2}"#,
                "each step would be an EEPROM write",
            ),
        ] {
            let why = command(payload.as_bytes(), 77, None).unwrap_err();
            assert!(why.contains(says), "{payload}: {why}");
        }
    }

    #[test]
    fn a_command_without_an_effect_keeps_the_one_shown_and_steady_ends_it() {
        let breathing = Some(Effect::Breathe);
        for (payload, wanted) in [
            (
                r#"{"state": "ON", "brightness": 30}"#,
                Effect::Breathe.at(30),
            ),
            (r#"{"state": "ON"}"#, Effect::Breathe.at(77)),
            (
                r#"{"state": "ON", "effect": "steady"}"#,
                LedConfig::steady(77),
            ),
            (r#"{"state": "OFF"}"#, LedConfig::OFF),
        ] {
            assert_eq!(
                command(payload.as_bytes(), 77, breathing).unwrap(),
                Wanted::Set(wanted),
                "{payload}"
            );
        }
    }

    #[test]
    fn the_state_always_says_on_or_off_brightness_only_while_on_and_the_effect_or_null() {
        let state =
            |led| -> serde_json::Value { serde_json::from_str(&state_payload(led)).unwrap() };
        let on = state(LedConfig::steady(128));
        assert_eq!(on["state"], "ON");
        assert_eq!(on["brightness"], 128);
        assert_eq!(on["effect"], "steady");
        let off = state(LedConfig::OFF);
        assert_eq!(off["state"], "OFF");
        assert!(off.get("brightness").is_none(), "Home Assistant ignores 0");
        let breathing = state(Effect::Breathe.at(40));
        assert_eq!(breathing["effect"], "breathe");
        assert_eq!(breathing["brightness"], 40);
    }
}
