//! The driver against the register-accurate simulator: every feature end to end. Together with
//! `transactions.rs` (exact bytes against the datasheet), a wrong constant cannot pass both.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::time::Duration;

use qwiic_button::{
    Address, ButtonStatus, FirmwareVersion, InterruptConfig, LedConfig, Queue, QwiicButton,
};
use qwiic_sim::{ManualClock, SimButton, SimConfig};

fn setup() -> (QwiicButton<SimButton>, SimButton, ManualClock) {
    let clock = ManualClock::new();
    let sim = SimButton::with_clock(clock.clone());
    clock.advance(Duration::from_secs(1)); // past the power-up debounce lockout
    (QwiicButton::new(sim.clone(), Address::DEFAULT), sim, clock)
}

#[test]
fn identity_and_firmware() {
    let (mut button, _, _) = setup();
    assert_eq!(
        button.check_identity().unwrap(),
        FirmwareVersion { major: 1, minor: 3 }
    );
}

#[test]
fn a_press_a_release_and_clearing_the_status() {
    let (mut button, sim, clock) = setup();
    assert_eq!(button.status().unwrap(), ButtonStatus::default());
    sim.press();
    assert_eq!(
        button.status().unwrap(),
        ButtonStatus {
            event_available: true,
            has_been_clicked: false,
            is_pressed: true
        }
    );
    clock.advance(Duration::from_millis(80));
    sim.release();
    assert_eq!(
        button.status().unwrap(),
        ButtonStatus {
            event_available: true,
            has_been_clicked: true,
            is_pressed: false
        }
    );
    button.clear_status().unwrap();
    assert_eq!(button.status().unwrap(), ButtonStatus::default());
}

#[test]
fn queues_report_ages_and_pop_only_when_asked() {
    let (mut button, sim, clock) = setup();
    sim.click(Duration::from_millis(100));
    clock.advance(Duration::from_millis(300));
    let pressed = button.queue(Queue::Pressed).unwrap();
    assert!(!pressed.is_empty && !pressed.is_full);
    // Stamps are edge time minus the 10 ms debounce, as the firmware stores them.
    assert_eq!(pressed.newest_age_ms, Some(210));
    assert_eq!(pressed.oldest_age_ms, Some(310));
    assert_eq!(
        button.queue(Queue::Pressed).unwrap(),
        pressed,
        "reading does not pop"
    );

    button.pop(Queue::Pressed).unwrap();
    assert_eq!(
        button.queue(Queue::Pressed).unwrap().oldest_age_ms,
        Some(210)
    );
    button.pop(Queue::Pressed).unwrap();
    let empty = button.queue(Queue::Pressed).unwrap();
    assert!(empty.is_empty);
    assert_eq!((empty.newest_age_ms, empty.oldest_age_ms), (None, None));

    let clicked = button.queue(Queue::Clicked).unwrap();
    assert_eq!(clicked.newest_age_ms, Some(210));
    button.pop(Queue::Clicked).unwrap();
    assert!(button.queue(Queue::Clicked).unwrap().is_empty);
}

#[test]
fn a_full_queue_is_reported() {
    let (mut button, sim, clock) = setup();
    for _ in 0..8 {
        sim.click(Duration::from_millis(20));
        clock.advance(Duration::from_millis(40));
    }
    assert!(button.queue(Queue::Pressed).unwrap().is_full);
    assert!(!button.queue(Queue::Clicked).unwrap().is_full);
}

#[test]
fn led_settings_round_trip_and_drive_the_light_once_saved() {
    let (mut button, sim, clock) = setup();
    assert_eq!(button.led().unwrap(), LedConfig::OFF);
    button.set_led(LedConfig::steady(128)).unwrap();
    assert_eq!(
        button.led().unwrap(),
        LedConfig::steady(128),
        "registers at once"
    );
    assert_eq!(sim.led_level(), 0, "the light only after the EEPROM save");
    clock.advance(Duration::from_millis(4)); // one changed byte: about 3.4 ms
    assert_eq!(sim.led_level(), 128);
    let pulse = LedConfig::pulse(255, 1000, 200, 5).unwrap();
    button.set_led(pulse).unwrap();
    assert_eq!(button.led().unwrap(), pulse);
    // Five changed bytes take about 17 ms to save; the pulse starts then, peaking half a
    // cycle later.
    assert_eq!(sim.settled_at_ms() - sim.now_ms(), 17);
    clock.advance(Duration::from_millis(17 + 500));
    assert_eq!(sim.led_level(), 255);
    assert_eq!(sim.stats().led_writes, 2, "each setting is one write");
}

