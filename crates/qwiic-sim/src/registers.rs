//! The firmware's register map and write-protection map, re-declared from SparkFun's registers.h
//! (firmware 1.3) independently of the driver, so that a wrong constant in either shows up.

/// Size of the packed `memoryMap` struct.
pub const MAP_SIZE: usize = 32;

pub const ID: usize = 0x00;
pub const FIRMWARE_MINOR: usize = 0x01;
pub const FIRMWARE_MAJOR: usize = 0x02;
pub const BUTTON_STATUS: usize = 0x03;
pub const INTERRUPT_CONFIG: usize = 0x04;
pub const BUTTON_DEBOUNCE_TIME: usize = 0x05;
pub const PRESSED_QUEUE_STATUS: usize = 0x07;
pub const PRESSED_QUEUE_FRONT: usize = 0x08;
pub const PRESSED_QUEUE_BACK: usize = 0x0C;
pub const CLICKED_QUEUE_STATUS: usize = 0x10;
pub const CLICKED_QUEUE_FRONT: usize = 0x11;
pub const CLICKED_QUEUE_BACK: usize = 0x15;
pub const LED_BRIGHTNESS: usize = 0x19;
pub const LED_PULSE_GRANULARITY: usize = 0x1A;
pub const LED_PULSE_CYCLE_TIME: usize = 0x1B;
pub const LED_PULSE_OFF_TIME: usize = 0x1D;
pub const I2C_ADDRESS: usize = 0x1F;

pub const DEVICE_ID: u8 = 0x5D;

/// BUTTON_STATUS bits.
pub const EVENT_AVAILABLE: u8 = 1 << 0;
pub const HAS_BEEN_CLICKED: u8 = 1 << 1;
pub const IS_PRESSED: u8 = 1 << 2;
/// INTERRUPT_CONFIG bits.
pub const CLICKED_ENABLE: u8 = 1 << 0;
pub const PRESSED_ENABLE: u8 = 1 << 1;
/// Queue status bits.
pub const POP_REQUEST: u8 = 1 << 0;
pub const IS_EMPTY: u8 = 1 << 1;
pub const IS_FULL: u8 = 1 << 2;

/// Which bits the host may write, per byte (1 = writable): `protectionMap` in registers.h.
/// Firmware 1.3 lets the host write only `popRequest` in the queue status registers.
pub const PROTECTION_V1_3: [u8; MAP_SIZE] = {
    let mut map = [0u8; MAP_SIZE];
    map[BUTTON_STATUS] = 0x07;
    map[INTERRUPT_CONFIG] = 0x03;
    map[BUTTON_DEBOUNCE_TIME] = 0xFF;
    map[BUTTON_DEBOUNCE_TIME + 1] = 0xFF;
    map[PRESSED_QUEUE_STATUS] = POP_REQUEST;
    map[CLICKED_QUEUE_STATUS] = POP_REQUEST;
    let mut led = LED_BRIGHTNESS;
    while led <= I2C_ADDRESS {
        map[led] = 0xFF;
        led += 1;
    }
    map
};

/// Firmware 1.2 and older declared the queue status protection bits in the wrong order
/// (`{0, 0, 1}`): `isFull` is writable and the pop request is masked out.
pub const PROTECTION_V1_2: [u8; MAP_SIZE] = {
    let mut map = PROTECTION_V1_3;
    map[PRESSED_QUEUE_STATUS] = IS_FULL;
    map[CLICKED_QUEUE_STATUS] = IS_FULL;
    map
};
