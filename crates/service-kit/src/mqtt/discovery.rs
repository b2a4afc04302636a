//! Home Assistant's MQTT discovery, device-based (Home Assistant 2024.11 and later): each
//! service announces its part of the one device both share in one retained message on
//! `<discovery prefix>/device/<node>_<service>/config`, its components keyed by their unique
//! ids; Home Assistant merges the two parts by the device's identifiers. Announced once the
//! button's firmware is known ([`Announcer`]) and again when it changes; with discovery off,
//! removed (an empty retained config).
//!
//! Entities are available while the service is (`<prefix>/<service>/availability`) and the
//! button answers it (`<prefix>/<service>/device`): an availability list, mode `all`.
//!
//! Earlier versions announced one entity per topic (`<discovery prefix>/<component>/<unique
//! id>/config`). Each announcement hands those over the way Home Assistant documents it, so
//! that entity ids, names and history stay: `{"migrate_discovery": true}` on each old topic,
//! then the device's message (the same unique ids), then an empty retained message on the old
//! topic, which also clears the broker's copy.

use serde_json::{Map, Value, json};

use super::link::Mqtt;

/// One component of the device: an entity or a device trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Home Assistant's platform: `event`, `binary_sensor`, `light`, `sensor`,
    /// `device_automation`.
    pub platform: &'static str,
    /// Unique within the device; the component's key and unique id are `<node>_<object>`.
    pub object: String,
    /// The platform's options.
    pub config: Value,
}

impl Component {
    /// A component of `platform` with `config`.
    pub fn new(platform: &'static str, object: impl Into<String>, config: Value) -> Component {
        Component {
            platform,
            object: object.into(),
            config,
        }
    }
}

/// How often a service looks whether its diagnostics changed (and publishes them if so).
pub const DIAGNOSTICS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// One number a service tells Home Assistant about itself: a diagnostic sensor, its value
/// under `key` in the service's `<prefix>/<service>/diagnostics` (retained JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diagnostic {
    /// Its key in the diagnostics message; also its object id.
    pub key: &'static str,
    /// What Home Assistant calls it.
    pub name: &'static str,
    /// Its unit, if any (`%`).
    pub unit: Option<&'static str>,
    /// True for a count since the service started (Home Assistant's `total_increasing`:
    /// a restart's zero starts a new count), false for a level (`measurement`).
    pub count: bool,
}

/// A component an earlier version announced on a topic of its own: its platform and object.
pub type Legacy = (&'static str, &'static str);

impl Mqtt {
    /// The node: the topic prefix with `_` for `/`.
    fn node(&self) -> String {
        self.settings.prefix.replace('/', "_")
    }

    /// `<prefix>/<service>/diagnostics`.
    pub fn diagnostics_topic(&self) -> String {
        self.topic(&format!("{}/diagnostics", self.service))
    }

    /// The diagnostic sensors for `diagnostics`, reading [`Mqtt::diagnostics_topic`].
    pub fn diagnostic_components(&self, diagnostics: &[Diagnostic]) -> Vec<Component> {
        let topic = self.diagnostics_topic();
        diagnostics
            .iter()
            .map(|diagnostic| {
                let mut config = json!({
                    "name": diagnostic.name,
                    "state_topic": topic,
                    "value_template": format!("{{{{ value_json.{} }}}}", diagnostic.key),
                    "entity_category": "diagnostic",
                    "state_class": if diagnostic.count { "total_increasing" } else { "measurement" },
                });
                if let (Some(unit), Some(config)) = (diagnostic.unit, config.as_object_mut()) {
                    config.insert("unit_of_measurement".into(), unit.into());
                }
                Component::new("sensor", diagnostic.key, config)
            })
            .collect()
    }

    /// Publishes the diagnostics' `values` (a JSON object by key), retained, when they differ
    /// from the last published.
    pub fn publish_diagnostics(&self, values: &Value) {
        self.publish_if_changed(&self.diagnostics_topic(), values.to_string());
    }

