//! The simulator behaves like SparkFun's firmware 1.3, byte for byte on the bus. These tests
//! speak raw I2C (no driver) and spell out the register addresses from the datasheet.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use embedded_hal::i2c::{Error as _, ErrorKind, I2c, NoAcknowledgeSource, Operation};
use qwiic_sim::{
    Eeprom, Fault, LedRegisters, ManualClock, Settings, SimButton, SimConfig, SimError,
    SimEventKind,
};

const ADDR: u8 = 0x6F;

fn sim() -> (SimButton, ManualClock) {
    let clock = ManualClock::new();
    let sim = SimButton::with_clock(clock.clone());
    // Leave the debounce lockout that starts at power-up (lastClickTime = 0).
    clock.advance(Duration::from_secs(1));
    (sim, clock)
}

fn read<const N: usize>(bus: &mut SimButton, register: u8) -> [u8; N] {
    let mut buffer = [0; N];
    bus.write_read(ADDR, &[register], &mut buffer).unwrap();
    buffer
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

#[test]
fn identity_and_defaults_after_first_power_up() {
    let (mut bus, _) = sim();
    assert_eq!(read::<3>(&mut bus, 0x00), [0x5D, 0x03, 0x01]);
    assert_eq!(read::<1>(&mut bus, 0x03), [0x00], "no status bits");
    assert_eq!(read::<1>(&mut bus, 0x04), [0x03], "both interrupts enabled");
    assert_eq!(
        read::<2>(&mut bus, 0x05),
        [10, 0],
        "debounce 10 ms, little-endian"
    );
    assert_eq!(
        read::<1>(&mut bus, 0x07)[0] & 0b110,
        0b010,
        "pressed queue empty"
    );
    assert_eq!(
        read::<1>(&mut bus, 0x10)[0] & 0b110,
        0b010,
        "clicked queue empty"
    );
    assert_eq!(
        read::<6>(&mut bus, 0x19),
        [0, 1, 0, 0, 0, 0],
        "LED off, granularity 1"
    );
    assert_eq!(read::<1>(&mut bus, 0x1F), [0x6F]);
}

#[test]
fn other_addresses_are_not_acknowledged() {
    let (mut bus, _) = sim();
    let error = bus.write_read(0x6E, &[0x00], &mut [0]).unwrap_err();
    assert_eq!(error, SimError::NoAcknowledge { address: 0x6E });
    assert_eq!(
        error.kind(),
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Address)
    );
}

#[test]
fn reads_past_0x1f_return_0xff_and_bursts_stop_at_15_bytes() {
    let (mut bus, _) = sim();
    assert_eq!(read::<4>(&mut bus, 0x1E), [0x00, 0x6F, 0xFF, 0xFF]);
    assert_eq!(
        read::<2>(&mut bus, 0x20),
        [0xFF, 0xFF],
        "nothing left to send"
    );
    let burst = read::<17>(&mut bus, 0x00);
    assert_eq!(burst[0], 0x5D);
    assert_eq!(
        &burst[15..],
        &[0xFF, 0xFF],
        "the 16-byte TX buffer is not to be trusted past 15"
    );
}

#[test]
fn reads_from_above_0x20_return_leftover_memory_not_0xff() {
    let (mut bus, _) = sim();
    // The firmware computes a wrapped length and sends the RAM after the map: here the
    // protection map (status bits 0-2 writable, interrupt bits 0-1, the debounce time).
    assert_eq!(read::<4>(&mut bus, 0x23), [0x07, 0x03, 0xFF, 0xFF]);
    assert_eq!(read::<2>(&mut bus, 0x60), [0x00, 0x00]);
}

#[test]
fn the_16th_byte_of_a_write_is_not_acknowledged_and_the_first_15_are_kept() {
    let (mut bus, _) = sim();
    // Register 0x0C, then 15 data bytes: the 14th lands on 0x19 (LED brightness), the 15th
    // would land on 0x1A (granularity) but is the 16th byte of the write.
    let mut write = vec![0x0C];
    write.extend(1..=15u8);
    let error = bus.write(ADDR, &write).unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::NoAcknowledge(NoAcknowledgeSource::Data)
    );
    assert_eq!(
        read::<2>(&mut bus, 0x19),
        [14, 1],
        "brightness kept, granularity not"
    );
    bus.write(ADDR, &write[..15]).unwrap();
}

#[test]
fn writes_auto_increment_through_the_protection_map() {
    let (mut bus, _) = sim();
    // From 0x00: ID and firmware are read-only; status bits 0-2 writable; interrupt bits 0-1.
    bus.write(ADDR, &[0x00, 0xAA, 0xBB, 0xCC, 0xF8, 0xFF, 0x34, 0x12])
        .unwrap();
    assert_eq!(read::<3>(&mut bus, 0x00), [0x5D, 0x03, 0x01]);
    assert_eq!(
        read::<1>(&mut bus, 0x04),
        [0x03],
        "only bits 0-1 of 0xFF stick"
    );
    assert_eq!(read::<2>(&mut bus, 0x05), [0x34, 0x12]);
    // Queue ages are read-only.
    bus.write(ADDR, &[0x08, 1, 2, 3, 4]).unwrap();
    assert_ne!(read::<4>(&mut bus, 0x08), [1, 2, 3, 4]);
    // Only popRequest is writable in a queue status (firmware 1.3): isEmpty survives a 0 write.
    bus.write(ADDR, &[0x07, 0x00]).unwrap();
    assert_eq!(read::<1>(&mut bus, 0x07)[0] & 0b010, 0b010);
    // Bytes past the end of the map are dropped.
    bus.write(ADDR, &[0x1D, 0x02, 0x00, 0x6F, 0x99]).unwrap();
    assert_eq!(read::<4>(&mut bus, 0x1D), [0x02, 0x00, 0x6F, 0xFF]);
}

