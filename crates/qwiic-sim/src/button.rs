//! [`SimButton`]: the handle tests and servers hold. Clones share one device; every call runs
//! under its lock with the clock's pending edges applied first, and observers hear of what
//! happened after the lock is released.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use embedded_hal::i2c::{self, I2c, Operation};

use crate::clock::{Clock, SystemClock};
use crate::config::{LedRegisters, Settings, SimConfig};
use crate::device::Device;
use crate::eeprom::Eeprom;
use crate::fault::{Fault, InvalidRate, SimError};
use crate::observe::{SimEvent, SimStats};
use crate::registers::MAP_SIZE;
use crate::transaction::apply;

type Observer = Arc<dyn Fn(&SimEvent) + Send + Sync>;
type Waker = Arc<dyn Fn() + Send + Sync>;

struct Shared {
    device: Mutex<Device>,
    /// Transactions currently inside their injected delay, so tests can act while one is
    /// in flight.
    delayed: std::sync::atomic::AtomicUsize,
    clock: Arc<dyn Clock>,
    observers: Mutex<Vec<Observer>>,
    wakers: Mutex<Vec<Waker>>,
}

/// A handle to one simulated Qwiic Button. Clones share the device.
#[derive(Clone)]
pub struct SimButton {
    shared: Arc<Shared>,
}

impl fmt::Debug for SimButton {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimButton")
            .field("clock", &self.shared.clock)
            .finish_non_exhaustive()
    }
}

impl Default for SimButton {
    fn default() -> Self {
        Self::new()
    }
}

impl SimButton {
    /// A factory-fresh button at 0x6F, firmware 1.3, on the host's clock.
    pub fn new() -> Self {
        Self::with_config(SimConfig::default(), SystemClock::new())
    }

    /// A factory-fresh button on the given clock.
    pub fn with_clock(clock: impl Clock + 'static) -> Self {
        Self::with_config(SimConfig::default(), clock)
    }

