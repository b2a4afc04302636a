//! The simulated ATtiny84 firmware: register file, EEPROM, switch ISR, queues, receive and
//! request handlers, and the main loop's settings handling, as SparkFun's firmware 1.3 does them.

use std::collections::VecDeque;

use crate::eeprom::{
    self, ADDRESS, ADDRESS_TYPE, BYTE_WRITE_US, ERASED, HARDWARE_ADDRESS, SOFTWARE_ADDRESS,
};
use crate::fault::FaultState;
use crate::queue::TimestampQueue;
use crate::registers::*;
use crate::{Eeprom, Fault, LedRegisters, Settings, SimConfig, SimEvent, SimEventKind, SimStats};

/// The firmware's TX buffer holds 16 bytes; we serve 15 of them, as SparkFun advises, so a
/// driver that reads more fails its tests here instead of flaking on hardware.
pub const TX_LIMIT: usize = 15;
/// The firmware's receive buffer holds 15 bytes, the register byte included; the 16th byte of a
/// write is not acknowledged.
pub const RX_LIMIT: usize = 15;

/// The address with every jumper open and nothing else configured.
const DEFAULT_ADDRESS: u8 = 0x6F;

/// Addresses the firmware accepts from the register or its EEPROM.
fn is_legal(address: u8) -> bool {
    (0x08..=0x77).contains(&address)
}

/// Where the firmware's main loop is in its work. It runs one step at a time on the simulator
/// clock, so a write that lands in the middle of a save pass meets what it meets on the
/// device: the pass reads each setting when it gets to it, and clears the update flag when done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The top of `loop()`: an address register that differs from the last one seen makes the
    /// address type "software".
    AddressCheck,
    /// The INT pin's update, right after the address check and before the save pass: pulled
    /// low while (isPressed and pressedEnable) or (hasBeenClicked and clickedEnable), released
    /// otherwise. So it follows the registers only at the top of a turn of the loop: after a
    /// save pass, not during one.
    DriveInt,
    /// `if (updateFlag)`: a write since the last pass starts one; otherwise the loop sleeps
    /// until an interrupt (the switch's, or I2C's) wakes it.
    FlagCheck,
    /// `recordSystemSettings`: a new legal address is saved, then I2C restarts on it.
    SaveAddress,
    /// `startI2C`: the address type and the jumpers decide the address.
    StartI2c,
    /// `Wire.begin` on that address, which the register then shows.
    Rejoin(u8),
    /// The settings' bytes, in the order the pass puts them (`SAVED[i]`).
    Save(usize),
    /// `onboardLED.update`, then `updateFlag = false`.
    ShowLed,
}

/// The register byte behind each EEPROM byte the save pass puts, in its order.
const SAVED: [(usize, usize); 9] = [
    (INTERRUPT_CONFIG, eeprom::INTERRUPTS),
    (LED_BRIGHTNESS, eeprom::BRIGHTNESS),
    (LED_PULSE_GRANULARITY, eeprom::GRANULARITY),
    (LED_PULSE_CYCLE_TIME, eeprom::CYCLE_TIME),
    (LED_PULSE_CYCLE_TIME + 1, eeprom::CYCLE_TIME + 1),
    (LED_PULSE_OFF_TIME, eeprom::OFF_TIME),
    (LED_PULSE_OFF_TIME + 1, eeprom::OFF_TIME + 1),
    (BUTTON_DEBOUNCE_TIME, eeprom::DEBOUNCE),
    (BUTTON_DEBOUNCE_TIME + 1, eeprom::DEBOUNCE + 1),
];

#[derive(Debug, Clone, Copy)]
struct MainLoop {
    /// `updateFlag`: set by every write (a pointer-only one too), cleared after a save pass.
    update_flag: bool,
    /// `oldAddress`: the address register as the loop last saw it.
    old_address: u8,
    /// The next step and when it runs, in microseconds on the simulator clock; `None` while
    /// the loop sleeps.
    next: Option<(Step, u64)>,
    /// When the last step ran.
    last_step_us: u64,
}