#[test]
fn a_write_sets_the_pointer_for_a_later_plain_read() {
    let (mut bus, _) = sim();
    bus.write(ADDR, &[0x1F]).unwrap();
    let mut byte = [0];
    bus.read(ADDR, &mut byte).unwrap();
    assert_eq!(byte, [0x6F]);
    // Two reads in a row each start again at the pointer: no lasting auto-increment.
    bus.read(ADDR, &mut byte).unwrap();
    assert_eq!(byte, [0x6F]);
}

#[test]
fn adjacent_operations_form_one_bus_phase() {
    let (mut bus, _) = sim();
    let (mut a, mut b) = ([0; 2], [0; 1]);
    bus.transaction(
        ADDR,
        &mut [
            Operation::Write(&[0x19]),
            Operation::Write(&[7, 1, 0, 0, 0, 0]),
            Operation::Read(&mut a),
            Operation::Read(&mut b),
        ],
    )
    .unwrap();
    assert_eq!(
        bus.led().brightness,
        7,
        "split writes are one write from 0x19"
    );
    assert_eq!(
        (a, b),
        ([7, 1], [0]),
        "split reads continue from the pointer"
    );
}

#[test]
fn press_and_release_set_the_status_and_fill_the_queues() {
    let (mut bus, clock) = sim();
    bus.press();
    assert!(bus.is_held());
    assert_eq!(
        read::<1>(&mut bus, 0x03),
        [0b101],
        "isPressed | eventAvailable"
    );
    clock.advance(Duration::from_millis(100));
    bus.release();
    assert_eq!(
        read::<1>(&mut bus, 0x03),
        [0b011],
        "hasBeenClicked | eventAvailable"
    );
    clock.advance(Duration::from_millis(50));

    let pressed = read::<9>(&mut bus, 0x07);
    assert_eq!(pressed[0] & 0b110, 0, "two entries: neither empty nor full");
    // Ages are millis() - (edge millis - debounce): 50 + 10 for the release, 150 + 10 for the press.
    assert_eq!(u32_at(&pressed, 1), 60, "FRONT is the newest");
    assert_eq!(u32_at(&pressed, 5), 160, "BACK is the oldest");
    let clicked = read::<9>(&mut bus, 0x10);
    assert_eq!((u32_at(&clicked, 1), u32_at(&clicked, 5)), (60, 60));

    bus.write(ADDR, &[0x03, 0x00]).unwrap();
    assert_eq!(read::<1>(&mut bus, 0x03), [0b000]);
}

#[test]
fn is_pressed_follows_the_switch_even_if_written() {
    let (mut bus, _) = sim();
    bus.write(ADDR, &[0x03, 0x04]).unwrap();
    assert_eq!(
        read::<1>(&mut bus, 0x03),
        [0x00],
        "recomputed on every read"
    );
}

#[test]
fn edges_inside_the_debounce_lockout_are_dropped() {
    let (mut bus, clock) = sim();
    bus.press();
    clock.advance(Duration::from_millis(5));
    bus.release(); // 5 ms < 10 ms debounce: no ISR work
    let status = read::<1>(&mut bus, 0x03)[0];
    assert_eq!(status & 0b010, 0, "no click registered");
    assert_eq!(status & 0b100, 0, "but isPressed reads the pin");
    assert_eq!(
        read::<1>(&mut bus, 0x10)[0] & 0b010,
        0b010,
        "clicked queue still empty"
    );
}

#[test]
fn an_edge_exactly_one_debounce_time_after_the_last_counts() {
    let (mut bus, clock) = sim();
    bus.press();
    clock.advance(Duration::from_millis(10));
    bus.release(); // 10 ms = the debounce time: the lockout is over
    assert_eq!(
        read::<1>(&mut bus, 0x03)[0] & 0b010,
        0b010,
        "the click registered"
    );
}

#[test]
fn a_click_for_n_ms_releases_when_the_clock_gets_there() {
    let (mut bus, clock) = sim();
    bus.click(Duration::from_millis(30));
    assert_eq!(read::<1>(&mut bus, 0x03)[0] & 0b100, 0b100);
    clock.advance(Duration::from_millis(29));
    assert!(bus.is_held());
    clock.advance(Duration::from_millis(1));
    assert_eq!(read::<1>(&mut bus, 0x03), [0b011]);
}

#[test]
fn queues_hold_15_and_overwrite_the_oldest() {
    let (mut bus, clock) = sim();
    for _ in 0..8 {
        bus.press();
        clock.advance(Duration::from_millis(20));
        bus.release();
        clock.advance(Duration::from_millis(20));
    }
    // 16 edges on the pressed queue: full, and the oldest (the first press) was overwritten.
    let pressed = read::<9>(&mut bus, 0x07);
    assert_eq!(pressed[0] & 0b110, 0b100, "full");
    assert_eq!(
        u32_at(&pressed, 5),
        14 * 20 + 20 + 10,
        "the second edge is now the oldest"
    );
    let clicked = read::<9>(&mut bus, 0x10);
    assert_eq!(clicked[0] & 0b110, 0, "8 clicks: neither empty nor full");
}

