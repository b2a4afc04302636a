//! The LED's one owner: a dedicated thread that holds the bus, serializes every transaction,
//! keeps blocking I/O off the async runtime, and never rewrites a setting the device already
//! holds (each write costs the firmware an EEPROM save).
//!
//! Handlers talk to it through [`LedDevice`], a cheap handle that sends commands over a bounded
//! channel and waits for the answer with a deadline.

use std::time::{Duration, Instant, SystemTime};

use qwiic_bus::{Bus, BusSpec, DeviceError};
use qwiic_button::{FirmwareVersion, LedConfig, QwiicButton};
use serde::{Deserialize, Serialize};
use service_kit::{ServiceBus, service_bus};
use tokio::sync::{mpsc, oneshot, watch};
use utoipa::ToSchema;

use crate::metrics::Metrics;

/// How many commands may wait for the bus before callers are told it is busy.
const QUEUE_DEPTH: usize = 64;
/// Tries per transaction: every transaction here may be repeated (reads, whole LED settings).
const BUS_ATTEMPTS: u32 = 3;

/// The LED as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LedView {
    /// True when the LED gives light (brightness above 0).
    pub on: bool,
    /// 0-255.
    #[schema(minimum = 0, maximum = 255)]
    pub brightness: u8,
    /// Pulse settings; `null` when the LED is steady.
    pub pulse: Option<Pulse>,
    /// When this service last changed the LED (RFC 3339, UTC); `null` if it has not yet.
    pub changed_at: Option<String>,
    /// Who changed it: the client's address and User-Agent, or `shutdown`.
    pub changed_by: Option<String>,
}

/// Pulse settings of the LED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pulse {
    /// Length of one ramp up and down, in ms (1-65535).
    #[serde(deserialize_with = "crate::integer::deserialize")]
    #[schema(minimum = 1, maximum = 65535)]
    pub cycle_ms: u16,
    /// Dark time between pulses, in ms (0-65535).
    #[serde(default, deserialize_with = "crate::integer::deserialize")]
    #[schema(minimum = 0, maximum = 65535)]
    pub off_ms: u16,
    /// Brightness step size (1-255).
    #[serde(
        default = "default_granularity",
        deserialize_with = "crate::integer::deserialize"
    )]
    #[schema(minimum = 1, maximum = 255)]
    pub granularity: u8,
}

fn default_granularity() -> u8 {
    1
}

impl LedView {
    fn new(led: LedConfig, change: Option<&Change>) -> Self {
        LedView {
            on: led.is_on(),
            brightness: led.brightness,
            pulse: (led.cycle_time_ms != 0).then_some(Pulse {
                cycle_ms: led.cycle_time_ms,
                off_ms: led.off_time_ms,
                granularity: led.granularity,
            }),
            changed_at: change.map(|c| humantime::format_rfc3339_millis(c.at).to_string()),
            changed_by: change.map(|c| c.by.clone()),
        }
    }
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
}

/// A handle to the LED's owner thread. Clones share it.
#[derive(Debug, Clone)]
pub struct LedDevice {
    commands: mpsc::Sender<Command>,
    updates: watch::Receiver<Option<LedView>>,
    timeout: Duration,
}

enum Command {
    Set {
        led: LedConfig,
        by: String,
        reply: oneshot::Sender<Result<LedView, DeviceFault>>,
    },
    Get {
        reply: oneshot::Sender<Result<LedView, DeviceFault>>,
    },
    Health {
        reply: oneshot::Sender<Result<FirmwareVersion, DeviceFault>>,
    },
}

impl LedDevice {
    /// Starts the owner thread for the button on `bus`. Every bus call is answered within
    /// `timeout` or reported as [`DeviceFault::Timeout`].
    pub fn spawn(
        button: QwiicButton<Bus>,
        spec: BusSpec,
        metrics: &Metrics,
        timeout: Duration,
    ) -> std::io::Result<LedDevice> {
        let address = button.address();
        let bus = service_bus(
            button.destroy(),
            BUS_ATTEMPTS,
            metrics.i2c_transactions.clone(),
            metrics.i2c_errors.clone(),
        );
        let (commands, receiver) = mpsc::channel(QUEUE_DEPTH);
        let (updates_tx, updates) = watch::channel(None);
        let worker = Worker {
            button: QwiicButton::new(bus, address),
            spec,
            cached: None,
            identified: false,
            last_change: None,
            outage_since: None,
            updates: updates_tx,
            metrics: metrics.clone(),
        };
        std::thread::Builder::new()
            .name("i2c-owner".into())
            .spawn(move || worker.run(receiver))?;
        Ok(LedDevice {
            commands,
            updates,
            timeout,
        })
    }

