//! The flags that say where the button is (feature `clap`): [`DeviceArgs`], flattened into the
//! command line of each service that drives it, and [`parse_address`].

use qwiic_button::Address;

use crate::{Bus, BusCounters, BusSpec, DeviceLink};

/// Where the button is: the bus and its address on it.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// The I2C bus: a Linux i2c-dev path, `sim` (in-process simulator), or tcp://HOST:PORT
    /// (the simulator server).
    #[arg(long, env = "BUS", default_value = "/dev/i2c-1")]
    pub bus: BusSpec,
    /// The button's I2C address, 0x08-0x77.
    #[arg(long, env = "I2C_ADDRESS", default_value = "0x6F", value_parser = parse_address)]
    pub address: Address,
}

impl DeviceArgs {
    /// A link to the button at `--address` on `bus` (opened from `--bus`, or a test's own).
    /// `retrying` says in the outage log line how the service goes on ("retrying every poll").
    pub fn link(&self, bus: Bus, counters: BusCounters, retrying: &'static str) -> DeviceLink {
        DeviceLink::new(bus, self.bus.clone(), self.address, counters, retrying)
    }

    /// Says so, loudly, when the bus is a simulator's: compose runs the simulator whenever
    /// `.env` does not choose device mode, and a device without `.env` must not pass for one
    /// with a button.
    pub fn announce_a_simulated_bus(&self) {
        if self.bus.is_simulated() {
            tracing::warn!(
                bus = %self.bus,
                "SIMULATED button: this is simulator mode, not a real Qwiic Button (on a device, run sudo ./init_os.sh: its .env selects device mode)"
            );
        }
    }
}

/// Parses an I2C address for clap: `0x6F`, `0x6f` or `111`, checked to be 0x08-0x77.
pub fn parse_address(input: &str) -> Result<Address, String> {
    let trimmed = input.trim();
    let value = match trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
    {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => trimmed.parse::<u8>(),
    }
    .map_err(|_| {
        format!("{input:?} is not an I2C address: give 0x08 to 0x77 in hex (0x6F) or decimal (111)")
    })?;
    Address::new(value).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn addresses_parse_in_hex_and_decimal_and_are_range_checked() {
        assert_eq!(parse_address("0x6F").unwrap().get(), 0x6F);
        assert_eq!(parse_address("0x6f").unwrap().get(), 0x6F);
        assert_eq!(parse_address("111").unwrap().get(), 111);
        assert!(parse_address("0x78").unwrap_err().contains("0x08 to 0x77"));
        assert!(
            parse_address("zz")
                .unwrap_err()
                .contains("not an I2C address")
        );
        assert!(parse_address("0x1FF").is_err());
    }
}
