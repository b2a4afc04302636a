//! [`LedDevice`]: the handle handlers hold. It sends commands to the owner thread over a bounded
//! channel and waits for each answer with a deadline, and answers a repeat of what the LED
//! already holds itself.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use qwiic_bus::{DeviceLink, FRESH, HealthView};
use qwiic_button::{FirmwareVersion, LedConfig};
use runtime_kit::TokenBucket;
use tokio::sync::{oneshot, watch};

use super::owner::Owner;
use super::{Command, DeviceFault, LedState, QUEUE_DEPTH};
use crate::limits::WearBudget;
use crate::metrics::Metrics;

/// A handle to the LED's owner thread. Clones share it.
#[derive(Debug, Clone)]
pub struct LedDevice {
    commands: mpsc::SyncSender<Command>,
    updates: watch::Receiver<Option<LedState>>,
    health: HealthView,
    timeout: Duration,
    /// Changes sent to the thread and not yet answered (held ones included).
    changes_in_flight: Arc<AtomicUsize>,
    /// False while the published state may not be what the device holds (a write whose
    /// read-back failed may or may not have landed).
    published_is_held: Arc<AtomicBool>,
    /// The owner's wear budget, read for diagnostics.
    budget: Arc<Mutex<TokenBucket>>,
    metrics: Metrics,
}

impl LedDevice {
    /// Starts the owner thread for the button behind `link`, writing within `wear`. Every call
    /// is answered within `timeout` or reported as [`DeviceFault::Timeout`].
    pub fn spawn(
        link: DeviceLink,
        metrics: &Metrics,
        timeout: Duration,
        wear: WearBudget,
    ) -> std::io::Result<LedDevice> {
        let (commands, receiver) = mpsc::sync_channel(QUEUE_DEPTH);
        let (updates_tx, updates) = watch::channel(None);
        let health = link.health();
        let changes_in_flight = Arc::new(AtomicUsize::new(0));
        let published_is_held = Arc::new(AtomicBool::new(true));
        let budget = Arc::new(Mutex::new(TokenBucket::new(wear.burst, wear.per_second)));
        let owner = Owner::new(
            link,
            budget.clone(),
            updates_tx,
            metrics.clone(),
            changes_in_flight.clone(),
            published_is_held.clone(),
        );
        std::thread::Builder::new()
            .name("led-owner".into())
            .spawn(move || owner.run(receiver))?;
        Ok(LedDevice {
            commands,
            updates,
            health,
            timeout,
            changes_in_flight,
            published_is_held,
            budget,
            metrics: metrics.clone(),
        })
    }

    /// How much of the wear budget is spent now, in percent: 0 with a whole burst of changes
    /// at hand, 100 while changes are refused until it refills.
    pub fn wear_budget_spent_percent(&self) -> f64 {
        let budget = self.budget.lock().unwrap_or_else(PoisonError::into_inner);
        (budget.spent(std::time::Instant::now()) * 1000.0).round() / 10.0
    }

    /// Sets the LED unless it already holds `led`; `by` is recorded as who changed it (written
    /// out only then). Within the wear budget: beyond it, [`DeviceFault::WearLimit`].
    pub async fn set(
        &self,
        led: LedConfig,
        by: impl fmt::Display,
    ) -> Result<LedState, DeviceFault> {
        self.change(led, by, false).await
    }

    /// Switches the LED off on the way out, whatever the wear budget says.
    pub async fn switch_off(&self) -> Result<LedState, DeviceFault> {
        self.change(LedConfig::OFF, "shutdown", true).await
    }

    async fn change(
        &self,
        led: LedConfig,
        by: impl fmt::Display,
        essential: bool,
    ) -> Result<LedState, DeviceFault> {
        if let Some(state) = self.already(led) {
            self.metrics.led_writes_skipped.inc();
            return Ok(state);
        }
        let by = by.to_string();
        let (reply, answer) = oneshot::channel();
        self.changes_in_flight.fetch_add(1, Ordering::SeqCst);
        let command = Command::Set {
            led,
            by,
            essential,
            reply,
        };
        if let Err(refused) = self.send(command) {
            // It never reached the thread, which counts down what it answers.
            self.changes_in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(refused);
        }
        self.wait(answer).await
    }

    /// The LED's state, when it holds `led` for sure.
    fn already(&self, led: LedConfig) -> Option<LedState> {
        self.known().filter(|state| state.led == led)
    }

    /// The LED's state, when it is known for sure: no change on its way, the state the thread
    /// last published and still vouches for, and a device that answered within [`FRESH`].
    fn known(&self) -> Option<LedState> {
        if self.changes_in_flight.load(Ordering::SeqCst) != 0
            || !self.published_is_held.load(Ordering::SeqCst)
        {
            return None;
        }
        self.health.answered_within(FRESH)?;
        self.updates.borrow().clone()
    }

    /// The LED as the device holds it: known for sure (see above), or read from the device.
    pub async fn get(&self) -> Result<LedState, DeviceFault> {
        if let Some(state) = self.known() {
            return Ok(state);
        }
        self.ask(|reply| Command::Get { reply }).await
    }

    /// Ok while a Qwiic Button answers: at once when a transaction succeeded within the last
    /// second (so a busy service never queues its health check behind requests), else after a
    /// read of its ID.
    pub async fn health(&self) -> Result<FirmwareVersion, DeviceFault> {
        if let Some(firmware) = self.health.answered_within(FRESH) {
            return Ok(firmware);
        }
        self.ask(|reply| Command::Health { reply }).await
    }

    /// The button's link, as the thread sees it (its firmware, for announcements).
    pub fn button(&self) -> HealthView {
        self.health.clone()
    }

    /// The LED after every change, for live updates; `None` until first known.
    pub fn updates(&self) -> watch::Receiver<Option<LedState>> {
        self.updates.clone()
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, DeviceFault>>) -> Command,
    ) -> Result<T, DeviceFault> {
        let (reply, answer) = oneshot::channel();
        self.send(command(reply))?;
        self.wait(answer).await
    }

    /// Queues a command for the thread, unless the queue is full or the thread has ended.
    fn send(&self, command: Command) -> Result<(), DeviceFault> {
        self.commands
            .try_send(command)
            .map_err(|error| match error {
                TrySendError::Full(_) => DeviceFault::Busy,
                TrySendError::Disconnected(_) => DeviceFault::Stopped,
            })
    }

    /// The thread's answer, or a timeout.
    async fn wait<T>(
        &self,
        answer: oneshot::Receiver<Result<T, DeviceFault>>,
    ) -> Result<T, DeviceFault> {
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(DeviceFault::Stopped),
            Err(_) => Err(DeviceFault::Timeout(self.timeout)),
        }
    }
}