    /// Sets the LED unless it already holds `led`; `by` is recorded as who changed it.
    pub async fn set(&self, led: LedConfig, by: String) -> Result<LedView, DeviceFault> {
        self.ask(|reply| Command::Set { led, by, reply }).await
    }

    /// Reads the LED from the device.
    pub async fn get(&self) -> Result<LedView, DeviceFault> {
        self.ask(|reply| Command::Get { reply }).await
    }

    /// Reads the button's ID: Ok while a Qwiic Button answers.
    pub async fn health(&self) -> Result<FirmwareVersion, DeviceFault> {
        self.ask(|reply| Command::Health { reply }).await
    }

    /// The LED after every change, for live updates; `None` until first known.
    pub fn updates(&self) -> watch::Receiver<Option<LedView>> {
        self.updates.clone()
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, DeviceFault>>) -> Command,
    ) -> Result<T, DeviceFault> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .try_send(command(reply))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => DeviceFault::Busy,
                mpsc::error::TrySendError::Closed(_) => DeviceFault::Stopped,
            })?;
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(DeviceFault::Stopped),
            Err(_) => Err(DeviceFault::Timeout(self.timeout)),
        }
    }
}

struct Change {
    at: SystemTime,
    by: String,
}

struct Worker {
    button: QwiicButton<ServiceBus<Bus>>,
    spec: BusSpec,
    /// What the LED registers hold, while we are sure of it; `None` after any error, because
    /// the device may have been power-cycled or replaced meanwhile.
    cached: Option<LedConfig>,
    /// The ID was checked since the last error.
    identified: bool,
    last_change: Option<Change>,
    /// Set while the button does not answer, to log an outage once at each end.
    outage_since: Option<Instant>,
    updates: watch::Sender<Option<LedView>>,
    metrics: Metrics,
}

impl Worker {
    fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        while let Some(command) = commands.blocking_recv() {
            // A send error means the caller gave up waiting (timeout): nothing to do.
            match command {
                Command::Set { led, by, reply } => {
                    let _ = reply.send(self.set(led, by));
                }
                Command::Get { reply } => {
                    let _ = reply.send(self.get());
                }
                Command::Health { reply } => {
                    let _ = reply.send(self.identify());
                }
            }
        }
    }

    fn set(&mut self, wanted: LedConfig, by: String) -> Result<LedView, DeviceFault> {
        let current = self.current()?;
        if current == wanted {
            self.metrics.led_writes_skipped.inc();
        } else {
            self.button
                .set_led(wanted)
                .map_err(|error| self.fail(error))?;
            self.cached = Some(wanted);
            tracing::info!(brightness = wanted.brightness, pulse_ms = wanted.cycle_time_ms, %by, "LED changed");
            self.last_change = Some(Change {
                at: SystemTime::now(),
                by,
            });
            self.metrics.led_changes.inc();
        }
        Ok(self.publish(wanted))
    }

    fn get(&mut self) -> Result<LedView, DeviceFault> {
        self.cached = None; // a GET reads the device, not our memory
        let led = self.current()?;
        Ok(self.publish(led))
    }

    /// The LED registers: from the cache, or read from a freshly identified device.
    fn current(&mut self) -> Result<LedConfig, DeviceFault> {
        if !self.identified {
            self.identify()?;
        }
        if let Some(led) = self.cached {
            return Ok(led);
        }
        let led = self.button.led().map_err(|error| self.fail(error))?;
        self.cached = Some(led);
        Ok(led)
    }

    fn identify(&mut self) -> Result<FirmwareVersion, DeviceFault> {
        let firmware = self
            .button
            .check_identity()
            .map_err(|error| self.fail(error))?;
        if !self.identified {
            self.identified = true;
            match self.outage_since.take() {
                Some(since) => tracing::info!(
                    bus = %self.spec, firmware = %firmware, outage_ms = since.elapsed().as_millis() as u64,
                    "the button answers again"
                ),
                None => {
                    tracing::info!(bus = %self.spec, address = %self.button.address(), firmware = %firmware, "Qwiic Button found")
                }
            }
        }
        Ok(firmware)
    }

    /// Forgets what we knew about the device and logs the start of an outage once.
    fn fail(&mut self, error: qwiic_button::Error<qwiic_bus::BusError>) -> DeviceFault {
        self.cached = None;
        self.identified = false;
        let error = DeviceError::new(&self.spec, self.button.address(), error);
        if self.outage_since.is_none() {
            self.outage_since = Some(Instant::now());
            tracing::warn!(%error, "the button stopped answering; retrying on every request");
        }
        DeviceFault::Unavailable(error.to_string())
    }

    fn publish(&self, led: LedConfig) -> LedView {
        let view = LedView::new(led, self.last_change.as_ref());
        self.updates.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&view);
            if changed {
                *current = Some(view.clone());
            }
            changed
        });
        view
    }
}
