//! The API's types: the LED as it is shown ([`LedView`]), the setting `PUT /led` takes
//! ([`LedRequest`]), and the health of the service ([`Health`]).

use qwiic_button::LedConfig;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::led::LedState;

/// The LED as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LedView {
    /// True when the LED gives light (brightness above 0).
    pub on: bool,
    /// 0-255.
    #[schema(minimum = 0, maximum = 255)]
    pub brightness: u8,
    /// Pulse settings; `null` when the LED is steady.
    pub pulse: Option<Pulse>,
    /// When this service last changed the LED (RFC 3339, UTC); `null` if it has not yet.
    pub changed_at: Option<String>,
    /// Who changed it: the client's address and User-Agent, or `shutdown`.
    pub changed_by: Option<String>,
    /// EEPROM bytes this service's writes changed since it started: the button's firmware saves
    /// every changed LED byte, and each byte lasts about 100,000 writes.
    pub eeprom_byte_writes: u64,
}

impl From<LedState> for LedView {
    fn from(state: LedState) -> Self {
        let led = state.led;
        LedView {
            on: led.is_on(),
            brightness: led.brightness,
            pulse: (led.cycle_time_ms != 0).then_some(Pulse {
                cycle_ms: led.cycle_time_ms,
                off_ms: led.off_time_ms,
                granularity: led.granularity,
            }),
            changed_at: state
                .change
                .as_ref()
                .map(|c| humantime::format_rfc3339_millis(c.at).to_string()),
            changed_by: state.change.map(|c| c.by),
            eeprom_byte_writes: state.eeprom_byte_writes,
        }
    }
}

/// Pulse settings of the LED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pulse {
    /// Length of one ramp up and down, in ms (1-65535).
    #[serde(deserialize_with = "crate::integer::deserialize")]
    #[schema(minimum = 1, maximum = 65535)]
    pub cycle_ms: u16,
    /// Dark time between pulses, in ms (0-65535).
    #[serde(default, deserialize_with = "crate::integer::deserialize")]
    #[schema(minimum = 0, maximum = 65535)]
    pub off_ms: u16,
    /// Brightness step size (1-255).
    #[serde(
        default = "default_granularity",
        deserialize_with = "crate::integer::deserialize"
    )]
    #[schema(minimum = 1, maximum = 255)]
    pub granularity: u8,
}

fn default_granularity() -> u8 {
    1
}

/// A whole LED setting for `PUT /led`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LedRequest {
    /// Light or dark.
    pub on: bool,
    /// 0-255 (default: the service's default brightness); 0 means dark. Ignored when off.
    #[serde(default, deserialize_with = "crate::integer::deserialize_option")]
    #[schema(minimum = 0, maximum = 255)]
    pub brightness: Option<u8>,
    /// Pulse instead of steady light; omit or `null` for steady.
    pub pulse: Option<Pulse>,
}

impl LedRequest {
    /// The setting the LED is to hold, or why the request cannot be one.
    pub fn to_config(&self, default_brightness: u8) -> Result<LedConfig, ApiError> {
        let invalid = ApiError::unprocessable;
        // Every field is checked, even the ones an "off" makes moot: what is refused must not
        // depend on the value of another field.
        if let Some(pulse) = self.pulse {
            if pulse.cycle_ms == 0 {
                return Err(invalid(
                    "pulse.cycle_ms must be 1-65535; omit pulse for a steady light",
                ));
            }
            if pulse.granularity == 0 {
                return Err(invalid(
                    "pulse.granularity must be 1-255 (0 would make the firmware divide by zero)",
                ));
            }
        }
        let brightness = self.brightness.unwrap_or(default_brightness);
        if !self.on || brightness == 0 {
            return Ok(LedConfig::OFF);
        }
        Ok(match self.pulse {
            Some(pulse) => LedConfig {
                brightness,
                granularity: pulse.granularity,
                cycle_time_ms: pulse.cycle_ms,
                off_time_ms: pulse.off_ms,
            },
            None => LedConfig::steady(brightness),
        })
    }
}

/// Health of the service: answered 200 while it serves; whether it can drive the LED is in the
/// body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` while the button answers, `degraded` while it does not (the LED cannot be driven
    /// until it does; the service finds it again by itself).
    pub status: &'static str,
    /// The button: `ok`, or why it does not answer and what to check.
    pub button: String,
    /// The button's firmware version, while it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
    /// Changes when the service restarts (random at every start).
    pub instance: String,
    /// The bus (`/dev/i2c-1`, or a simulator's).
    pub bus: String,
    /// True when the bus is a simulator's: no real button is driven.
    pub simulated: bool,
    /// The MQTT link (`connected`, `connecting` or `down: why`), when MQTT is set; it never
    /// makes the service unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<String>,
}
