//! What a service wraps around its bus: every transaction counted for /metrics, and a failed
//! one tried again at once when the device was there but the transfer broke.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use embedded_hal::i2c::{Error as _, ErrorType, I2c, Operation};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The bus as the services use it: every attempt counted for /metrics, a failed transaction
/// tried again up to `attempts` times in all.
pub type ServiceBus<B> = RetryingBus<CountingBus<B>>;

/// Wraps `bus` for a service (see [`ServiceBus`]).
pub fn service_bus<B>(bus: B, attempts: u32, counters: BusCounters) -> ServiceBus<B> {
    RetryingBus::new(CountingBus::new(bus, counters), attempts)
}

/// The bus's counters in /metrics. Clones share the values.
#[derive(Debug, Clone, Default)]
pub struct BusCounters {
    /// I2C transactions attempted.
    pub transactions: Counter,
    /// I2C transactions that failed.
    pub errors: Counter,
    /// Readings rejected as corrupted (see [`qwiic_button::Corruption`]).
    pub rejected_readings: Counter,
    /// 1 while the button is identified and its last transaction succeeded, else 0.
    pub button_answering: Gauge,
}

impl BusCounters {
    /// Registers them as `i2c_transactions`, `i2c_errors`, `i2c_rejected_readings` and
    /// `i2c_button_answering`.
    pub fn register(&self, registry: &mut Registry) {
        for (name, help, counter) in [
            (
                "i2c_transactions",
                "I2C transactions attempted",
                &self.transactions,
            ),
            ("i2c_errors", "I2C transactions that failed", &self.errors),
            (
                "i2c_rejected_readings",
                "readings rejected as corrupted (a bit-shifted transfer, no bus error)",
                &self.rejected_readings,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "i2c_button_answering",
            "1 while the Qwiic Button answers with its ID, 0 while it does not (/healthz says why)",
            self.button_answering.clone(),
        );
    }
}

/// An I2C bus that tries a failed transaction again, up to `attempts` times in all, at once,
/// when the failure is one of the device's (bus error, arbitration lost; no acknowledge only
/// while [`RetryingBus::nack_retries`] says the device is there).
///
/// Noise, a mishandled clock stretch (Raspberry Pi) or a busy device makes single transactions
/// fail now and then; trying again at once hides that from the service without hiding a device
/// that is really gone. Only for transactions that may be repeated: every read, and writes of
/// whole settings or of the status clear. Never wrap a bus that pops the queues (a repeated pop
/// loses an entry).
#[derive(Debug)]
pub struct RetryingBus<B> {
    bus: B,
    attempts: u32,
    nacks: Arc<AtomicBool>,
}

impl<B> RetryingBus<B> {
    /// Wraps `bus`; `attempts` is at least 1.
    pub fn new(bus: B, attempts: u32) -> Self {
        RetryingBus {
            bus,
            attempts: attempts.max(1),
            nacks: Arc::default(),
        }
    }

    /// Whether a NACK is tried again too, shared with whoever knows: a device link sets it
    /// while the button is identified (a NACK is then a glitch of a device that is there) and
    /// clears it when it is not (a NACK is then the device missing, and each one a kernel log
    /// line on a Jetson). Off at first.
    pub fn nack_retries(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.nacks)
    }
}

impl<B: ErrorType> ErrorType for RetryingBus<B> {
    type Error = B::Error;
}

impl<B: I2c> I2c for RetryingBus<B> {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let mut attempt = 1;
        loop {
            match self.bus.transaction(address, operations) {
                Err(error)
                    if attempt < self.attempts
                        && transient(error.kind(), self.nacks.load(Ordering::Relaxed)) =>
                {
                    attempt += 1
                }
                result => return result,
            }
        }
    }
}