#[test]
fn debounce_and_interrupts_round_trip() {
    let (mut button, _, _) = setup();
    assert_eq!(button.debounce_time().unwrap(), 10);
    button.set_debounce_time(300).unwrap();
    assert_eq!(button.debounce_time().unwrap(), 300);
    assert_eq!(
        button.interrupt_config().unwrap(),
        InterruptConfig {
            clicked: true,
            pressed: true
        }
    );
    for config in [
        InterruptConfig {
            clicked: false,
            pressed: false,
        },
        InterruptConfig {
            clicked: true,
            pressed: false,
        },
        InterruptConfig {
            clicked: false,
            pressed: true,
        },
    ] {
        button.set_interrupt_config(config).unwrap();
        assert_eq!(button.interrupt_config().unwrap(), config);
    }
}

#[test]
fn a_longer_debounce_drops_quick_edges() {
    let (mut button, sim, clock) = setup();
    button.set_debounce_time(50).unwrap();
    sim.press();
    clock.advance(Duration::from_millis(20));
    sim.release();
    assert!(!button.status().unwrap().has_been_clicked);
}

#[test]
fn the_address_change_waits_for_the_firmware_then_is_followed_and_persists() {
    let (mut button, sim, mut clock) = setup();
    let new = Address::new(0x42).unwrap();
    button.set_address(new, &mut clock).unwrap();
    assert_eq!(sim.address(), 0x42);
    button.check_identity().unwrap();
    sim.power_cycle();
    button.check_identity().unwrap();
    let mut old = QwiicButton::new(sim.clone(), Address::DEFAULT);
    assert!(old.check_identity().unwrap_err().is_no_acknowledge());
}

#[test]
fn an_address_change_right_after_an_led_change_waits_out_its_save_pass() {
    let (mut button, sim, mut clock) = setup();
    button
        .set_led(LedConfig::pulse(255, 1000, 500, 5).unwrap())
        .unwrap(); // seven changed bytes: 24 ms of saving
    let new = Address::new(0x42).unwrap();
    button.set_address(new, &mut clock).unwrap();
    assert_eq!(sim.address(), 0x42, "an address written mid-pass is lost");
}

#[test]
fn a_closed_jumper_keeps_the_old_address_and_the_driver_says_so() {
    let clock = ManualClock::new();
    let config = SimConfig {
        jumpers: 0b0001,
        ..SimConfig::default()
    };
    let sim = SimButton::with_config(config, clock.clone());
    let jumpered = Address::new(0x6E).unwrap();
    let mut button = QwiicButton::new(sim.clone(), jumpered);
    button.check_identity().unwrap();
    let error = button
        .set_address(Address::new(0x42).unwrap(), &mut clock.clone())
        .unwrap_err();
    assert_eq!(
        error,
        qwiic_button::Error::AddressNotTaken {
            requested: Address::new(0x42).unwrap(),
            kept: jumpered
        }
    );
    assert_eq!(button.address(), jumpered);
    assert_eq!(
        button.led().unwrap(),
        LedConfig::OFF,
        "the address check byte holds"
    );
}

#[test]
fn corrupted_reads_are_rejected_not_believed() {
    let (mut button, sim, _) = setup();
    let firmware = button.check_identity().unwrap();
    sim.press();
    sim.set_corrupt_rate(1.0).unwrap();
    // Whichever byte the shift starts at, the reading is rejected: the ID, the firmware or the
    // status bits the firmware never sets give it away.
    let mut kinds = std::collections::HashSet::new();
    for _ in 0..200 {
        let error = button.checked_status(firmware).unwrap_err();
        let qwiic_button::Error::Corrupted(corruption) = error else {
            panic!("{error:?}");
        };
        kinds.insert(std::mem::discriminant(&corruption));
    }
    assert_eq!(kinds.len(), 3, "ID, firmware and status bits all seen");
    assert!(button.led().unwrap_err().is_corrupted());
    // The unchecked one-byte status read believes the shifted 0x05 (pressed, event): 0x02,
    // a click that never happened.
    assert!(button.status().unwrap().has_been_clicked);
    sim.set_corrupt_rate(0.0).unwrap();
    assert!(button.checked_status(firmware).unwrap().is_pressed);
}

#[test]
fn an_unplugged_button_is_a_no_acknowledge_and_recovers() {
    let (mut button, sim, _) = setup();
    sim.unplug();
    let error = button.status().unwrap_err();
    assert!(error.is_no_acknowledge(), "{error}");
    assert!(
        error.to_string().contains("NoAcknowledge") || error.to_string().contains("acknowledge")
    );
    sim.replug();
    button.check_identity().unwrap();
}

#[test]
fn old_firmware_is_reported_so_callers_can_warn() {
    let config = SimConfig {
        firmware: (1, 2),
        ..SimConfig::default()
    };
    let mut button = QwiicButton::new(
        SimButton::with_config(config, ManualClock::new()),
        Address::DEFAULT,
    );
    let firmware = button.check_identity().unwrap();
    assert!(!firmware.can_pop());
}