#[test]
fn pop_removes_the_oldest_and_clears_the_request_bit() {
    let (mut bus, clock) = sim();
    bus.press();
    clock.advance(Duration::from_millis(100));
    bus.release();
    bus.write(ADDR, &[0x07, 0x01]).unwrap();
    let pressed = read::<9>(&mut bus, 0x07);
    assert_eq!(pressed[0] & 0b111, 0, "request bit cleared, one entry left");
    assert_eq!(u32_at(&pressed, 5), 10, "the release is now the oldest");
    bus.write(ADDR, &[0x07, 0x01]).unwrap();
    let pressed = read::<9>(&mut bus, 0x07);
    assert_eq!(pressed[0] & 0b110, 0b010, "empty");
    // An empty queue's FRONT reads as uptime (front() returns 0).
    assert_eq!(u32_at(&pressed, 1), 1100);
    bus.write(ADDR, &[0x07, 0x01]).unwrap(); // popping an empty queue does nothing
    assert_eq!(read::<1>(&mut bus, 0x07)[0] & 0b110, 0b010);
}

#[test]
fn a_clicked_pop_clears_its_request_bit_so_a_later_write_pops_nothing() {
    let (mut bus, clock) = sim();
    for _ in 0..2 {
        bus.press();
        clock.advance(Duration::from_millis(100));
        bus.release();
        clock.advance(Duration::from_millis(100));
    }
    bus.write(ADDR, &[0x10, 0x01]).unwrap();
    assert_eq!(read::<1>(&mut bus, 0x10)[0] & 0b111, 0, "one click left");
    bus.write(ADDR, &[0x19, 7]).unwrap(); // an unrelated write
    assert_eq!(
        read::<1>(&mut bus, 0x10)[0] & 0b111,
        0,
        "still one click: not popped again"
    );
}

#[test]
fn firmware_1_2_ignores_the_pop_request() {
    let clock = ManualClock::new();
    let config = SimConfig {
        firmware: (1, 2),
        ..SimConfig::default()
    };
    let mut bus = SimButton::with_config(config, clock.clone());
    clock.advance(Duration::from_secs(1));
    bus.press();
    bus.write(ADDR, &[0x07, 0x01]).unwrap();
    assert_eq!(read::<1>(&mut bus, 0x07)[0] & 0b010, 0, "still one entry");
    assert_eq!(read::<3>(&mut bus, 0x00), [0x5D, 0x02, 0x01]);
}

#[test]
fn on_firmware_1_2_a_pop_write_clears_is_full_until_the_next_push() {
    let clock = ManualClock::new();
    let config = SimConfig {
        firmware: (1, 2),
        ..SimConfig::default()
    };
    let mut bus = SimButton::with_config(config, clock.clone());
    for _ in 0..8 {
        clock.advance(Duration::from_millis(100));
        bus.press();
        clock.advance(Duration::from_millis(100));
        bus.release();
    }
    assert_eq!(
        read::<1>(&mut bus, 0x07)[0] & 0b100,
        0b100,
        "16 edges: full"
    );
    bus.write(ADDR, &[0x07, 0x01]).unwrap(); // the pop request is masked, isFull is not
    assert_eq!(
        read::<1>(&mut bus, 0x07)[0] & 0b110,
        0,
        "isFull cleared, not empty"
    );
    clock.advance(Duration::from_millis(100));
    bus.press();
    assert_eq!(
        read::<1>(&mut bus, 0x07)[0] & 0b100,
        0b100,
        "the next push sets it"
    );
}

#[test]
fn a_closed_jumper_wins_over_an_address_write_which_the_register_shows_for_10_ms() {
    let clock = ManualClock::new();
    let config = SimConfig {
        jumpers: 0b0011,
        ..SimConfig::default()
    };
    let mut bus = SimButton::with_config(config, clock.clone());
    assert_eq!(bus.address(), 0x6C);
    clock.advance(Duration::from_secs(1)); // the boot's save pass
    let mut address = [0];
    bus.write_read(0x6C, &[0x1F], &mut address).unwrap();
    assert_eq!(address, [0x6C], "the register shows the address in use");
    assert_eq!(bus.settings().address, 0x6C, "the boot saved it");
    bus.write(0x6C, &[0x1F, 0x42]).unwrap();
    assert_eq!(bus.registers()[0x1F], 0x42, "the register takes the write");
    // The address type (3.4 ms), the address (3.4 ms), then startI2C finds the jumpers and
    // saves "hardware" again (3.4 ms) before it rejoins the bus.
    clock.advance(Duration::from_millis(10));
    assert_eq!(bus.registers()[0x1F], 0x42, "not yet rejoined");
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        bus.registers()[0x1F],
        0x6C,
        "about 10 ms later the register shows what the jumpers chose"
    );
    assert_eq!(bus.address(), 0x6C, "the jumpers win");
    clock.advance(Duration::from_millis(20));
    assert_eq!(bus.settings().address, 0x42, "the write was saved ...");
    bus.write_read(0x6C, &[0x1F], &mut address).unwrap();
    clock.advance(Duration::from_millis(20));
    assert_eq!(
        bus.settings().address,
        0x6C,
        "... until the next write's pass saved the register's 0x6C over it"
    );
    bus.set_jumpers(0);
    bus.power_cycle();
    assert_eq!(bus.address(), 0x6F, "the address type stayed hardware");
}