/// Errors worth trying again at once: a broken transfer (bus error, lost arbitration), and a
/// NACK only when `nacks` says the device is there (identified): otherwise it is missing, and
/// on a Jetson every NACK is a kernel log line and a reset of the controller. A transport
/// failure (`Other`: the simulator server unreachable, a timeout) is not; repeating it only
/// multiplies the wait.
fn transient(kind: embedded_hal::i2c::ErrorKind, nacks: bool) -> bool {
    use embedded_hal::i2c::ErrorKind;
    match kind {
        ErrorKind::Bus | ErrorKind::ArbitrationLoss => true,
        ErrorKind::NoAcknowledge(_) => nacks,
        _ => false,
    }
}

/// An I2C bus that counts its transactions and failures for /metrics.
#[derive(Debug)]
pub struct CountingBus<B> {
    bus: B,
    counters: BusCounters,
}

impl<B> CountingBus<B> {
    /// Wraps `bus`; the counters are usually registered with a Prometheus registry.
    pub fn new(bus: B, counters: BusCounters) -> Self {
        CountingBus { bus, counters }
    }
}

impl<B: ErrorType> ErrorType for CountingBus<B> {
    type Error = B::Error;
}

impl<B: I2c> I2c for CountingBus<B> {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.counters.transactions.inc();
        let result = self.bus.transaction(address, operations);
        if result.is_err() {
            self.counters.errors.inc();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retrying_bus_tries_again_and_counts_every_attempt() {
        use embedded_hal::i2c::{ErrorKind, ErrorType};

        /// Fails the first `failures` transactions.
        struct Flaky {
            failures: u32,
            calls: u32,
        }
        impl ErrorType for Flaky {
            type Error = ErrorKind;
        }
        impl I2c for Flaky {
            fn transaction(&mut self, _: u8, _: &mut [Operation<'_>]) -> Result<(), ErrorKind> {
                self.calls += 1;
                if self.calls <= self.failures {
                    Err(ErrorKind::Bus)
                } else {
                    Ok(())
                }
            }
        }
        let counters = BusCounters::default();
        let mut bus = service_bus(
            Flaky {
                failures: 2,
                calls: 0,
            },
            3,
            counters.clone(),
        );
        assert!(bus.write(0x6F, &[0]).is_ok());
        assert_eq!((counters.transactions.get(), counters.errors.get()), (3, 2));
        let mut bus = RetryingBus::new(
            Flaky {
                failures: 3,
                calls: 0,
            },
            3,
        );
        assert_eq!(bus.write(0x6F, &[0]), Err(ErrorKind::Bus));
        assert_eq!(bus.bus.calls, 3, "gives up after three attempts");

        /// Fails every transaction like an unreachable simulator server.
        struct Unreachable(u32);
        impl ErrorType for Unreachable {
            type Error = ErrorKind;
        }
        impl I2c for Unreachable {
            fn transaction(&mut self, _: u8, _: &mut [Operation<'_>]) -> Result<(), ErrorKind> {
                self.0 += 1;
                Err(ErrorKind::Other)
            }
        }
        let mut bus = RetryingBus::new(Unreachable(0), 3);
        assert_eq!(bus.write(0x6F, &[0]), Err(ErrorKind::Other));
        assert_eq!(bus.bus.0, 1, "a transport failure is not repeated");

        /// Answers no acknowledge, like a missing device.
        struct Missing(u32);
        impl ErrorType for Missing {
            type Error = ErrorKind;
        }
        impl I2c for Missing {
            fn transaction(&mut self, _: u8, _: &mut [Operation<'_>]) -> Result<(), ErrorKind> {
                self.0 += 1;
                Err(ErrorKind::NoAcknowledge(
                    embedded_hal::i2c::NoAcknowledgeSource::Address,
                ))
            }
        }
        let mut bus = RetryingBus::new(Missing(0), 3);
        assert!(bus.write(0x6F, &[0]).is_err());
        assert_eq!(
            bus.bus.0, 1,
            "a NACK is not repeated (a kernel log line each)"
        );
    }
}
