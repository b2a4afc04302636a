//! Exact bus transactions, checked with embedded-hal-mock. The register map is re-declared here
//! from SparkFun's datasheet and firmware (registers.h), not imported from the driver, so a
//! wrong constant in the driver fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use embedded_hal_mock::eh1::delay::{CheckedDelay, NoopDelay, Transaction as Delay};
use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
use qwiic_button::{
    Address, ButtonReading, ButtonStatus, Corruption, Error, FirmwareVersion, InterruptConfig,
    LedConfig, Queue, QueueSnapshot, QwiicButton, ZeroGranularity,
};

const ADDR: u8 = 0x6F;
const ID: u8 = 0x00;
const BUTTON_STATUS: u8 = 0x03;
const INTERRUPT_CONFIG: u8 = 0x04;
const BUTTON_DEBOUNCE_TIME: u8 = 0x05;
const PRESSED_QUEUE_STATUS: u8 = 0x07;
const CLICKED_QUEUE_STATUS: u8 = 0x10;
const LED_BRIGHTNESS: u8 = 0x19;
const I2C_ADDRESS: u8 = 0x1F;

/// Runs `body` against a mock expecting exactly `expectations`, then checks none is left over.
fn with_mock<T>(expectations: &[Transaction], body: impl FnOnce(&mut QwiicButton<Mock>) -> T) -> T {
    let mut button = QwiicButton::new(Mock::new(expectations), Address::DEFAULT);
    let result = body(&mut button);
    button.destroy().done();
    result
}

#[test]
fn identity_is_one_three_byte_read_from_0x00() {
    let version = with_mock(
        &[Transaction::write_read(
            ADDR,
            vec![ID],
            vec![0x5D, 0x03, 0x01],
        )],
        |b| b.check_identity().unwrap(),
    );
    assert_eq!(version, FirmwareVersion { major: 1, minor: 3 });
    assert_eq!(version.to_string(), "1.3");
    assert!(version.can_pop());
}

#[test]
fn a_wrong_id_is_an_error_naming_what_was_read() {
    let error = with_mock(
        &[Transaction::write_read(
            ADDR,
            vec![ID],
            vec![0x00, 0x03, 0x01],
        )],
        |b| b.check_identity().unwrap_err(),
    );
    assert_eq!(
        error,
        Error::WrongId {
            address: Address::DEFAULT,
            found: 0x00
        }
    );
    assert_eq!(
        error.to_string(),
        "no Qwiic Button at 0x6f: ID register read 0x00, expected 0x5d"
    );
}

#[test]
fn firmware_1_2_is_accepted_but_flagged() {
    let version = with_mock(
        &[Transaction::write_read(
            ADDR,
            vec![ID],
            vec![0x5D, 0x02, 0x01],
        )],
        |b| b.check_identity().unwrap(),
    );
    assert!(!version.can_pop());
}

#[test]
fn status_bits_are_decoded_from_0x03() {
    let cases = [
        (
            0b000,
            ButtonStatus {
                event_available: false,
                has_been_clicked: false,
                is_pressed: false,
            },
        ),
        (
            0b001,
            ButtonStatus {
                event_available: true,
                has_been_clicked: false,
                is_pressed: false,
            },
        ),
        (
            0b010,
            ButtonStatus {
                event_available: false,
                has_been_clicked: true,
                is_pressed: false,
            },
        ),
        (
            0b100,
            ButtonStatus {
                event_available: false,
                has_been_clicked: false,
                is_pressed: true,
            },
        ),
        (
            0b111,
            ButtonStatus {
                event_available: true,
                has_been_clicked: true,
                is_pressed: true,
            },
        ),
    ];
    for (bits, expected) in cases {
        let status = with_mock(
            &[Transaction::write_read(
                ADDR,
                vec![BUTTON_STATUS],
                vec![bits],
            )],
            |b| b.status().unwrap(),
        );
        assert_eq!(status, expected, "bits {bits:03b}");
    }
}

#[test]
fn clearing_the_status_writes_zero_to_0x03() {
    with_mock(
        &[Transaction::write(ADDR, vec![BUTTON_STATUS, 0x00])],
        |b| b.clear_status().unwrap(),
    );
}

#[test]
fn debounce_is_little_endian_at_0x05() {
    let ms = with_mock(
        &[Transaction::write_read(
            ADDR,
            vec![BUTTON_DEBOUNCE_TIME],
            vec![0x0A, 0x01],
        )],
        |b| b.debounce_time().unwrap(),
    );
    assert_eq!(ms, 0x010A);
    with_mock(
        &[Transaction::write(
            ADDR,
            vec![BUTTON_DEBOUNCE_TIME, 0x34, 0x12],
        )],
        |b| b.set_debounce_time(0x1234).unwrap(),
    );
}