#[test]
fn a_boot_with_a_closed_jumper_keeps_the_button_on_0x6f_after_the_jumpers_open() {
    let clock = ManualClock::new();
    let config = SimConfig {
        eeprom: Settings {
            address: 0x42,
            ..Settings::default()
        }
        .into(),
        jumpers: 0b0001,
        ..SimConfig::default()
    };
    let mut bus = SimButton::with_config(config, clock.clone());
    assert_eq!(bus.address(), 0x6E);
    clock.advance(Duration::from_secs(1));
    assert!(bus.eeprom().hardware_address(), "the flag is in EEPROM");
    assert_eq!(
        bus.settings().address,
        0x6E,
        "the boot's save pass wrote the jumpers' address over the saved 0x42"
    );
    bus.set_jumpers(0);
    assert_eq!(bus.address(), 0x6E, "jumpers are read at boot, not at once");
    bus.power_cycle();
    assert_eq!(
        bus.address(),
        0x6F,
        "the jumpers' address with none closed, not the saved one"
    );
    clock.advance(Duration::from_secs(1));
    bus.power_cycle();
    assert_eq!(bus.address(), 0x6F, "sticky across boots");
    // Writing an address the EEPROM does not hold clears the flag and moves the button.
    bus.write(0x6F, &[0x1F, 0x50]).unwrap();
    clock.advance(Duration::from_millis(20));
    assert_eq!(bus.address(), 0x50);
    assert!(!bus.eeprom().hardware_address());
    bus.power_cycle();
    assert_eq!(bus.address(), 0x50);
}

#[test]
fn the_led_shows_a_setting_once_the_main_loop_saved_it() {
    let (mut bus, clock) = sim();
    // Brightness 80, off time 10 s: three changed bytes.
    bus.write(ADDR, &[0x19, 80, 1, 0, 0, 0x10, 0x27]).unwrap();
    let written = bus.now_ms();
    assert_eq!(bus.led().brightness, 80, "the registers at once");
    assert_eq!(bus.settled_at_ms() - written, 11, "3.4 ms a changed byte");
    clock.advance(Duration::from_millis(1));
    assert_eq!(bus.settings().led.brightness, 80, "saving, byte by byte");
    assert_eq!(bus.settings().led.off_time_ms, 0);
    clock.advance(Duration::from_millis(9));
    assert_eq!(bus.led_level(), 0, "the LED when the pass is done");
    clock.advance(Duration::from_millis(1));
    assert_eq!(bus.led_level(), 80);
    assert_eq!(bus.settings().led.off_time_ms, 10_000);
}

#[test]
fn events_are_stamped_to_the_microsecond_the_firmware_step_happened() {
    let (mut bus, clock) = sim();
    clock.advance(Duration::from_micros(2_500));
    let written = bus.now_us();
    // Brightness 80, off time 10 s: three changed bytes, 3.4 ms each, then the LED shows it.
    bus.write(ADDR, &[0x19, 80, 1, 0, 0, 0x10, 0x27]).unwrap();
    clock.advance(Duration::from_millis(20));
    bus.catch_up();
    let led = bus
        .recent_events()
        .into_iter()
        .find(|event| matches!(event.kind, SimEventKind::Led(_)))
        .expect("the LED changed");
    assert_eq!(led.at_us - written, 3 * 3_400, "{led:?}");
    assert_eq!(
        led.at_ms,
        (written + 3 * 3_400).div_ceil(1000),
        "rounded up"
    );
}