/// A change of the switch's pin, due at `at_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Edge {
    at_us: u64,
    down: bool,
    /// A bounce of the contact, not a press or release: it bounces no further.
    bounce: bool,
}

/// How many past events [`Device::history`] keeps.
const HISTORY: usize = 256;

#[derive(Debug, Clone)]
pub struct Device {
    config: SimConfig,
    /// The packed register map (`registerMap`).
    regs: [u8; MAP_SIZE],
    /// What survives a power cycle.
    eeprom: Eeprom,
    /// The address the I2C peripheral listens on (changes only after a valid 0x1F write).
    listening_on: u8,
    /// `registerNumber`: set by the first byte of every write, where every read starts.
    pointer: usize,
    /// Clock reading at power-up (microseconds); the firmware's `millis()` counts from here.
    powered_at_us: u64,
    plugged: bool,
    /// The physical switch: true while held down.
    switch_down: bool,
    /// Presses and releases not yet reached by the clock (click for N ms).
    pending_edges: VecDeque<Edge>,
    /// The ISR's `lastClickTime`, in `millis()`.
    last_edge_millis: u32,
    pressed: TimestampQueue,
    clicked: TimestampQueue,
    /// What the LED shows (the registers take effect after the EEPROM save).
    led_output: LedRegisters,
    /// When the LED output last changed, for the pulse phase.
    led_since_us: u64,
    main_loop: MainLoop,
    /// Closed address jumpers (bits 0-3): any closed one overrides the software address.
    jumpers: u8,
    /// The last physical switch edge, for the bounce window.
    last_physical_edge_us: Option<u64>,
    /// The INT pin: true while the firmware pulls it low.
    int_low: bool,
    /// The INT pin fell and the status has not been read since.
    int_unanswered: bool,
    faults: FaultState,
    stats: SimStats,
    /// Events for the observers, drained after every locked operation.
    pub outbox: Vec<SimEvent>,
    /// Something was scheduled for later since this was last taken (for the wake-up hooks).
    pub scheduled: bool,
    history: VecDeque<SimEvent>,
}

impl Device {
    /// Every time the device is given is in microseconds on the simulator clock.
    pub fn new(config: SimConfig, now_us: u64) -> Self {
        let mut device = Device {
            regs: [0; MAP_SIZE],
            eeprom: config.eeprom,
            listening_on: DEFAULT_ADDRESS,
            pointer: 0,
            powered_at_us: now_us,
            plugged: true,
            switch_down: false,
            pending_edges: VecDeque::new(),
            last_edge_millis: 0,
            pressed: TimestampQueue::default(),
            clicked: TimestampQueue::default(),
            led_output: LedRegisters::default(),
            led_since_us: now_us,
            main_loop: MainLoop {
                update_flag: false,
                old_address: DEFAULT_ADDRESS,
                next: None,
                last_step_us: now_us,
            },
            jumpers: config.jumpers & 0x0F,
            last_physical_edge_us: None,
            int_low: false,
            int_unanswered: false,
            faults: FaultState {
                rng: config.seed | 1,
                detail: config.seed.rotate_left(32) | 1,
                ..FaultState::default()
            },
            stats: SimStats::default(),
            outbox: Vec::new(),
            scheduled: false,
            history: VecDeque::new(),
            config,
        };
        device.power_up(now_us);
        device
    }

    /// `EEPROM.update` of one byte: the time it takes, in microseconds (none if unchanged).
    fn put(&mut self, at: usize, value: u8) -> u64 {
        if self.eeprom.update(at, value) {
            self.stats.eeprom_byte_writes += 1;
            BYTE_WRITE_US
        } else {
            0
        }
    }

    fn put_u16(&mut self, at: usize, value: u16) -> u64 {
        let [low, high] = value.to_le_bytes();
        self.put(at, low) + self.put(at + 1, high)
    }