    /// A button with the given firmware, EEPROM content and clock.
    pub fn with_config(config: SimConfig, clock: impl Clock + 'static) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let device = Device::new(config, clock.now_us());
        SimButton {
            shared: Arc::new(Shared {
                device: Mutex::new(device),
                delayed: std::sync::atomic::AtomicUsize::new(0),
                clock,
                observers: Mutex::new(Vec::new()),
                wakers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The simulator clock's current reading in milliseconds, the timebase of every
    /// [`SimEvent`] (`at_ms`).
    pub fn now_ms(&self) -> u64 {
        self.shared.clock.now_ms()
    }

    /// The same clock in microseconds (`at_us`).
    pub fn now_us(&self) -> u64 {
        self.shared.clock.now_us()
    }

    /// Runs `f` on the device with pending edges applied, then tells observers what happened.
    /// The device's times are microseconds.
    fn with_device<T>(&self, f: impl FnOnce(&mut Device, u64) -> T) -> T {
        let (result, events, scheduled) = {
            let mut device = self.lock();
            let now = self.now_us();
            device.sync(now);
            let result = f(&mut device, now);
            let scheduled = std::mem::take(&mut device.scheduled);
            (result, std::mem::take(&mut device.outbox), scheduled)
        };
        if scheduled {
            let wakers = self
                .shared
                .wakers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            for waker in &wakers {
                waker();
            }
        }
        if !events.is_empty() {
            let observers = self
                .shared
                .observers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            for event in &events {
                for observer in &observers {
                    observer(event);
                }
            }
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, Device> {
        // A panic while holding the lock cannot leave the register file half-written in a way
        // the firmware could not, so carry on with the data.
        self.shared
            .device
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Presses the button now (and holds it).
    pub fn press(&self) {
        self.with_device(|device, now| {
            device.schedule_edge(now, true);
            device.sync(now);
        });
    }

    /// Releases the button now.
    pub fn release(&self) {
        self.with_device(|device, now| {
            device.schedule_edge(now, false);
            device.sync(now);
        });
    }

    /// Presses now and releases `hold` later by the simulator's clock. The release is applied
    /// when the clock gets there, whoever looks next.
    pub fn click(&self, hold: Duration) {
        let hold_us = u64::try_from(hold.as_micros()).unwrap_or(u64::MAX);
        self.with_device(|device, now| {
            device.schedule_edge(now, true);
            device.schedule_edge(now.saturating_add(hold_us), false);
            device.sync(now);
        });
    }

    /// True while the switch is held down.
    pub fn is_held(&self) -> bool {
        self.with_device(|device, _| device.is_held())
    }

    /// Disconnects the device: every transaction is NACKed until [`replug`](Self::replug).
    pub fn unplug(&self) {
        self.with_device(|device, now| device.unplug(now));
    }

    /// Reconnects the device, which powers up from its EEPROM (status and queues are lost).
    pub fn replug(&self) {
        self.with_device(|device, now| device.replug(now));
    }

    /// True while the INT pin is pulled low: the firmware has an event for the host to read
    /// (module docs of the firmware model: `isPressed` with the pressed interrupt enabled, or
    /// `hasBeenClicked` with the clicked one). Clearing the status releases it.
    pub fn int_low(&self) -> bool {
        self.with_device(|device, _| device.int_low())
    }

    /// True unless unplugged.
    pub fn is_plugged(&self) -> bool {
        self.with_device(|device, _| device.is_plugged())
    }

    /// Restarts the firmware: registers reload from EEPROM, status and queues are cleared.
    pub fn power_cycle(&self) {
        self.with_device(|device, now| device.power_cycle(now));
    }

    /// Makes the next `count` transactions fail with `fault`.
    pub fn fail_next(&self, count: u32, fault: Fault) {
        self.with_device(|device, _| device.faults().fail_next(count, fault));
    }

    /// Makes each transaction fail with `fault` with probability `rate` (0.0-1.0).
    pub fn set_fault_rate(&self, rate: f64, fault: Fault) -> Result<(), InvalidRate> {
        check_rate(rate)?;
        self.with_device(|device, _| device.faults().set_rate(rate, fault));
        Ok(())
    }

    /// Makes the next `count` writes with data be acknowledged but lost: the registers keep
    /// their values, as after a transfer the device did not take. A writer that reads back what
    /// it wrote sees it.
    pub fn lose_next_writes(&self, count: u32) {
        self.with_device(|device, _| device.faults().lose_writes = count);
    }

    /// Makes each read come back, with probability `rate` (0.0-1.0), shifted right by one bit
    /// from one of its bytes on, with no error: what a Raspberry Pi's I2C controller does when
    /// it mishandles this device's clock stretching (from the first byte, the ID 0x5D reads
    /// 0x2E; from a later one, the ID reads right and a later byte is wrong).
    pub fn set_corrupt_rate(&self, rate: f64) -> Result<(), InvalidRate> {
        check_rate(rate)?;
        self.with_device(|device, _| device.faults().corrupt_rate = rate);
        Ok(())
    }

    /// Makes each write with data, with probability `rate` (0.0-1.0), acknowledged and then lost
    /// (half of them) or applied one bit late from one of its data bytes on: the same bug, on
    /// writes (a status clear that does not clear).
    pub fn set_write_corrupt_rate(&self, rate: f64) -> Result<(), InvalidRate> {
        check_rate(rate)?;
        self.with_device(|device, _| device.faults().write_corrupt_rate = rate);
        Ok(())
    }

    /// Makes the switch, after a share `rate` (0.0-1.0) of its physical edges, bounce once more
    /// just after the debounce lockout: the firmware takes that for an edge (flags set, an entry
    /// on the pressed queue) though the switch settles where it was.
    pub fn set_late_bounce_rate(&self, rate: f64) -> Result<(), InvalidRate> {
        check_rate(rate)?;
        self.with_device(|device, _| device.faults().late_bounce_rate = rate);
        Ok(())
    }

    /// Makes the switch chatter for `bounce` after each physical edge: reads of `isPressed` (the
    /// raw pin) then flicker. The interrupt's debounce lockout keeps the events clean.
    pub fn set_bounce(&self, bounce: Duration) {
        let bounce_ms = u64::try_from(bounce.as_millis()).unwrap_or(u64::MAX);
        self.with_device(|device, _| device.faults().bounce_ms = bounce_ms);
    }

    /// Closes address jumpers (bits 0-3; 0 opens them all). The firmware reads them when it
    /// (re)starts I2C: at power-up and after an address write.
    pub fn set_jumpers(&self, jumpers: u8) {
        self.with_device(|device, _| device.set_jumpers(jumpers));
    }

    /// When the firmware's main loop will have saved and applied every write so far, on the
    /// simulator's clock (the LED and a new address take effect then).
    pub fn settled_at_ms(&self) -> u64 {
        self.with_device(|device, _| device.settled_at_us().div_ceil(1000))
    }

    /// Adds `delay` to every transaction (a slow, clock-stretching device).
    pub fn set_delay(&self, delay: Duration) {
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.with_device(|device, _| device.faults().delay_ms = delay_ms);
    }

    /// The LED registers (what a read returns; the light follows after the EEPROM save, see
    /// [`led_level`](Self::led_level)).
    pub fn led(&self) -> LedRegisters {
        self.with_device(|device, _| device.led())
    }

    /// The LED's light output (0-255) right now, following the pulse.
    pub fn led_level(&self) -> u8 {
        self.with_device(|device, now| device.led_level(now))
    }

    /// The address the device answers on.
    pub fn address(&self) -> u8 {
        self.with_device(|device, _| device.address())
    }

    /// The register map as a read would return it now.
    pub fn registers(&self) -> [u8; MAP_SIZE] {
        self.with_device(|device, now| device.registers(now))
    }

    /// The settings the EEPROM holds (0xFF where a never-written part has nothing).
    pub fn settings(&self) -> Settings {
        self.with_device(|device, _| device.settings())
    }

    /// The EEPROM, byte for byte (with the address-type flag).
    pub fn eeprom(&self) -> Eeprom {
        self.with_device(|device, _| device.eeprom())
    }

    /// Erases the EEPROM, as SparkFun's erase sketch does, and restarts the firmware on it:
    /// a button as it leaves the factory (LED at brightness 255, pulse granularity 0).
    pub fn erase_eeprom(&self) {
        self.with_device(|device, now| device.erase_eeprom(now));
    }

    /// Transaction and write counters.
    pub fn stats(&self) -> SimStats {
        self.with_device(|device, _| device.stats())
    }

    /// The last 256 events, oldest first (the INT line alone changes about four times a click).
    pub fn recent_events(&self) -> Vec<SimEvent> {
        self.with_device(|device, _| device.history())
    }

    /// When the next scheduled change is due on the simulator's clock: a click's release, or
    /// an LED setting or address the firmware applies after its EEPROM save. Changes happen
    /// when something looks at the device after they are due; a live simulator calls
    /// [`catch_up`](Self::catch_up) then, so that observers hear of them on time.
    pub fn next_change_at_ms(&self) -> Option<u64> {
        self.with_device(|device, _| device.next_change_at_us().map(|at_us| at_us.div_ceil(1000)))
    }

    /// Applies every scheduled change the clock has reached (any look at the device does).
    pub fn catch_up(&self) {
        self.with_device(|_, _| ());
    }

    /// Calls `waker`, outside the device lock, whenever a change is scheduled for later (see
    /// [`next_change_at_ms`](Self::next_change_at_ms)).
    pub fn on_schedule(&self, waker: impl Fn() + Send + Sync + 'static) {
        self.shared
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(waker));
    }

    /// Calls `observer` for every future event, outside the device lock.
    pub fn subscribe(&self, observer: impl Fn(&SimEvent) + Send + Sync + 'static) {
        self.shared
            .observers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(observer));
    }
}

impl i2c::ErrorType for SimButton {
    type Error = SimError;
}

impl I2c for SimButton {
    /// Sleeps for the injected delay, then applies the transaction atomically.
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let delay = self.transaction_delay();
        if !delay.is_zero() {
            use std::sync::atomic::Ordering;
            self.shared.delayed.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(delay);
            self.shared.delayed.fetch_sub(1, Ordering::SeqCst);
        }
        self.apply_transaction(address, operations)
    }
}

impl SimButton {
    /// How many transactions are inside their injected delay right now.
    pub fn delayed_transactions(&self) -> usize {
        self.shared
            .delayed
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The delay injected by [`set_delay`](Self::set_delay); an async server sleeps it itself
    /// before [`apply_transaction`](Self::apply_transaction) instead of blocking a thread.
    pub fn transaction_delay(&self) -> Duration {
        Duration::from_millis(self.with_device(|device, _| device.faults().delay_ms))
    }

    /// Applies one I2C transaction under the device lock, without the injected delay.
    /// Adjacent operations of one kind are one bus phase (no repeated START between them),
    /// as embedded-hal specifies.
    pub fn apply_transaction(
        &self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), SimError> {
        self.with_device(|device, now| {
            if !device.acknowledges(address) {
                if address == device.address() {
                    device.count_transaction(true);
                }
                return Err(SimError::NoAcknowledge { address });
            }
            if let Some(fault) = device.injected_fault() {
                device.count_transaction(true);
                return Err(SimError::Injected(fault));
            }
            device.count_transaction(false);
            apply(device, now, operations)
        })
    }
}

/// A rate is a fraction from 0.0 to 1.0.
fn check_rate(rate: f64) -> Result<(), InvalidRate> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(InvalidRate(rate))
    }
}