#[test]
fn a_write_during_the_save_pass_shows_but_is_saved_only_after_the_next_write() {
    let (mut bus, clock) = sim();
    bus.write(ADDR, &[0x19, 255]).unwrap(); // the pass saves brightness for 3.4 ms
    clock.advance(Duration::from_millis(2));
    bus.write(ADDR, &[0x19, 100]).unwrap(); // lands mid-pass
    assert_eq!(
        bus.settled_at_ms() - bus.now_ms(),
        2,
        "no pass of its own: the one under way ends and clears the flag"
    );
    assert_eq!(bus.led_level(), 0);
    clock.advance(Duration::from_millis(2));
    assert_eq!(
        bus.led_level(),
        100,
        "the LED shows what the pass ends with"
    );
    assert_eq!(
        bus.settings().led.brightness,
        255,
        "the EEPROM what the pass met"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(bus.settings().led.brightness, 255, "still, a second later");
    bus.power_cycle();
    assert_eq!(bus.led_level(), 255, "a power cut now brings 255 back");

    let (mut bus, clock) = sim();
    bus.write(ADDR, &[0x19, 255]).unwrap();
    clock.advance(Duration::from_millis(2));
    bus.write(ADDR, &[0x19, 100]).unwrap();
    clock.advance(Duration::from_millis(10));
    assert_eq!(bus.settings().led.brightness, 255);
    read::<1>(&mut bus, 0x00); // a read's pointer write is a write: the main loop saves
    clock.advance(Duration::from_millis(4));
    assert_eq!(
        bus.settings().led.brightness,
        100,
        "healed by the next write"
    );
}

#[test]
fn a_never_written_eeprom_boots_with_the_led_at_255_and_saves_its_defaults() {
    let clock = ManualClock::new();
    let config = SimConfig {
        eeprom: Eeprom::FRESH,
        ..SimConfig::default()
    };
    let mut bus = SimButton::with_config(config, clock.clone());
    assert_eq!(bus.address(), 0x6F);
    assert_eq!(
        read::<6>(&mut bus, 0x19),
        [255, 0, 0, 0, 0, 0],
        "brightness unchecked (0xFF), granularity 0"
    );
    assert_eq!(bus.led_level(), 255, "the LED is on at full brightness");
    assert_eq!(read::<3>(&mut bus, 0x04), [0x03, 10, 0]);
    clock.advance(Duration::from_millis(10));
    let eeprom = bus.eeprom().bytes();
    assert_eq!(
        eeprom,
        [0x6F, 0x03, 0xFF, 0, 0, 0, 0, 0, 10, 0, 1],
        "defaults saved; the first pass saved the off time the boot put in the wrong place"
    );
    assert_eq!(
        bus.stats().eeprom_byte_writes,
        10,
        "address, interrupts, granularity, cycle (2), debounce (2), address type; then the \
         pass's off time (2); the brightness never"
    );
    bus.erase_eeprom();
    assert_eq!(bus.eeprom().bytes()[..2], [0x6F, 0x03], "booted again");
    assert_eq!(bus.led_level(), 255);
}

/// `bytes` read one bit late from byte `from` on: what the Raspberry Pi's I2C returns when it
/// misses a clock stretch there.
fn shifted_from(bytes: [u8; 4], from: usize) -> [u8; 4] {
    let mut out = bytes;
    let mut carry = if from == 0 { 0 } else { bytes[from - 1] << 7 };
    for at in from..4 {
        out[at] = (bytes[at] >> 1) | carry;
        carry = bytes[at] << 7;
    }
    out
}

#[test]
fn corrupted_reads_come_back_shifted_by_one_bit_from_any_byte_on_without_an_error() {
    let (mut bus, _) = sim();
    bus.press();
    let truth = read::<4>(&mut bus, 0x00);
    assert_eq!(truth, [0x5D, 0x03, 0x01, 0x05]);
    bus.set_corrupt_rate(1.0).unwrap();
    let mut from_each = [0; 4];
    for _ in 0..400 {
        let read = read::<4>(&mut bus, 0x00);
        let from = (0..4)
            .find(|&from| shifted_from(truth, from) == read)
            .unwrap_or_else(|| panic!("{read:02x?} is no one-bit shift of {truth:02x?}"));
        from_each[from] += 1;
    }
    // Every byte is sometimes the first one hit: a corrupted burst can keep a valid ID.
    assert!(from_each.iter().all(|&n| n > 50), "{from_each:?}");
    assert_eq!(
        shifted_from(truth, 0)[0],
        0x2E,
        "from the start, 0x5D reads 0x2E"
    );
    assert_eq!(bus.stats().corrupted_reads, 400);
    bus.set_corrupt_rate(0.0).unwrap();
    assert_eq!(read::<3>(&mut bus, 0x00), [0x5D, 0x03, 0x01]);
    assert!(bus.set_corrupt_rate(1.5).is_err());
}

#[test]
fn a_bouncing_switch_flickers_is_pressed_but_not_the_events() {
    let (mut bus, clock) = sim();
    bus.set_bounce(Duration::from_millis(5));
    bus.press();
    let mut levels = Vec::new();
    for _ in 0..20 {
        levels.push(read::<1>(&mut bus, 0x03)[0] & 0b100 != 0);
    }
    assert!(
        levels.contains(&false) && levels.contains(&true),
        "the raw pin flickers right after the edge: {levels:?}"
    );
    assert_eq!(read::<1>(&mut bus, 0x07)[0] & 0b010, 0, "one event queued");
    clock.advance(Duration::from_millis(5));
    for _ in 0..20 {
        assert_eq!(read::<1>(&mut bus, 0x03)[0] & 0b100, 0b100, "settled");
    }
}

#[test]
fn every_fault_kind_arrives_as_its_error_kind() {
    let (mut bus, _) = sim();
    for (fault, kind) in [
        (
            Fault::Nack,
            ErrorKind::NoAcknowledge(NoAcknowledgeSource::Unknown),
        ),
        (Fault::Bus, ErrorKind::Bus),
        (Fault::ArbitrationLoss, ErrorKind::ArbitrationLoss),
        (Fault::Other, ErrorKind::Other),
    ] {
        bus.fail_next(1, fault);
        let error = bus.write_read(ADDR, &[0x00], &mut [0]).unwrap_err();
        assert_eq!(error.kind(), kind, "{fault}");
        assert!(error.to_string().contains(&fault.to_string()), "{error}");
    }
}

#[test]
fn led_settings_persist_across_a_power_cycle_but_status_does_not() {
    let (mut bus, clock) = sim();
    bus.write(ADDR, &[0x19, 200, 4, 0xE8, 0x03, 0xF4, 0x01])
        .unwrap();
    bus.press();
    clock.advance(Duration::from_millis(25)); // seven changed bytes, 3.4 ms each
    assert_eq!(
        bus.settings().led,
        LedRegisters {
            brightness: 200,
            granularity: 4,
            cycle_time_ms: 1000,
            off_time_ms: 500
        }
    );
    bus.release();
    bus.power_cycle();
    assert_eq!(read::<6>(&mut bus, 0x19), [200, 4, 0xE8, 0x03, 0xF4, 0x01]);
    assert_eq!(read::<1>(&mut bus, 0x03), [0], "status is volatile");
    assert_eq!(
        read::<1>(&mut bus, 0x07)[0] & 0b010,
        0b010,
        "queues are volatile"
    );
}

#[test]
fn eeprom_bytes_are_rewritten_only_when_they_change() {
    let (mut bus, _) = sim();
    bus.write(ADDR, &[0x19, 255, 1, 0, 0, 0, 0]).unwrap();
    assert_eq!(bus.stats().eeprom_byte_writes, 1, "brightness only");
    bus.write(ADDR, &[0x19, 255, 1, 0, 0, 0, 0]).unwrap();
    assert_eq!(bus.stats().eeprom_byte_writes, 1);
    assert_eq!(
        bus.stats().led_writes,
        2,
        "but both were LED register writes"
    );
}

#[test]
fn a_valid_address_write_moves_the_device_once_saved_an_invalid_one_does_not() {
    let (mut bus, clock) = sim();
    bus.write(ADDR, &[0x1F, 0x78]).unwrap(); // out of range
    assert_eq!(
        read::<1>(&mut bus, 0x1F),
        [0x78],
        "the register keeps the bad value"
    );
    assert_eq!(bus.address(), ADDR);
    clock.advance(Duration::from_millis(10)); // its save pass
    assert_eq!(
        bus.settings().address,
        ADDR,
        "an illegal address is never saved"
    );
    bus.write(ADDR, &[0x1F, 0x5B]).unwrap();
    assert_eq!(
        bus.address(),
        ADDR,
        "not before the main loop has saved it to EEPROM"
    );
    clock.advance(Duration::from_millis(4));
    assert_eq!(bus.address(), 0x5B);
    assert!(bus.write_read(ADDR, &[0x00], &mut [0]).is_err());
    let mut id = [0];
    bus.write_read(0x5B, &[0x00], &mut id).unwrap();
    assert_eq!(id, [0x5D]);
    bus.power_cycle();
    assert_eq!(bus.address(), 0x5B, "saved to EEPROM");
}

#[test]
fn an_unplugged_button_nacks_and_comes_back_from_eeprom() {
    let (mut bus, _) = sim();
    bus.write(ADDR, &[0x19, 50, 1, 0, 0, 0, 0]).unwrap();
    bus.unplug();
    assert!(!bus.is_plugged());
    assert_eq!(
        bus.write_read(ADDR, &[0x00], &mut [0]),
        Err(SimError::NoAcknowledge { address: ADDR })
    );
    assert_eq!(bus.led_level(), 0, "no power, no light");
    bus.replug();
    assert_eq!(read::<1>(&mut bus, 0x19), [50]);
    assert_eq!(bus.led_level(), 50);
}

#[test]
fn injected_faults_fail_exactly_the_next_n_transactions() {
    let (mut bus, _) = sim();
    bus.fail_next(2, Fault::Bus);
    for _ in 0..2 {
        let error = bus.write_read(ADDR, &[0x00], &mut [0]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Bus);
    }
    assert!(bus.write_read(ADDR, &[0x00], &mut [0]).is_ok());
    let stats = bus.stats();
    assert_eq!((stats.transactions, stats.failed_transactions), (3, 2));
}

#[test]
fn a_fault_rate_fails_about_that_share_and_is_validated() {
    let (mut bus, _) = sim();
    assert!(
        bus.set_fault_rate(1.5, Fault::Nack)
            .unwrap_err()
            .to_string()
            .contains("0.0")
    );
    bus.set_fault_rate(0.1, Fault::Nack).unwrap();
    let failed = (0..10_000)
        .filter(|_| bus.write_read(ADDR, &[0x00], &mut [0]).is_err())
        .count();
    assert!(
        (800..1200).contains(&failed),
        "{failed} of 10000 failed at 10%"
    );
    bus.set_fault_rate(0.0, Fault::Nack).unwrap();
    assert!((0..100).all(|_| bus.write_read(ADDR, &[0x00], &mut [0]).is_ok()));
}

#[test]
fn a_failed_write_changes_nothing() {
    let (mut bus, _) = sim();
    bus.fail_next(1, Fault::Nack);
    assert!(bus.write(ADDR, &[0x19, 255, 1, 0, 0, 0, 0]).is_err());
    assert_eq!(bus.led().brightness, 0);
}

#[test]
fn the_led_level_follows_the_pulse_envelope() {
    let (mut bus, clock) = sim();
    bus.write(ADDR, &[0x19, 200, 1, 0xE8, 0x03, 0xF4, 0x01])
        .unwrap(); // 1000 ms ramp, 500 ms off
    assert_eq!(bus.led_level(), 0);
    // Five changed EEPROM bytes (200, 0xE8, 0x03, 0xF4, 0x01) at 3.4 ms each, then it pulses.
    clock.advance(Duration::from_millis(17));
    assert_eq!(bus.led_level(), 0, "the ramp starts at 0");
    clock.advance(Duration::from_millis(500));
    assert_eq!(bus.led_level(), 200, "peak mid-cycle");
    clock.advance(Duration::from_millis(250));
    assert_eq!(bus.led_level(), 100);
    clock.advance(Duration::from_millis(500));
    assert_eq!(bus.led_level(), 0, "off time");
}

#[test]
fn observers_get_every_event_on_the_simulator_clock() {
    let (mut bus, clock) = sim();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    bus.subscribe(move |event| sink.lock().unwrap().push((event.at_ms, event.kind)));
    bus.click(Duration::from_millis(40));
    clock.advance(Duration::from_millis(40));
    bus.write(ADDR, &[0x19, 9, 1, 0, 0, 0, 0]).unwrap();
    bus.write(ADDR, &[0x19, 9, 1, 0, 0, 0, 0]).unwrap(); // arrives, but changes nothing shown
    clock.advance(Duration::from_millis(4));
    assert!(bus.is_plugged()); // any look at the device applies what the clock reached
    let led = LedRegisters {
        brightness: 9,
        ..LedRegisters::default()
    };
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (1000, SimEventKind::Pressed),
            (1000, SimEventKind::Int { low: true }),
            (1040, SimEventKind::Released),
            (1040, SimEventKind::LedWritten),
            (1040, SimEventKind::LedWritten),
            (1044, SimEventKind::Led(led))
        ]
    );
    assert_eq!(bus.recent_events().len(), 6);
}