#[test]
fn interrupt_bits_are_clicked_0_and_pressed_1() {
    let config = with_mock(
        &[Transaction::write_read(
            ADDR,
            vec![INTERRUPT_CONFIG],
            vec![0b01],
        )],
        |b| b.interrupt_config().unwrap(),
    );
    assert_eq!(
        config,
        InterruptConfig {
            clicked: true,
            pressed: false
        }
    );
    let config = with_mock(
        &[Transaction::write_read(
            ADDR,
            vec![INTERRUPT_CONFIG],
            vec![0b10],
        )],
        |b| b.interrupt_config().unwrap(),
    );
    assert_eq!(
        config,
        InterruptConfig {
            clicked: false,
            pressed: true
        }
    );
    with_mock(
        &[Transaction::write(ADDR, vec![INTERRUPT_CONFIG, 0b10])],
        |b| {
            b.set_interrupt_config(InterruptConfig {
                clicked: false,
                pressed: true,
            })
            .unwrap()
        },
    );
    with_mock(
        &[Transaction::write(ADDR, vec![INTERRUPT_CONFIG, 0b01])],
        |b| {
            b.set_interrupt_config(InterruptConfig {
                clicked: true,
                pressed: false,
            })
            .unwrap()
        },
    );
}

#[test]
fn a_queue_is_read_in_one_nine_byte_transaction_without_popping() {
    // status (bit1 empty, bit2 full), FRONT u32 LE (newest), BACK u32 LE (oldest)
    let reply = vec![0b100, 0x10, 0x00, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12];
    for (queue, register) in [
        (Queue::Pressed, PRESSED_QUEUE_STATUS),
        (Queue::Clicked, CLICKED_QUEUE_STATUS),
    ] {
        let snapshot = with_mock(
            &[Transaction::write_read(ADDR, vec![register], reply.clone())],
            |b| b.queue(queue).unwrap(),
        );
        assert_eq!(
            snapshot,
            QueueSnapshot {
                is_empty: false,
                is_full: true,
                newest_age_ms: Some(0x10),
                oldest_age_ms: Some(0x1234_5678)
            }
        );
    }
}

#[test]
fn an_empty_queue_reports_no_ages() {
    let reply = vec![0b010, 0xFF, 0xFF, 0, 0, 1, 2, 3, 4];
    let snapshot = with_mock(
        &[Transaction::write_read(
            ADDR,
            vec![PRESSED_QUEUE_STATUS],
            reply,
        )],
        |b| b.queue(Queue::Pressed).unwrap(),
    );
    assert_eq!(
        snapshot,
        QueueSnapshot {
            is_empty: true,
            is_full: false,
            newest_age_ms: None,
            oldest_age_ms: None
        }
    );
}

#[test]
fn pop_sets_the_pop_request_bit() {
    with_mock(
        &[Transaction::write(ADDR, vec![PRESSED_QUEUE_STATUS, 0x01])],
        |b| b.pop(Queue::Pressed).unwrap(),
    );
    with_mock(
        &[Transaction::write(ADDR, vec![CLICKED_QUEUE_STATUS, 0x01])],
        |b| b.pop(Queue::Clicked).unwrap(),
    );
}

const V1_3: FirmwareVersion = FirmwareVersion { major: 1, minor: 3 };

#[test]
fn the_checked_status_is_one_four_byte_burst_from_0x00() {
    let status = with_mock(
        &[Transaction::write_read(
            ADDR,
            vec![ID],
            vec![0x5D, 0x03, 0x01, 0b101],
        )],
        |b| b.checked_status(V1_3).unwrap(),
    );
    assert_eq!(
        status,
        ButtonStatus {
            event_available: true,
            has_been_clicked: false,
            is_pressed: true
        }
    );
}

#[test]
fn an_impossible_status_reading_is_rejected_as_corrupted() {
    for (bytes, corruption) in [
        // The Raspberry Pi's clock-stretching bug: the whole burst shifted right by one bit.
        (vec![0x2E, 0x01, 0x80, 0x02], Corruption::Id(0x2E)),
        (
            vec![0x5D, 0x02, 0x01, 0x00],
            Corruption::Firmware(FirmwareVersion { major: 1, minor: 2 }),
        ),
        (vec![0x5D, 0x03, 0x01, 0x08], Corruption::StatusBits(0x08)),
        (vec![0x5D, 0x03, 0x01, 0xFF], Corruption::StatusBits(0xFF)),
    ] {
        let error = with_mock(&[Transaction::write_read(ADDR, vec![ID], bytes)], |b| {
            b.checked_status(V1_3).unwrap_err()
        });
        assert_eq!(error, Error::Corrupted(corruption));
        assert!(error.is_corrupted());
        assert!(
            error.to_string().contains("corrupted") && error.to_string().contains("i2c-gpio"),
            "{error}"
        );
    }
}

