//! The LED's named effects, for Home Assistant's light: each one a setting of the firmware's
//! own pulse engine (cycle time, off time, granularity), so that the button runs it without
//! any further bus traffic or EEPROM writes. The firmware ramps 0 -> brightness -> 0 over the
//! cycle time in steps of ceil(brightness / granularity * 2), then stays dark for the off time.
//!
//! | effect | cycle | off | granularity | looks like |
//! |---|---|---|---|---|
//! | `steady` | 0 | 0 | 1 | no effect: steady light (Home Assistant's way back from an effect) |
//! | `pulse` | 1000 ms | 500 ms | 1 | SparkFun's own pulse example: a smooth beat |
//! | `breathe` | 4000 ms | 0 | 1 | a slow, continuous swell |
//! | `blink` | 200 ms | 300 ms | 255 | two hard blinks a second (also Home Assistant's flash) |

use qwiic_button::LedConfig;

/// One named effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// No effect: steady light.
    Steady,
    /// A smooth beat.
    Pulse,
    /// A slow, continuous swell.
    Breathe,
    /// Hard blinks.
    Blink,
}

impl Effect {
    /// Every effect, in the order Home Assistant lists them.
    pub const ALL: [Effect; 4] = [
        Effect::Steady,
        Effect::Pulse,
        Effect::Breathe,
        Effect::Blink,
    ];

    /// Its name, in Home Assistant's `effect_list` and the light's state.
    pub fn name(self) -> &'static str {
        match self {
            Effect::Steady => "steady",
            Effect::Pulse => "pulse",
            Effect::Breathe => "breathe",
            Effect::Blink => "blink",
        }
    }

    /// The effect called `name`, if there is one.
    pub fn named(name: &str) -> Option<Effect> {
        Effect::ALL.into_iter().find(|effect| effect.name() == name)
    }

    /// The pulse registers: cycle time, off time, granularity.
    fn registers(self) -> (u16, u16, u8) {
        match self {
            Effect::Steady => (0, 0, 1),
            Effect::Pulse => (1000, 500, 1),
            Effect::Breathe => (4000, 0, 1),
            Effect::Blink => (200, 300, 255),
        }
    }

    /// The LED showing this effect at `brightness`.
    pub fn at(self, brightness: u8) -> LedConfig {
        let (cycle_time_ms, off_time_ms, granularity) = self.registers();
        LedConfig {
            brightness,
            granularity,
            cycle_time_ms,
            off_time_ms,
        }
    }

    /// The effect a lit `led` shows, if it is one of these (a pulse set over HTTP may be none;
    /// a dark LED shows none).
    pub fn shown_by(led: LedConfig) -> Option<Effect> {
        if !led.is_on() {
            return None;
        }
        if led.cycle_time_ms == 0 {
            // Steady, whatever the unused registers hold.
            return Some(Effect::Steady);
        }
        Effect::ALL.into_iter().find(|effect| {
            let (cycle, off, granularity) = effect.registers();
            (led.cycle_time_ms, led.off_time_ms, led.granularity) == (cycle, off, granularity)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_effect_is_a_valid_pulse_that_is_recognised_again_by_its_registers() {
        for effect in Effect::ALL {
            let led = effect.at(200);
            assert!(led.validate().is_ok(), "{effect:?}");
            assert_eq!(
                led.cycle_time_ms == 0,
                effect == Effect::Steady,
                "{effect:?}"
            );
            assert_eq!(Effect::shown_by(led), Some(effect));
            assert_eq!(Effect::named(effect.name()), Some(effect));
        }
        assert_eq!(Effect::Steady.at(200), LedConfig::steady(200));
        let odd_steady = LedConfig {
            granularity: 7,
            ..LedConfig::steady(200)
        };
        assert_eq!(Effect::shown_by(odd_steady), Some(Effect::Steady));
        let odd_pulse = LedConfig {
            cycle_time_ms: 1234,
            ..LedConfig::steady(200)
        };
        assert_eq!(Effect::shown_by(odd_pulse), None, "set over HTTP");
        assert_eq!(Effect::shown_by(Effect::Pulse.at(0)), None, "dark");
        assert_eq!(Effect::named("rainbow"), None);
    }
}