#[test]
fn the_first_status_read_after_int_falls_is_its_answer_and_other_reads_are_not() {
    let (mut bus, clock) = sim();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    bus.subscribe(move |event| {
        if event.kind == SimEventKind::IntAnswered {
            sink.lock().unwrap().push(event.at_us);
        }
    });
    let _: [u8; 4] = read(&mut bus, 0x00); // no INT yet: not an answer
    bus.press();
    clock.advance(Duration::from_micros(2500));
    let _: [u8; 1] = read(&mut bus, 0x19); // the LED, not the status
    let _: [u8; 4] = read(&mut bus, 0x00); // ID to status: the answer
    let _: [u8; 1] = read(&mut bus, 0x03); // the line is still low, but answered already
    assert_eq!(*seen.lock().unwrap(), [1_002_500]);
}

#[test]
fn a_custom_eeprom_is_loaded_at_power_up() {
    let settings = Settings {
        address: 0x60,
        debounce_ms: 25,
        ..Settings::default()
    };
    let mut bus = SimButton::with_config(
        SimConfig {
            eeprom: settings.into(),
            ..SimConfig::default()
        },
        ManualClock::new(),
    );
    let mut debounce = [0; 2];
    bus.write_read(0x60, &[0x05], &mut debounce).unwrap();
    assert_eq!(u16::from_le_bytes(debounce), 25);
}

