//! Home Assistant's MQTT discovery: each service announces its entities of the one device
//! both share, retained, once the button's firmware is known ([`Announcer`]) and again when it
//! changes; with discovery off it removes what it announced before.

use super::link::Mqtt;

impl Mqtt {
    /// Announces one entity of the button to Home Assistant (MQTT discovery), retained:
    /// `config` completed with its `unique_id`, `default_entity_id`, availability, the device
    /// both services share (`firmware` is the button's) and the origin (`version` is the
    /// service's). With discovery off, removes it instead (an empty retained config).
    pub fn announce(
        &self,
        component: &str,
        object: &str,
        mut config: serde_json::Value,
        firmware: &str,
        version: &str,
    ) {
        let node = self.settings.prefix.replace('/', "_");
        let unique_id = format!("{node}_{object}");
        let topic = format!(
            "{}/{component}/{unique_id}/config",
            self.settings.discovery_prefix
        );
        if !self.settings.ha_discovery {
            self.publish(&topic, Vec::new(), true);
            return;
        }
        // Named after the prefix's last level, unless that says nothing more ("button").
        let name = match self.settings.prefix.rsplit('/').next() {
            Some(place) if !place.is_empty() && place != "button" => {
                format!("Qwiic Button {place}")
            }
            _ => "Qwiic Button".to_owned(),
        };
        let common = serde_json::json!({
            "unique_id": unique_id,
            "default_entity_id": format!("{component}.{unique_id}"),
            "availability": [{"topic": self.availability}],
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
        });
        if let (Some(config), serde_json::Value::Object(common)) = (config.as_object_mut(), common)
        {
            config.extend(common);
        }
        self.publish(&topic, config.to_string(), true);
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

    /// True once something was announced.
    pub fn has_announced(&self) -> bool {
        self.announced.is_some()
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
        assert!(announcer.has_announced());
    }
}
