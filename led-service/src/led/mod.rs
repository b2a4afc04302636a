//! The LED's one owner: a thread that holds the button's [`DeviceLink`], serializes every
//! transaction, keeps blocking I/O off the async runtime, and never rewrites a setting the
//! device already holds (each changed byte costs the firmware an EEPROM write).
//!
//! Handlers talk to it through [`LedDevice`], a cheap handle that sends commands over a bounded
//! channel and waits for the answer with a deadline. The thread ends when the last handle is
//! dropped, after the server has switched the LED off on its way out.
//!
//! Writes are coalesced: a change comes at once when there was no write in the last
//! [`COALESCE_WINDOW`]; changes within the window are held and merged (the last one whose
//! caller still waits wins) into one write when it closes, whatever else is queued, and every
//! request held gets the result. A change whose caller has gone (answered 504, or hung up) is
//! never written. On top, a wear budget ([`WearBudget`](crate::limits::WearBudget): a burst,
//! then a steady rate) refuses changes beyond it: a flood of alternating requests, from the
//! LAN or a browser, costs at most one write a second on average.
//!
//! A request for the setting the LED already holds, and a read of the LED, are answered by the
//! handle itself, without the thread, when nothing else is on its way to the device and the
//! device answered within [`FRESH`](qwiic_bus::FRESH): the LED registers have one writer,
//! this service, so what it last read or wrote is what they hold. That is the common case (the
//! button service and `curl` repeat states, pages read), and it keeps reads from queueing
//! before changes.
//!
//! The handle is in `handle.rs`, the thread in `owner.rs`; both share the types below.

mod handle;
mod owner;

use std::time::{Duration, SystemTime};

use qwiic_bus::DeviceError;
use qwiic_button::{FirmwareVersion, LedConfig};
use tokio::sync::oneshot;

pub use handle::LedDevice;

/// How many commands may wait for the bus before callers are told it is busy: more than the
/// API admits at once ([`Limits::requests`](crate::Limits::requests), 512), so that an admitted request waits its turn
/// (changes within a window are merged, see [`COALESCE_WINDOW`]) instead of being refused,
/// and the health check and MQTT still find room. About 40 kB at most.
const QUEUE_DEPTH: usize = 576;
/// Readings of the LED registers tried before giving up on a bus that corrupts them.
const READ_ATTEMPTS: u32 = 3;
/// At most one LED write per window: later changes within it are merged.
pub const COALESCE_WINDOW: Duration = Duration::from_millis(100);

/// The LED as the device holds it, and who last changed it through this service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedState {
    /// The LED registers.
    pub led: LedConfig,
    /// The last change made through this service, if any.
    pub change: Option<Change>,
    /// EEPROM bytes this service's writes have changed since it started (each costs one of
    /// the ATtiny84's ~100,000 write cycles of that byte).
    pub eeprom_byte_writes: u64,
}

/// How many of the six EEPROM bytes behind the LED registers differ between two settings:
/// what a write of `to` over `from` costs the firmware's EEPROM.
pub fn eeprom_bytes_changed(from: LedConfig, to: LedConfig) -> u64 {
    let bytes = |led: LedConfig| {
        let [c0, c1] = led.cycle_time_ms.to_le_bytes();
        let [o0, o1] = led.off_time_ms.to_le_bytes();
        [led.brightness, led.granularity, c0, c1, o0, o1]
    };
    bytes(from)
        .iter()
        .zip(bytes(to))
        .map(|(a, b)| u64::from(*a != b))
        .sum()
}

/// A change made through this service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// When.
    pub at: SystemTime,
    /// Who: the client's address and User-Agent, or `shutdown`.
    pub by: String,
}

/// Why the device could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceFault {
    /// The button did not answer, or answered wrongly.
    #[error("{0}")]
    Unavailable(String),
    /// Too many requests are waiting for the bus.
    #[error("the I2C bus is busy: {QUEUE_DEPTH} requests are already waiting; retry shortly")]
    Busy,
    /// The bus did not finish in time.
    #[error("the button did not answer within {} ms; check the bus and the cable", .0.as_millis())]
    Timeout(Duration),
    /// The owner thread has stopped (the service is shutting down).
    #[error("the service is shutting down")]
    Stopped,
    /// Every caller of the change had gone before it was written: it was not written.
    #[error("the request was given up before the LED was written; nothing changed")]
    Abandoned,
    /// The EEPROM wear budget is spent: the LED changes again once it refills.
    #[error(
        "the LED changed too often: each change wears the button's EEPROM, so changes beyond a burst are written at about one a second; retry in {} s",
        .0.as_secs().max(1)
    )]
    WearLimit(Duration),
    /// The LED registers did not read back what was written, twice.
    #[error(
        "the LED registers read back {found:?} after writing {wanted:?} twice: the bus corrupts transfers (on a Raspberry Pi, its clock-stretching bug: see the README)"
    )]
    NotVerified {
        /// What was written.
        wanted: LedConfig,
        /// What was read back the second time.
        found: LedConfig,
    },
}

impl From<DeviceError> for DeviceFault {
    fn from(error: DeviceError) -> Self {
        DeviceFault::Unavailable(error.to_string())
    }
}