#[test]
fn clones_share_one_device_and_transactions_are_atomic_across_threads() {
    let (bus, _) = sim();
    let writers: Vec<_> = (0..4u8)
        .map(|n| {
            let mut bus = bus.clone();
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    // The whole 6-byte LED setting is one write, all bytes equal to n.
                    bus.write(ADDR, &[0x19, n, n + 1, n, n, n, n]).unwrap();
                }
            })
        })
        .collect();
    let mut reader = bus.clone();
    for _ in 0..2000 {
        let led = read::<6>(&mut reader, 0x19);
        assert!(
            led[0] + 1 == led[1] && led[2..].iter().all(|&b| b == led[0])
                || led == [0, 1, 0, 0, 0, 0],
            "torn read {led:?}"
        );
    }
    for writer in writers {
        writer.join().unwrap();
    }
}

#[test]
fn the_counters_count_data_bytes_and_each_registers_writes() {
    let (mut bus, _) = sim();
    bus.write(ADDR, &[0x19, 1, 1, 0, 0]).unwrap();
    bus.write(ADDR, &[0x19, 2]).unwrap();
    bus.write_read(ADDR, &[0x00], &mut [0; 3]).unwrap();
    bus.write_read(ADDR, &[0x03], &mut [0; 2]).unwrap();
    let stats = bus.stats();
    assert_eq!(stats.bytes_written, 5, "data bytes, not the register byte");
    assert_eq!(stats.bytes_read, 5);
    assert_eq!(stats.register_writes[0x19], 2);
    assert_eq!(stats.register_writes[0x1A], 1);
    assert_eq!(
        stats.register_writes[0x00], 0,
        "a pointer write stores nothing"
    );
    assert_eq!(stats.led_writes, 2);
}

#[test]
fn corrupted_writes_are_acknowledged_and_then_lost_or_applied_one_bit_late() {
    let (mut bus, clock) = sim();
    bus.set_write_corrupt_rate(1.0).unwrap();
    let (mut lost, mut misapplied) = (0, 0);
    for _ in 0..200 {
        bus.set_write_corrupt_rate(0.0).unwrap();
        bus.write(ADDR, &[0x19, 0]).unwrap();
        bus.set_write_corrupt_rate(1.0).unwrap();
        bus.write(ADDR, &[0x19, 0xF0]).unwrap(); // acknowledged, whatever happens to it
        match bus.led().brightness {
            0 => lost += 1,
            0xF8 => misapplied += 1, // 0xF0 one bit late, the register byte's low bit first
            other => panic!("brightness {other:#04x}"),
        }
    }
    assert!(
        lost > 50 && misapplied > 50,
        "{lost} lost, {misapplied} misapplied"
    );
    assert_eq!(bus.stats().corrupted_writes, 200);
    // A status clear that does not clear: the flags stay.
    let mut stayed = 0;
    for round in 0..20 {
        clock.advance(Duration::from_millis(50)); // past the debounce lockout
        if round % 2 == 0 {
            bus.press();
        } else {
            bus.release();
        }
        bus.write(ADDR, &[0x03, 0x00]).unwrap();
        stayed += usize::from(read::<1>(&mut bus, 0x03)[0] & 0b011 != 0);
    }
    assert!(stayed > 3, "some clears were lost: {stayed} of 20");
    assert!(bus.set_write_corrupt_rate(-0.1).is_err());
}