    /// `startI2C`: the jumpers' address when any is closed or the address type says "hardware"
    /// (and from then on it does, until a host writes an address), otherwise the register's if
    /// legal, else 0x6F. Returns the address and the EEPROM time spent on the address type.
    fn start_i2c(&mut self) -> (u8, u64) {
        let address_type = self.eeprom.get(ADDRESS_TYPE);
        let mut spent = 0;
        if address_type == ERASED {
            spent += self.put(ADDRESS_TYPE, SOFTWARE_ADDRESS);
        }
        let register = self.regs[I2C_ADDRESS];
        let address = if self.jumpers != 0 || address_type == HARDWARE_ADDRESS {
            spent += self.put(ADDRESS_TYPE, HARDWARE_ADDRESS);
            DEFAULT_ADDRESS & !self.jumpers
        } else if is_legal(register) {
            register
        } else {
            DEFAULT_ADDRESS
        };
        (address, spent)
    }

    /// Boot: the register map's initializer, `readSystemSettings()` from EEPROM (a never-written
    /// setting gets its default, saved on the spot; the brightness is not checked, so a fresh
    /// part shows 255), `startI2C`, then the main loop, whose update flag starts set.
    fn power_up(&mut self, now_us: u64) {
        self.int_unanswered = false; // a new life: nothing was asked of the host yet
        self.regs = [0; MAP_SIZE];
        self.regs[ID] = DEVICE_ID;
        self.regs[FIRMWARE_MINOR] = self.config.firmware.1;
        self.regs[FIRMWARE_MAJOR] = self.config.firmware.0;
        self.regs[PRESSED_QUEUE_STATUS] = IS_EMPTY;
        self.regs[CLICKED_QUEUE_STATUS] = IS_EMPTY;

        let mut address = self.eeprom.get(ADDRESS);
        if !is_legal(address) {
            address = DEFAULT_ADDRESS;
            self.put(ADDRESS, address);
        }
        let mut interrupts = self.eeprom.get(eeprom::INTERRUPTS);
        if interrupts == ERASED {
            interrupts = 0x03;
            self.put(eeprom::INTERRUPTS, interrupts);
        }
        let mut granularity = self.eeprom.get(eeprom::GRANULARITY);
        if granularity == ERASED {
            granularity = 0;
            self.put(eeprom::GRANULARITY, granularity);
        }
        let mut cycle_time_ms = self.eeprom.get_u16(eeprom::CYCLE_TIME);
        if cycle_time_ms == 0xFFFF {
            cycle_time_ms = 0;
            self.put_u16(eeprom::CYCLE_TIME, cycle_time_ms);
        }
        let mut off_time_ms = self.eeprom.get_u16(eeprom::OFF_TIME);
        if off_time_ms == 0xFFFF {
            off_time_ms = 0;
            // The firmware saves this default to the cycle time's location.
            self.put_u16(eeprom::CYCLE_TIME, off_time_ms);
        }
        let mut debounce_ms = self.eeprom.get_u16(eeprom::DEBOUNCE);
        if debounce_ms == 0xFFFF {
            debounce_ms = 10;
            self.put_u16(eeprom::DEBOUNCE, debounce_ms);
        }
        let led = LedRegisters {
            brightness: self.eeprom.get(eeprom::BRIGHTNESS),
            granularity,
            cycle_time_ms,
            off_time_ms,
        };
        self.regs[INTERRUPT_CONFIG] = interrupts;
        self.set_u16(BUTTON_DEBOUNCE_TIME, debounce_ms);
        self.write_led_registers(led);
        self.regs[I2C_ADDRESS] = address;
        let (address, _) = self.start_i2c();
        self.regs[I2C_ADDRESS] = address;
        self.listening_on = address;
        self.pointer = 0;
        self.powered_at_us = now_us;
        self.led_output = led;
        self.led_since_us = now_us;
        self.last_edge_millis = 0;
        self.pressed = TimestampQueue::default();
        self.clicked = TimestampQueue::default();
        self.set_int(now_us, false); // an input (released) from reset until the loop drives it
        self.main_loop = MainLoop {
            update_flag: true,
            old_address: address,
            next: Some((Step::AddressCheck, now_us)),
            last_step_us: now_us,
        };
        self.run_main_loop(now_us);
    }

