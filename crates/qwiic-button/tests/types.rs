//! The driver's value types and errors: what callers decide on (is it on, was it corrupted, was
//! it absent) and what people read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
use qwiic_button::{Address, Corruption, Error, FirmwareVersion, LedConfig};

#[test]
fn a_led_is_on_at_any_brightness_above_zero() {
    assert!(!LedConfig::OFF.is_on());
    assert!(!LedConfig::steady(0).is_on());
    assert!(LedConfig::steady(1).is_on());
    assert!(LedConfig::steady(255).is_on());
}

#[test]
fn an_address_from_a_byte_is_checked_like_new() {
    assert_eq!(Address::try_from(0x6F).unwrap(), Address::DEFAULT);
    assert_eq!(Address::try_from(0x08).unwrap().get(), 0x08);
    for invalid in [0x00, 0x07, 0x78, 0x80, 0xFF] {
        let error = Address::try_from(invalid).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "I2C address {invalid:#04x} is out of range: the Qwiic Button accepts 0x08 to 0x77"
            )
        );
    }
}

#[test]
fn corruption_says_what_was_read_and_what_was_expected() {
    assert_eq!(Corruption::Id(0x2E).to_string(), "ID 0x2e, expected 0x5d");
    assert_eq!(
        Corruption::Firmware(FirmwareVersion { major: 0, minor: 9 }).to_string(),
        "firmware 0.9, not the one identified"
    );
    assert_eq!(
        Corruption::StatusBits(0x48).to_string(),
        "status 0x48, with bits the firmware never sets"
    );
}

#[test]
fn only_a_corrupted_reading_is_corrupted_and_only_a_nack_is_absent() {
    let corrupted: Error<ErrorKind> = Error::Corrupted(Corruption::Id(0x2E));
    let nack: Error<ErrorKind> = Error::I2C(ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address));
    let bus: Error<ErrorKind> = Error::I2C(ErrorKind::Bus);
    assert!(corrupted.is_corrupted());
    assert!(!nack.is_corrupted() && !bus.is_corrupted());
    assert!(nack.is_no_acknowledge());
    assert!(!bus.is_no_acknowledge() && !corrupted.is_no_acknowledge());
    assert_eq!(bus.bus_error(), Some(&ErrorKind::Bus));
    assert_eq!(corrupted.bus_error(), None);
}