#[test]
fn a_late_bounce_is_one_more_edge_for_the_firmware_while_the_switch_settles_back() {
    let (mut bus, clock) = sim();
    bus.set_late_bounce_rate(1.0).unwrap();
    clock.advance(Duration::from_secs(1));
    bus.press();
    bus.write(ADDR, &[0x03, 0x00]).unwrap(); // the press seen and cleared
    clock.advance(Duration::from_millis(50));
    // 11 ms after the press the contact bounced open for 1 ms: the firmware took it for an
    // edge (the release's flags), the return within its lockout not.
    let status = read::<1>(&mut bus, 0x03)[0];
    assert_eq!(
        status & 0b111,
        0b111,
        "pressed, with event and clicked flags: {status:03b}"
    );
    let queue = read::<9>(&mut bus, 0x07);
    let newest = u32::from_le_bytes([queue[1], queue[2], queue[3], queue[4]]);
    assert_eq!(
        newest,
        50 - 11 + 10,
        "the bounce's age, with the debounce the stamp includes"
    );
    assert!(bus.is_held(), "the switch is still held");
    assert!(bus.set_late_bounce_rate(2.0).is_err());
}

// The INT pin: open drain, active low, driven at the top of each turn of the main loop from
// the status register and INTERRUPT_CONFIG (0x04: bit 0 clicked, bit 1 pressed).

#[test]
fn int_falls_on_a_press_and_a_status_clear_releases_it_until_the_next_read() {
    let (mut bus, _) = sim();
    assert!(!bus.int_low(), "released at rest");
    bus.press();
    assert!(
        bus.int_low(),
        "isPressed with the pressed interrupt enabled"
    );
    bus.write(ADDR, &[0x03, 0x00]).unwrap();
    assert!(
        !bus.int_low(),
        "clearing the status (isPressed too) releases it"
    );
    // A read recomputes isPressed from the pin: the line falls again while the switch is held.
    assert_eq!(read::<1>(&mut bus, 0x03), [0b100]);
    assert!(bus.int_low(), "held, and read again");
}

#[test]
fn a_release_holds_int_low_until_the_click_is_cleared() {
    let (mut bus, clock) = sim();
    bus.press();
    bus.write(ADDR, &[0x03, 0x00]).unwrap();
    clock.advance(Duration::from_millis(50));
    bus.release();
    assert!(
        bus.int_low(),
        "hasBeenClicked with the clicked interrupt enabled"
    );
    assert_eq!(read::<1>(&mut bus, 0x03), [0b011]);
    assert!(bus.int_low(), "a read clears nothing");
    bus.write(ADDR, &[0x03, 0x00]).unwrap();
    assert!(!bus.int_low(), "cleared");
}

#[test]
fn each_interrupt_enable_gates_its_own_cause() {
    for (enables, low_on_press, low_on_release) in [
        (0b00, false, false),
        (0b01, false, true),
        (0b10, true, false),
        (0b11, true, true),
    ] {
        let (mut bus, clock) = sim();
        bus.write(ADDR, &[0x04, enables]).unwrap();
        clock.advance(Duration::from_millis(10)); // its save pass
        bus.press();
        assert_eq!(bus.int_low(), low_on_press, "{enables:#04b}: on a press");
        bus.write(ADDR, &[0x03, 0x00]).unwrap();
        clock.advance(Duration::from_millis(50));
        bus.release();
        assert_eq!(
            bus.int_low(),
            low_on_release,
            "{enables:#04b}: on a release"
        );
    }
}

#[test]
fn int_follows_a_press_only_after_a_save_pass_under_way() {
    let (mut bus, clock) = sim();
    bus.write(ADDR, &[0x19, 200]).unwrap(); // a changed byte: a pass of about 3.4 ms
    let busy_until = bus.settled_at_ms();
    assert!(busy_until > bus.now_ms(), "the pass is under way");
    bus.press();
    assert!(
        !bus.int_low(),
        "the loop drives INT before its save pass, not during it"
    );
    clock.advance(Duration::from_millis(busy_until - bus.now_ms()));
    assert!(
        bus.int_low(),
        "the next turn of the loop, once the pass is done"
    );
}

#[test]
fn unplugging_releases_int_and_a_replugged_button_starts_released() {
    let (bus, _) = sim();
    bus.press();
    assert!(bus.int_low());
    bus.unplug();
    assert!(!bus.int_low(), "an unpowered board pulls nothing down");
    bus.replug();
    assert!(
        !bus.int_low(),
        "status lost at power-up, though the switch is held"
    );
}
