//! The simulator's controls, as the services' tests and the simulator server use them: the
//! switch, lost writes, the injected delay, the schedule of later changes and its hooks, the
//! register view, the counters, and what its errors say.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use embedded_hal::i2c::I2c;
use qwiic_sim::{
    Clock as _, Fault, InvalidRate, ManualClock, SimButton, SimError, SimEventKind, SystemClock,
};

const ADDR: u8 = 0x6F;
const LED_BRIGHTNESS: u8 = 0x19;

fn sim() -> (SimButton, ManualClock) {
    let clock = ManualClock::new();
    let sim = SimButton::with_clock(clock.clone());
    clock.advance(Duration::from_secs(1)); // past the debounce lockout of power-up
    (sim, clock)
}

#[test]
fn is_held_follows_press_and_release() {
    let (sim, _) = sim();
    assert!(!sim.is_held());
    sim.press();
    assert!(sim.is_held());
    sim.release();
    assert!(!sim.is_held());
}

#[test]
fn a_lost_write_is_acknowledged_and_changes_nothing_and_the_next_one_lands() {
    let (mut bus, _) = sim();
    bus.lose_next_writes(1);
    bus.write(ADDR, &[LED_BRIGHTNESS, 200]).unwrap();
    assert_eq!(bus.led().brightness, 0, "lost");
    bus.write(ADDR, &[LED_BRIGHTNESS, 100]).unwrap();
    assert_eq!(bus.led().brightness, 100, "the next one lands");
}

#[test]
fn the_register_view_is_what_a_read_of_the_whole_map_returns() {
    let (mut bus, _) = sim();
    bus.press();
    bus.write(ADDR, &[LED_BRIGHTNESS, 42]).unwrap();
    let mut read = [0; 32];
    for start in (0..32).step_by(15) {
        let end = (start + 15).min(32); // 15 bytes a read, as the firmware serves
        bus.write_read(ADDR, &[start as u8], &mut read[start..end])
            .unwrap();
    }
    let view = bus.registers();
    assert_eq!(view, read);
    assert_eq!(view[0x00], 0x5D);
    assert_eq!(view[usize::from(LED_BRIGHTNESS)], 42);
}

#[test]
fn an_injected_delay_holds_each_transaction_that_long_and_is_visible_meanwhile() {
    let bus = SimButton::new();
    assert_eq!(bus.transaction_delay(), Duration::ZERO);
    let delay = Duration::from_millis(60);
    bus.set_delay(delay);
    assert_eq!(bus.transaction_delay(), delay);
    assert_eq!(bus.delayed_transactions(), 0);

    let mut in_flight = bus.clone();
    let started = Instant::now();
    let transaction = std::thread::spawn(move || {
        in_flight.write_read(ADDR, &[0x00], &mut [0]).unwrap();
        started.elapsed()
    });
    let until = Instant::now() + Duration::from_secs(10);
    while bus.delayed_transactions() != 1 {
        assert!(
            Instant::now() < until,
            "the transaction never showed as delayed"
        );
        std::thread::yield_now();
    }
    let took = transaction.join().unwrap();
    assert!(took >= delay, "a {delay:?} delay took {took:?}");
    assert_eq!(bus.delayed_transactions(), 0);

    bus.set_delay(Duration::ZERO);
    let mut bus = bus;
    bus.write_read(ADDR, &[0x00], &mut [0]).unwrap();
    assert_eq!(bus.delayed_transactions(), 0);
}