    /// Where this service announces its part of the device.
    fn discovery_topic(&self) -> String {
        format!(
            "{}/device/{}_{}/config",
            self.settings.discovery_prefix,
            self.node(),
            self.service
        )
    }

    /// Announces this service's `components` of the button's device to Home Assistant,
    /// retained, handing over the `legacy` single-entity configs; `firmware` is the button's,
    /// `version` the service's. With discovery off, removes them instead.
    pub fn announce_device(
        &self,
        components: &[Component],
        legacy: &[Legacy],
        firmware: &str,
        version: &str,
    ) {
        let node = self.node();
        let legacy_topics: Vec<String> = legacy
            .iter()
            .map(|(platform, object)| {
                format!(
                    "{}/{platform}/{node}_{object}/config",
                    self.settings.discovery_prefix
                )
            })
            .collect();
        if !self.settings.ha_discovery {
            for topic in legacy_topics.iter().chain([&self.discovery_topic()]) {
                self.publish(topic, Vec::new(), true);
            }
            return;
        }
        let message = self.device_message(components, firmware, version);
        for topic in &legacy_topics {
            self.publish(topic, json!({"migrate_discovery": true}).to_string(), true);
        }
        self.publish(&self.discovery_topic(), message.to_string(), true);
        for topic in &legacy_topics {
            self.publish(topic, Vec::new(), true);
        }
    }

    /// The device-based discovery message.
    fn device_message(&self, components: &[Component], firmware: &str, version: &str) -> Value {
        let node = self.node();
        // Named after the prefix's last level, unless that says nothing more ("button").
        let name = match self.settings.prefix.rsplit('/').next() {
            Some(place) if !place.is_empty() && place != "button" => {
                format!("Qwiic Button {place}")
            }
            _ => "Qwiic Button".to_owned(),
        };
        let mut all = Map::new();
        for component in components {
            let key = format!("{node}_{}", component.object);
            // Entities are available while the service is and the button answers it;
            // device triggers have neither an id nor an availability.
            let mut config = if component.platform == "device_automation" {
                json!({"platform": component.platform, "qos": 1})
            } else {
                json!({
                    "platform": component.platform,
                    "unique_id": key,
                    "default_entity_id": format!("{}.{key}", component.platform),
                    "availability": [{"topic": self.availability}, {"topic": self.device}],
                    "availability_mode": "all",
                    "qos": 1,
                })
            };
            if let (Some(config), Some(own)) =
                (config.as_object_mut(), component.config.as_object())
            {
                config.extend(own.clone());
            }
            all.insert(key, config);
        }
        json!({
            "device": {
                "identifiers": [node],
                "name": name,
                "manufacturer": "SparkFun",
                "model": "Qwiic Button",
                "sw_version": firmware,
            },
            "origin": {
                "name": "qwiic-containers",
                "sw_version": version,
                "support_url": "https://github.com/qwiic-containers/qwiic-containers",
            },
            "components": all,
        })
    }
}

/// Announces once the button's firmware is known, and again whenever it changes: both
/// services call [`Announcer::update`] with what their link to the button knows, at start and
/// on every change of it.
#[derive(Debug, Default)]
pub struct Announcer {
    announced: Option<String>,
}

impl Announcer {
    /// Runs `announce` with the firmware when it is known and differs from the one announced
    /// last; true when it did.
    pub fn update(
        &mut self,
        firmware: Option<impl std::fmt::Display>,
        announce: impl FnOnce(&str),
    ) -> bool {
        let Some(firmware) = firmware.map(|firmware| firmware.to_string()) else {
            return false;
        };
        if self.announced.as_ref() == Some(&firmware) {
            return false;
        }
        announce(&firmware);
        self.announced = Some(firmware);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announces_once_the_firmware_is_known_and_again_when_it_changes() {
        let mut announcer = Announcer::default();
        let mut told = Vec::new();
        for firmware in [None, Some("1.3"), Some("1.3"), None, Some("1.2")] {
            announcer.update(firmware, |firmware| told.push(firmware.to_owned()));
        }
        assert_eq!(told, ["1.3", "1.2"]);
    }
}