/// What a handle asks the owner thread.
pub(crate) enum Command {
    Set {
        led: LedConfig,
        by: String,
        /// Written whatever the wear budget says (the switch-off at shutdown).
        essential: bool,
        reply: oneshot::Sender<Result<LedState, DeviceFault>>,
    },
    Get {
        reply: oneshot::Sender<Result<LedState, DeviceFault>>,
    },
    Health {
        reply: oneshot::Sender<Result<FirmwareVersion, DeviceFault>>,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use qwiic_bus::{Bus, DeviceLink};
    use qwiic_button::Address;
    use qwiic_sim::SimButton;

    use super::*;
    use crate::metrics::Metrics;

    fn device(sim: &SimButton, metrics: &Metrics) -> LedDevice {
        let link = DeviceLink::new(
            Bus::Sim(sim.clone()),
            "sim".parse().unwrap(),
            Address::default(),
            metrics.bus.clone(),
            "retrying on the next request",
        );
        LedDevice::spawn(
            link,
            metrics,
            Duration::from_secs(2),
            crate::Limits::default().wear,
        )
        .unwrap()
    }

    const ON: LedConfig = LedConfig::steady(255);
    const OFF: LedConfig = LedConfig::steady(0);

    #[tokio::test]
    async fn after_a_write_whose_read_back_failed_a_repeat_is_not_answered_from_memory() {
        let (sim, metrics) = (SimButton::new(), Metrics::default());
        let led = device(&sim, &metrics);
        led.set(ON, "first").await.unwrap();
        // The write lands, every read-back is corrupted: the outcome is unknown to the service.
        sim.set_corrupt_rate(1.0).unwrap();
        assert!(led.set(OFF, "lost").await.is_err());
        assert_eq!(sim.led().brightness, 0, "the write itself landed");
        sim.set_corrupt_rate(0.0).unwrap();
        // ON is what the service last published; the LED must be written again, not skipped.
        led.set(ON, "again").await.unwrap();
        assert_eq!(sim.led().brightness, 255, "ON written again");
    }

    #[test]
    fn the_queue_holds_every_request_the_api_admits_and_more() {
        let admitted = crate::Limits::default().requests;
        assert!(QUEUE_DEPTH >= admitted + 64, "{QUEUE_DEPTH} for {admitted}");
    }

    #[tokio::test]
    async fn a_setting_the_led_already_holds_is_answered_without_the_bus() {
        let (sim, metrics) = (SimButton::new(), Metrics::default());
        let led = device(&sim, &metrics);
        led.set(ON, "first").await.unwrap();
        let before = sim.stats().transactions;
        for _ in 0..100 {
            let state = led.set(ON, "again").await.unwrap();
            assert_eq!(state.led, ON);
            assert_eq!(state.change.as_ref().unwrap().by, "first");
        }
        assert_eq!(
            sim.stats().transactions,
            before,
            "no transaction for a repeat"
        );
        assert_eq!(metrics.led_writes_skipped.get(), 100);
    }

    #[tokio::test]
    async fn a_repeat_behind_a_held_change_waits_for_it_and_the_last_request_wins() {
        let (sim, metrics) = (SimButton::new(), Metrics::default());
        let led = device(&sim, &metrics);
        led.set(ON, "first").await.unwrap();
        // Within the window after that write, OFF is held for its end; ON asked after it
        // must not be answered from the state published before OFF (still ON), or OFF would
        // land last.
        let mut off = std::pin::pin!(led.set(OFF, "second"));
        assert!(
            futures_util::poll!(off.as_mut()).is_pending(),
            "OFF is held until the window closes"
        );
        let on = led.set(ON, "third").await.unwrap();
        assert_eq!(on.led, ON);
        assert_eq!(off.await.unwrap().led, ON, "OFF was superseded");
        assert_eq!(sim.led().brightness, 255);
        assert_eq!(metrics.led_writes_coalesced.get(), 1);
    }

    #[tokio::test]
    async fn after_a_failed_transaction_a_repeat_goes_to_the_bus() {
        let (sim, metrics) = (SimButton::new(), Metrics::default());
        let led = device(&sim, &metrics);
        led.set(ON, "first").await.unwrap();
        sim.set_fault_rate(1.0, qwiic_sim::Fault::Nack).unwrap();
        assert!(led.set(OFF, "fails").await.is_err());
        // The device failed since it last answered: the repeat is not taken on trust.
        let error = led.set(ON, "again").await.unwrap_err();
        assert!(matches!(error, DeviceFault::Unavailable(_)), "{error:?}");
        sim.set_fault_rate(0.0, qwiic_sim::Fault::Nack).unwrap();
        let before = sim.stats().transactions;
        // The button is looked for again a probe interval after the failure.
        let until = std::time::Instant::now() + qwiic_bus::PROBE_INTERVAL * 3;
        let state = loop {
            match led.set(ON, "again").await {
                Ok(state) => break state,
                Err(error) => assert!(std::time::Instant::now() < until, "{error}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(state.led, ON);
        assert!(sim.stats().transactions > before, "read from the device");
    }
}