#[test]
fn the_next_change_is_a_clicks_release_or_a_saved_setting_and_catch_up_applies_it() {
    let (mut bus, clock) = sim();
    let wakes = Arc::new(AtomicUsize::new(0));
    let woken = Arc::clone(&wakes);
    bus.on_schedule(move || {
        woken.fetch_add(1, Ordering::SeqCst);
    });
    let released = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&released);
    bus.subscribe(move |event| {
        if event.kind == SimEventKind::Released {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    assert_eq!(bus.next_change_at_ms(), None, "nothing scheduled");

    bus.click(Duration::from_millis(50));
    assert_eq!(wakes.load(Ordering::SeqCst), 1, "the click woke the hook");
    assert_eq!(bus.next_change_at_ms(), Some(1050));
    clock.advance(Duration::from_millis(50));
    assert_eq!(released.load(Ordering::SeqCst), 0, "due, but nobody looked");
    bus.catch_up();
    assert_eq!(released.load(Ordering::SeqCst), 1, "catch_up applied it");
    assert_eq!(bus.next_change_at_ms(), None);

    // One changed EEPROM byte: the LED shows it 3.4 ms (rounded up) later.
    bus.write(ADDR, &[LED_BRIGHTNESS, 255]).unwrap();
    assert_eq!(wakes.load(Ordering::SeqCst), 2, "the write woke the hook");
    assert_eq!(bus.next_change_at_ms(), Some(1054));
    clock.advance(Duration::from_millis(4));
    bus.catch_up();
    assert_eq!(bus.next_change_at_ms(), None);
    assert_eq!(bus.led_level(), 255);
}

#[test]
fn transactions_are_counted_for_the_device_not_for_other_addresses() {
    let (mut bus, _) = sim();
    bus.write_read(ADDR, &[0x00], &mut [0]).unwrap();
    assert!(bus.write_read(0x42, &[0x00], &mut [0]).is_err());
    let stats = bus.stats();
    assert_eq!((stats.transactions, stats.failed_transactions), (1, 0));
    bus.unplug();
    assert!(bus.write_read(ADDR, &[0x00], &mut [0]).is_err());
    let stats = bus.stats();
    assert_eq!(
        (stats.transactions, stats.failed_transactions),
        (2, 1),
        "unplugged: its own address counts as a failed transaction"
    );
}

#[test]
fn errors_say_what_happened_and_what_to_check() {
    let cases = [
        (
            SimError::NoAcknowledge { address: 0x42 },
            "simulated bus: no device acknowledged address 0x42 (unplugged or another address)",
        ),
        (
            SimError::DataNotAcknowledged { length: 17 },
            "simulated bus: byte 16 of a 17-byte write was not acknowledged (the device takes 15)",
        ),
        (
            SimError::Injected(Fault::Nack),
            "simulated bus: injected fault: no acknowledge",
        ),
        (
            SimError::Injected(Fault::Bus),
            "simulated bus: injected fault: bus error",
        ),
        (
            SimError::Injected(Fault::ArbitrationLoss),
            "simulated bus: injected fault: arbitration lost",
        ),
        (
            SimError::Injected(Fault::Other),
            "simulated bus: injected fault: other error",
        ),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
    assert_eq!(
        InvalidRate(1.5).to_string(),
        "fault rate 1.5 is out of range: give a fraction from 0.0 (never) to 1.0 (always)"
    );
}

#[test]
fn a_handle_shows_its_clock_when_debugged() {
    let (sim, _) = sim();
    let shown = format!("{sim:?}");
    assert!(
        shown.starts_with("SimButton { clock: ManualClock"),
        "{shown}"
    );
}

#[test]
fn the_system_clock_counts_real_milliseconds_from_zero() {
    let started = Instant::now(); // before the clock starts, so it has run at most this long
    let clock = SystemClock::new();
    assert!(clock.now_ms() < 1000, "starts at 0");
    let until = started + Duration::from_secs(10);
    while clock.now_ms() < 5 {
        assert!(Instant::now() < until, "the system clock did not move");
        std::thread::yield_now();
    }
    assert!(started.elapsed() >= Duration::from_millis(5));
}

#[test]
fn waiting_on_a_manual_clock_moves_it_by_whole_microseconds() {
    use embedded_hal::delay::DelayNs as _;
    let mut clock = ManualClock::new();
    clock.delay_ms(25);
    assert_eq!((clock.now_ms(), clock.now_us()), (25, 25_000));
    clock.delay_ns(1);
    assert_eq!(clock.now_us(), 25_001, "rounded up");
    assert_eq!(clock.now_ms(), 25, "whole milliseconds, rounded down");
}

/// The outcome of each of `count` one-byte reads of the ID: `.` clean, `x` failed, `c`
/// corrupted.
fn fault_pattern(bus: &mut SimButton, count: usize) -> String {
    (0..count)
        .map(|_| {
            let mut id = [0];
            match bus.write_read(ADDR, &[0x00], &mut id) {
                Err(_) => 'x',
                Ok(()) if id[0] == 0x5D => '.',
                Ok(()) => 'c',
            }
        })
        .collect()
}

#[test]
fn a_seed_repeats_the_same_faults_in_every_version() {
    // Pinned, so that a faulty run recorded with one version of the simulator (the seed is
    // in its log) repeats with the next. A rate of 0 draws nothing, so switching one kind of
    // fault off leaves the other's sequence as it was.
    let (mut bus, _) = sim();
    bus.set_fault_rate(0.0, Fault::Nack).unwrap();
    bus.set_corrupt_rate(0.5).unwrap();
    let corrupted = fault_pattern(&mut bus, 40);
    let (mut bus, _) = sim();
    bus.set_fault_rate(0.5, Fault::Nack).unwrap();
    bus.set_corrupt_rate(0.0).unwrap();
    let failed = fault_pattern(&mut bus, 40);
    let expected = "__...__..___.__..__...._._..___...___.._";
    assert_eq!(corrupted, expected.replace('_', "c"));
    assert_eq!(failed, expected.replace('_', "x"), "the same draws");
}

#[test]
fn a_corrupt_rate_corrupts_about_that_share_of_reads() {
    let (mut bus, _) = sim();
    bus.set_corrupt_rate(0.1).unwrap();
    let corrupted = fault_pattern(&mut bus, 10_000).matches('c').count();
    assert!(
        (800..1200).contains(&corrupted),
        "{corrupted} of 10000 corrupted at 10%"
    );
}