#[test]
fn the_checked_reading_is_one_twelve_byte_burst_from_0x00_with_the_newest_edge_s_age() {
    // ID, firmware 1.3, pressed with an event, both interrupts on, debounce 10 ms, the pressed
    // queue not empty, its newest entry 300 ms old (0x0000012C, little-endian).
    let burst = vec![
        0x5D, 0x03, 0x01, 0b101, 0b11, 10, 0, 0b000, 0x2C, 0x01, 0x00, 0x00,
    ];
    let reading = with_mock(&[Transaction::write_read(ADDR, vec![ID], burst)], |b| {
        b.checked_reading(V1_3).unwrap()
    });
    assert_eq!(
        reading,
        ButtonReading {
            status: ButtonStatus {
                event_available: true,
                has_been_clicked: false,
                is_pressed: true
            },
            interrupt: InterruptConfig {
                clicked: true,
                pressed: true
            },
            debounce_ms: 10,
            newest_edge_age_ms: Some(300),
        }
    );
    // An empty queue: its front reads as uptime, meaningless.
    let empty = vec![0x5D, 0x03, 0x01, 0, 0b11, 10, 0, 0b010, 0x10, 0x27, 0, 0];
    let reading = with_mock(&[Transaction::write_read(ADDR, vec![ID], empty)], |b| {
        b.checked_reading(V1_3).unwrap()
    });
    assert_eq!(reading.newest_edge_age_ms, None);
    assert_eq!(reading.debounce_ms, 10);
}

#[test]
fn an_impossible_reading_is_rejected_as_corrupted_whichever_byte_gives_it_away() {
    let good = [
        0x5D, 0x03, 0x01, 0b101, 0b11, 10, 0, 0b000, 0x2C, 0x01, 0x00, 0x00,
    ];
    let with = |at: usize, value: u8| {
        let mut bytes = good.to_vec();
        bytes[at] = value;
        bytes
    };
    for (bytes, corruption) in [
        (with(0, 0x2E), Corruption::Id(0x2E)),
        (
            with(1, 0x81),
            Corruption::Firmware(FirmwareVersion {
                major: 1,
                minor: 0x81,
            }),
        ),
        (with(3, 0x82), Corruption::StatusBits(0x82)),
        (with(4, 0x81), Corruption::InterruptBits(0x81)),
        (with(4, 0b111), Corruption::InterruptBits(0b111)),
        (with(7, 0x80), Corruption::QueueBits(0x80)),
        (with(7, 0b001), Corruption::QueueBits(0b001)),
        (with(7, 0b100_0000), Corruption::QueueBits(0b100_0000)),
    ] {
        let error = with_mock(&[Transaction::write_read(ADDR, vec![ID], bytes)], |b| {
            b.checked_reading(V1_3).unwrap_err()
        });
        assert_eq!(error, Error::Corrupted(corruption));
    }
    // A full queue (bit 2) is a state the firmware sets: accepted.
    let full = with(7, 0b100);
    let reading = with_mock(&[Transaction::write_read(ADDR, vec![ID], full)], |b| {
        b.checked_reading(V1_3).unwrap()
    });
    assert_eq!(reading.newest_edge_age_ms, Some(300));
}

#[test]
fn the_led_is_one_seven_byte_read_checked_by_the_address_and_one_seven_byte_write_from_0x19() {
    let led = with_mock(
        &[Transaction::write_read(
            ADDR,
            vec![LED_BRIGHTNESS],
            vec![200, 5, 0xE8, 0x03, 0xF4, 0x01, ADDR],
        )],
        |b| b.led().unwrap(),
    );
    assert_eq!(
        led,
        LedConfig {
            brightness: 200,
            granularity: 5,
            cycle_time_ms: 1000,
            off_time_ms: 500
        }
    );
    with_mock(
        &[Transaction::write(
            ADDR,
            vec![LED_BRIGHTNESS, 200, 5, 0xE8, 0x03, 0xF4, 0x01],
        )],
        |b| {
            b.set_led(LedConfig::pulse(200, 1000, 500, 5).unwrap())
                .unwrap()
        },
    );
    with_mock(
        &[Transaction::write(
            ADDR,
            vec![LED_BRIGHTNESS, 255, 1, 0, 0, 0, 0],
        )],
        |b| b.set_led(LedConfig::steady(255)).unwrap(),
    );
    with_mock(
        &[Transaction::write(
            ADDR,
            vec![LED_BRIGHTNESS, 0, 1, 0, 0, 0, 0],
        )],
        |b| b.set_led(LedConfig::OFF).unwrap(),
    );
}