    fn millis(&self, at_us: u64) -> u32 {
        // The firmware's millis() is a wrapping u32.
        (at_us.wrapping_sub(self.powered_at_us) / 1000) as u32
    }

    fn get_u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.regs[at], self.regs[at + 1]])
    }

    fn set_u16(&mut self, at: usize, value: u16) {
        self.regs[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }

    fn set_u32(&mut self, at: usize, value: u32) {
        self.regs[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn write_led_registers(&mut self, led: LedRegisters) {
        self.regs[LED_BRIGHTNESS] = led.brightness;
        self.regs[LED_PULSE_GRANULARITY] = led.granularity;
        self.set_u16(LED_PULSE_CYCLE_TIME, led.cycle_time_ms);
        self.set_u16(LED_PULSE_OFF_TIME, led.off_time_ms);
    }

    pub fn led(&self) -> LedRegisters {
        LedRegisters {
            brightness: self.regs[LED_BRIGHTNESS],
            granularity: self.regs[LED_PULSE_GRANULARITY],
            cycle_time_ms: self.get_u16(LED_PULSE_CYCLE_TIME),
            off_time_ms: self.get_u16(LED_PULSE_OFF_TIME),
        }
    }

    /// The LED's output level at `now_us`: steady, or a triangle ramp 0 -> brightness -> 0 over
    /// the cycle time followed by the off time (the firmware steps it; this is its envelope).
    /// It follows the registers once the main loop has saved them to EEPROM.
    pub fn led_level(&self, now_us: u64) -> u8 {
        let led = self.led_output;
        if !self.plugged {
            return 0;
        }
        if led.cycle_time_ms == 0 {
            return led.brightness;
        }
        let cycle = u64::from(led.cycle_time_ms);
        let period = cycle + u64::from(led.off_time_ms);
        let phase = now_us.saturating_sub(self.led_since_us) / 1000 % period;
        if phase >= cycle {
            return 0;
        }
        let half = cycle as f64 / 2.0;
        let rising = 1.0 - ((phase as f64 - half).abs() / half);
        (f64::from(led.brightness) * rising)
            .round()
            .clamp(0.0, 255.0) as u8
    }

    pub fn settings(&self) -> Settings {
        self.eeprom.settings()
    }

    pub fn eeprom(&self) -> Eeprom {
        self.eeprom
    }

    /// Erases the EEPROM (as SparkFun's erase sketch does) and boots the firmware on it.
    pub fn erase_eeprom(&mut self, now_us: u64) {
        self.eeprom = Eeprom::FRESH;
        self.power_up(now_us);
    }

    pub fn stats(&self) -> SimStats {
        self.stats
    }

    pub fn is_plugged(&self) -> bool {
        self.plugged
    }

    pub fn is_held(&self) -> bool {
        self.switch_down
    }

    pub fn address(&self) -> u8 {
        self.listening_on
    }

    pub fn history(&self) -> Vec<SimEvent> {
        self.history.iter().copied().collect()
    }

    fn emit(&mut self, at_us: u64, kind: SimEventKind) {
        let event = SimEvent {
            at_ms: at_us.div_ceil(1000),
            at_us,
            kind,
        };
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(event);
        self.outbox.push(event);
    }

    /// Applies the scheduled switch edges and main-loop effects that the clock has reached.
    pub fn sync(&mut self, now_us: u64) {
        while let Some(&edge) = self.pending_edges.front() {
            if edge.at_us > now_us {
                break;
            }
            self.pending_edges.pop_front();
            match edge.bounce {
                false => self.switch_edge(edge.at_us, edge.down),
                true => self.pin_edge(edge.at_us, edge.down, true),
            }
        }
        self.run_main_loop(now_us);
    }

    /// Runs the main loop's steps that are due by `until_us`.
    fn run_main_loop(&mut self, until_us: u64) {
        while let Some((step, at_us)) = self.main_loop.next {
            if at_us > until_us {
                break;
            }
            self.main_loop.last_step_us = at_us;
            self.main_loop.next = self.main_loop_step(step, at_us);
        }
    }

    /// One step of the main loop at `at_us`; returns the next and when it runs (after the
    /// EEPROM writes this one made), or `None` when the loop goes to sleep.
    fn main_loop_step(&mut self, step: Step, at_us: u64) -> Option<(Step, u64)> {
        let (next, spent) = match step {
            Step::AddressCheck => {
                let address = self.regs[I2C_ADDRESS];
                let mut spent = 0;
                if address != self.main_loop.old_address {
                    self.main_loop.old_address = address;
                    spent = self.put(ADDRESS_TYPE, SOFTWARE_ADDRESS);
                }
                (Step::DriveInt, spent)
            }
            Step::DriveInt => {
                let status = self.regs[BUTTON_STATUS];
                let enables = self.regs[INTERRUPT_CONFIG];
                let low = (status & IS_PRESSED != 0 && enables & PRESSED_ENABLE != 0)
                    || (status & HAS_BEEN_CLICKED != 0 && enables & CLICKED_ENABLE != 0);
                self.set_int(at_us, low);
                (Step::FlagCheck, 0)
            }
            Step::FlagCheck => {
                if !self.main_loop.update_flag {
                    return None;
                }
                (Step::SaveAddress, 0)
            }
            Step::SaveAddress => {
                let requested = self.regs[I2C_ADDRESS];
                if is_legal(requested) && requested != self.eeprom.get(ADDRESS) {
                    (Step::StartI2c, self.put(ADDRESS, requested))
                } else {
                    // An illegal address stays in the register; the device keeps its own.
                    (Step::Save(0), 0)
                }
            }
            Step::StartI2c => {
                let (address, spent) = self.start_i2c();
                (Step::Rejoin(address), spent)
            }
            Step::Rejoin(address) => {
                self.regs[I2C_ADDRESS] = address;
                if address != self.listening_on {
                    self.listening_on = address;
                    self.emit(at_us, SimEventKind::AddressChanged(address));
                }
                (Step::Save(0), 0)
            }
            Step::Save(index) => {
                let (register, location) = SAVED[index];
                let spent = self.put(location, self.regs[register]);
                let next = if index + 1 < SAVED.len() {
                    Step::Save(index + 1)
                } else {
                    Step::ShowLed
                };
                (next, spent)
            }
            Step::ShowLed => {
                let led = self.led();
                if led != self.led_output {
                    self.led_output = led;
                    self.led_since_us = at_us;
                    self.emit(at_us, SimEventKind::Led(led));
                }
                self.main_loop.update_flag = false;
                (Step::AddressCheck, 0) // the next turn of loop()
            }
        };
        Some((next, at_us + spent))
    }

    /// Schedules the switch to go down (`true`) or up at `at_us`, after any edge already
    /// scheduled.
    pub fn schedule_edge(&mut self, at_us: u64, down: bool) {
        let at_us = self
            .pending_edges
            .back()
            .map_or(at_us, |last| at_us.max(last.at_us));
        self.pending_edges.push_back(Edge {
            at_us,
            down,
            bounce: false,
        });
        self.scheduled = true;
    }

    /// A physical edge of the switch: the pin changes, and the ISR runs. Sometimes the contact
    /// bounces once more just after the debounce lockout: the ISR takes that for an edge (a
    /// flag and a queue entry) though the switch settles where it was.
    fn switch_edge(&mut self, at_us: u64, down: bool) {
        if self.switch_down == down {
            return; // no change on the pin
        }
        self.pin_edge(at_us, down, false);
        if self.faults.happens(self.faults.late_bounce_rate) {
            let debounce = u64::from(self.get_u16(BUTTON_DEBOUNCE_TIME));
            let spike = at_us + (debounce + 1) * 1000;
            // The spike and its return 1 ms later, within the new lockout: one more edge.
            for (at_us, down) in [(spike, !down), (spike + 1000, down)] {
                let edge = Edge {
                    at_us,
                    down,
                    bounce: true,
                };
                let at = self.pending_edges.partition_point(|e| e.at_us <= at_us);
                self.pending_edges.insert(at, edge);
            }
            self.scheduled = true;
        }
    }

    /// The pin-change ISR (`buttonInterrupt`).
    /// A bounce changes the pin as an edge does, but is no press or release to tell.
    fn pin_edge(&mut self, at_us: u64, down: bool, bounce: bool) {
        if self.switch_down == down {
            return; // no change on the pin
        }
        self.switch_down = down;
        self.last_physical_edge_us = Some(at_us);
        if !bounce {
            let kind = if down {
                SimEventKind::Pressed
            } else {
                SimEventKind::Released
            };
            self.emit(at_us, kind);
        }
        if !self.plugged {
            return; // unpowered: the ISR does not run
        }
        let millis = self.millis(at_us);
        let debounce = u32::from(self.get_u16(BUTTON_DEBOUNCE_TIME));
        if millis.wrapping_sub(self.last_edge_millis) < debounce {
            return; // within the lockout: the edge is dropped
        }
        self.last_edge_millis = millis;
        let stamp = millis.wrapping_sub(debounce);
        // isPressed from the pin, as every read recomputes it too (refresh); the INT line
        // follows it between reads.
        self.put_is_pressed(down);
        self.regs[BUTTON_STATUS] |= EVENT_AVAILABLE;
        self.pressed.push(stamp);
        if !down {
            self.regs[BUTTON_STATUS] |= HAS_BEEN_CLICKED;
            self.clicked.push(stamp);
        }
        self.update_queue_bits();
        self.wake(at_us);
    }

    fn put_is_pressed(&mut self, pressed: bool) {
        if pressed {
            self.regs[BUTTON_STATUS] |= IS_PRESSED;
        } else {
            self.regs[BUTTON_STATUS] &= !IS_PRESSED;
        }
    }

    fn update_queue_bits(&mut self) {
        for (at, queue) in [
            (PRESSED_QUEUE_STATUS, &self.pressed),
            (CLICKED_QUEUE_STATUS, &self.clicked),
        ] {
            let mut bits = self.regs[at] & !(IS_EMPTY | IS_FULL);
            if queue.is_empty() {
                bits |= IS_EMPTY;
            }
            if queue.is_full() {
                bits |= IS_FULL;
            }
            self.regs[at] = bits;
        }
    }

    pub fn unplug(&mut self, now_us: u64) {
        if self.plugged {
            self.plugged = false;
            self.main_loop.next = None; // unpowered: a save pass under way stops
            self.emit(now_us, SimEventKind::Unplugged);
            self.set_int(now_us, false); // an unpowered pin pulls nothing down
        }
    }

    pub fn replug(&mut self, now_us: u64) {
        if !self.plugged {
            self.plugged = true;
            self.power_up(now_us);
            self.emit(now_us, SimEventKind::Replugged);
        }
    }

    pub fn power_cycle(&mut self, now_us: u64) {
        self.power_up(now_us);
    }

    /// Decides whether a transaction fails by injection; `None` lets it through.
    pub fn injected_fault(&mut self) -> Option<Fault> {
        if self.faults.fail_next > 0 {
            self.faults.fail_next -= 1;
            return self.faults.fail_next_kind;
        }
        let kind = self.faults.rate_kind?;
        (self.faults.draw() < self.faults.rate).then_some(kind)
    }

    /// Whether a read of `len` bytes comes back bit-shifted (the Raspberry Pi's
    /// clock-stretching bug), and from which byte on: any of them, so a corrupted burst may
    /// keep a valid ID.
    pub fn corrupts_this_read(&mut self, len: usize) -> Option<usize> {
        if !self.faults.happens(self.faults.corrupt_rate) {
            return None;
        }
        self.stats.corrupted_reads += 1;
        Some(self.faults.position(len))
    }

    pub fn set_jumpers(&mut self, jumpers: u8) {
        self.jumpers = jumpers & 0x0F;
    }

    /// What is injected into transactions (the button's setters change it).
    pub fn faults(&mut self) -> &mut FaultState {
        &mut self.faults
    }

    pub fn count_transaction(&mut self, failed: bool) {
        self.stats.transactions += 1;
        if failed {
            self.stats.failed_transactions += 1;
        }
    }

    /// Whether the device acknowledges its address right now.
    pub fn acknowledges(&self, address: u8) -> bool {
        self.plugged && address == self.listening_on
    }

    /// What `requestEvent` recomputes before every read: `isPressed` from the raw pin (which
    /// chatters for the bounce time after each physical edge) and the queue ages.
    fn refresh(&mut self, now_us: u64) {
        let millis = self.millis(now_us);
        let bouncing = self
            .last_physical_edge_us
            .is_some_and(|edge| now_us.saturating_sub(edge) < self.faults.bounce_ms * 1000);
        let pin = if bouncing && self.faults.draw() < 0.5 {
            !self.switch_down
        } else {
            self.switch_down
        };
        self.put_is_pressed(pin);
        let ages = [
            (PRESSED_QUEUE_FRONT, self.pressed.front()),
            (PRESSED_QUEUE_BACK, self.pressed.back()),
            (CLICKED_QUEUE_FRONT, self.clicked.front()),
            (CLICKED_QUEUE_BACK, self.clicked.back()),
        ];
        for (at, stamp) in ages {
            self.set_u32(at, millis.wrapping_sub(stamp));
        }
    }

    /// `requestEvent`: serve a read from the pointer. From a pointer inside the map the firmware
    /// sends the rest of the map, then the master reads 0xFF (released SDA); from a pointer
    /// above the map it computes a wrapped length and sends whatever RAM follows the map (here:
    /// the protection map that the firmware declares next, then zeros), never 0xFF.
    pub fn read(&mut self, now_us: u64, buffer: &mut [u8]) {
        self.refresh(now_us);
        let protection = self.protection();
        for (i, byte) in buffer.iter_mut().enumerate() {
            let at = self.pointer + i;
            *byte = if i >= TX_LIMIT {
                0xFF
            } else if self.pointer > MAP_SIZE {
                protection.get(at - MAP_SIZE).copied().unwrap_or(0)
            } else if at < MAP_SIZE {
                self.regs[at]
            } else {
                0xFF // released SDA, as the master sees past the end
            };
        }
        self.stats.bytes_read += buffer.len() as u64;
        let status_read =
            (self.pointer..self.pointer + buffer.len().min(TX_LIMIT)).contains(&BUTTON_STATUS);
        if status_read && std::mem::take(&mut self.int_unanswered) {
            self.emit(now_us, SimEventKind::IntAnswered);
        }
        // The I2C interrupt wakes the loop too: a read while the switch is held sets isPressed
        // again, so the INT line falls again at the next turn.
        self.wake(now_us);
    }

    fn protection(&self) -> &'static [u8; MAP_SIZE] {
        if self.config.firmware >= (1, 3) {
            &PROTECTION_V1_3
        } else {
            &PROTECTION_V1_2
        }
    }

    /// `receiveEvent` then one pass of the main loop: store through the protection map, pop on
    /// request, then move the address and save the settings as the firmware does.
    /// A write as it reaches the firmware: lost or misapplied when the bus corrupts it (the
    /// Raspberry Pi's clock-stretching bug hits writes too: acknowledged, and not applied, or
    /// applied from a byte on one bit late), then `receiveEvent`.
    pub fn receive(&mut self, now_us: u64, bytes: &mut [u8]) {
        if bytes.len() > 1 && self.faults.happens(self.faults.write_corrupt_rate) {
            self.stats.corrupted_writes += 1;
            if self.faults.either() {
                return; // acknowledged, never applied
            }
            // The data from some byte on, one bit late (the register byte arrived right).
            let from = 1 + self.faults.position(bytes.len() - 1);
            crate::fault::shift_right_one_bit(bytes, from);
        }
        self.write(now_us, bytes);
    }

    pub fn write(&mut self, now_us: u64, bytes: &[u8]) {
        let Some((&register, data)) = bytes.split_first() else {
            return; // an address-only probe (i2cdetect's quick write)
        };
        self.pointer = usize::from(register);
        if !data.is_empty() && self.faults.lose_writes > 0 {
            self.faults.lose_writes -= 1;
            return; // acknowledged, never applied
        }
        let protection = self.protection();
        let mut touched_led = false;
        for (x, &value) in data.iter().enumerate() {
            let at = self.pointer + x;
            if at >= MAP_SIZE {
                break; // the firmware drops bytes past the map
            }
            let mask = protection[at];
            self.regs[at] = (self.regs[at] & !mask) | (value & mask);
            self.stats.register_writes[at] += 1;
            touched_led |= (LED_BRIGHTNESS..I2C_ADDRESS).contains(&at);
        }
        self.stats.bytes_written += data.len() as u64;
        if touched_led {
            self.stats.led_writes += 1;
            self.emit(now_us, SimEventKind::LedWritten);
        }
        self.handle_pop_requests();
        self.wake_main_loop(now_us);
    }

    /// Pops on request. The queue status bits are recomputed only when a pop happens, as the
    /// firmware does: on firmware 1.2 a pop write clears `isFull` (writable there) and pops
    /// nothing, so `isFull` reads 0 until the next push.
    fn handle_pop_requests(&mut self) {
        let mut popped = false;
        if self.regs[PRESSED_QUEUE_STATUS] & POP_REQUEST != 0 {
            self.pressed.pop();
            self.regs[PRESSED_QUEUE_STATUS] &= !POP_REQUEST;
            popped = true;
        }
        if self.regs[CLICKED_QUEUE_STATUS] & POP_REQUEST != 0 {
            self.clicked.pop();
            self.regs[CLICKED_QUEUE_STATUS] &= !POP_REQUEST;
            popped = true;
        }
        if popped {
            self.update_queue_bits();
        }
    }

    /// The end of `receiveEvent`: `updateFlag = true`, for every write (a pointer-only one, as
    /// before every read, too), which wakes the main loop for a save pass. A write that lands
    /// while a pass is under way is not saved where the pass has been, and the flag is cleared
    /// when the pass ends: until the next write, the EEPROM keeps the older value there
    /// (the LED and the address show what the pass met).
    fn wake_main_loop(&mut self, now_us: u64) {
        self.main_loop.update_flag = true;
        self.wake(now_us);
    }

    /// An interrupt wakes the sleeping loop for a turn (a loop at work goes on with its pass).
    fn wake(&mut self, now_us: u64) {
        if self.main_loop.next.is_none() {
            self.main_loop.next = Some((Step::AddressCheck, now_us));
        }
        self.run_main_loop(now_us);
        if self.main_loop.next.is_some() {
            self.scheduled = true;
        }
    }

    /// Sets the INT pin, telling the observers when it changes.
    fn set_int(&mut self, at_us: u64, low: bool) {
        if low != self.int_low {
            self.int_low = low;
            self.int_unanswered |= low;
            self.emit(at_us, SimEventKind::Int { low });
        }
    }

    /// Whether the INT pin is low now.
    pub fn int_low(&self) -> bool {
        self.int_low
    }

    /// When the next scheduled edge or main-loop step is due, if any.
    pub fn next_change_at_us(&self) -> Option<u64> {
        let edge = self.pending_edges.front().map(|edge| edge.at_us);
        let step = self.main_loop.next.map(|(_, at_us)| at_us);
        edge.into_iter().chain(step).min()
    }

    /// When the main loop will have done everything written so far (it runs ahead on a copy).
    pub fn settled_at_us(&self) -> u64 {
        let mut ahead = self.clone();
        ahead.run_main_loop(u64::MAX);
        ahead.main_loop.last_step_us
    }

    /// The register map as a read would see it now (for inspection; not a bus transaction).
    pub fn registers(&mut self, now_us: u64) -> [u8; MAP_SIZE] {
        self.refresh(now_us);
        self.regs
    }
}