#[test]
fn a_led_reading_without_the_address_after_it_is_rejected() {
    let error = with_mock(
        &[Transaction::write_read(
            ADDR,
            vec![LED_BRIGHTNESS],
            vec![100, 0, 0, 0, 0, 0, 0x37],
        )],
        |b| b.led().unwrap_err(),
    );
    assert_eq!(error, Error::Corrupted(Corruption::Address(0x37)));
}

#[test]
fn zero_granularity_while_pulsing_is_refused_before_any_bus_traffic() {
    assert_eq!(LedConfig::pulse(255, 1000, 0, 0), Err(ZeroGranularity));
    let bad = LedConfig {
        brightness: 255,
        granularity: 0,
        cycle_time_ms: 1000,
        off_time_ms: 0,
    };
    let error = with_mock(&[], |b| b.set_led(bad).unwrap_err());
    assert_eq!(error, Error::ZeroGranularity);
    assert!(error.to_string().contains("granularity must be 1 to 255"));
    // Steady with granularity 0 is harmless: the firmware does not pulse.
    let steady = LedConfig {
        granularity: 0,
        ..LedConfig::steady(9)
    };
    with_mock(
        &[Transaction::write(
            ADDR,
            vec![LED_BRIGHTNESS, 9, 0, 0, 0, 0, 0],
        )],
        |b| b.set_led(steady).unwrap(),
    );
}

#[test]
fn the_address_changes_after_the_longest_save_pass_with_one_write_to_0x1f_then_20_ms_then_the_id_there()
 {
    let new = Address::new(0x5B).unwrap();
    let mut delay = CheckedDelay::new(&[Delay::delay_ms(48), Delay::delay_ms(20)]);
    with_mock(
        &[
            Transaction::write(ADDR, vec![I2C_ADDRESS, 0x5B]),
            Transaction::write_read(0x5B, vec![ID], vec![0x5D, 0x03, 0x01]),
            Transaction::write_read(0x5B, vec![BUTTON_STATUS], vec![0]),
        ],
        |b| {
            b.set_address(new, &mut delay).unwrap();
            assert_eq!(b.address(), new);
            b.status().unwrap();
        },
    );
    delay.done();
}

#[test]
fn a_jumper_that_keeps_the_old_address_is_reported_and_the_driver_stays() {
    use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
    let nack = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);
    let new = Address::new(0x5B).unwrap();
    let error = with_mock(
        &[
            Transaction::write(ADDR, vec![I2C_ADDRESS, 0x5B]),
            Transaction::write_read(0x5B, vec![ID], vec![0; 3]).with_error(nack),
            Transaction::write_read(ADDR, vec![ID], vec![0x5D, 0x03, 0x01]),
        ],
        |b| {
            let error = b.set_address(new, &mut NoopDelay::new()).unwrap_err();
            assert_eq!(b.address(), Address::DEFAULT);
            error
        },
    );
    assert_eq!(
        error,
        Error::AddressNotTaken {
            requested: new,
            kept: Address::DEFAULT
        }
    );
    assert!(error.to_string().contains("jumper"), "{error}");
}

#[test]
fn out_of_range_addresses_are_refused() {
    for bad in [0x00, 0x07, 0x78, 0x7F, 0xFF] {
        let error = Address::new(bad).unwrap_err();
        assert!(error.to_string().contains("0x08 to 0x77"), "{error}");
        assert_eq!(Error::<()>::from(error), Error::InvalidAddress(bad));
    }
    for good in [0x08, 0x6F, 0x77] {
        assert_eq!(Address::new(good).unwrap().get(), good);
    }
}

#[test]
fn bus_errors_are_kept_and_described() {
    use embedded_hal::i2c::{ErrorKind, NoAcknowledgeSource};
    let nack = ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address);
    let error = with_mock(
        &[Transaction::write_read(ADDR, vec![BUTTON_STATUS], vec![0]).with_error(nack)],
        |b| b.status().unwrap_err(),
    );
    assert_eq!(error, Error::I2C(nack));
    assert_eq!(error.bus_error(), Some(&nack));
    assert!(error.is_no_acknowledge());
    assert!(error.to_string().starts_with("I2C bus error: "), "{error}");
}
