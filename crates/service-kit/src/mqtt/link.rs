//! One service's connection to the broker, kept up by itself. A broker outage is a fault like
//! any other: the service goes on over HTTP, the connection is tried again with a growing
//! pause (1 s to 30 s), the outage is logged once when it starts and once when it ends, and
//! everything retained is published again on reconnect.
//!
//! Each service has `<prefix>/<service>/availability`: `online` once connected, `offline` on a
//! clean stop, and `offline` from the broker (the last will) when the service dies or its link
//! drops; and `<prefix>/<service>/device`, whether the device answers it. Retained messages are kept here too, so a reconnect, or Home Assistant announcing
//! itself on `<discovery prefix>/status`, gets them all again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use runtime_kit::{Backoff, Burst, Policy, TokenBucket};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::settings::MqttSettings;

/// The pauses between connection attempts.
const RECONNECT: Policy = Policy {
    first: Duration::from_secs(1),
    cap: Duration::from_secs(30),
    jitter: 0.2,
};
/// Messages the service may have waiting for the connection (more are dropped and counted).
const QUEUE: usize = 64;
/// Events ([`Mqtt::deliver`]) kept for the broker while it is away; beyond it the oldest is
/// dropped and counted.
pub const OUTBOX: usize = 256;
/// After this long without a birth, a storm of Home Assistant births has ended.
const BIRTH_QUIET: Duration = Duration::from_secs(10);
/// The pause after which the broker is asked whether the connection still lives.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Largest message accepted from the broker: commands are small.
const MAX_INCOMING: usize = 4096;

/// The link's state, for `/healthz` (informative: MQTT never fails a service's health).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttHealth {
    /// Not connected yet.
    Connecting,
    /// Connected to the broker.
    Connected,
    /// The broker cannot be reached, or refused: why.
    Down(String),
}

impl std::fmt::Display for MqttHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MqttHealth::Connecting => f.write_str("connecting"),
            MqttHealth::Connected => f.write_str("connected"),
            MqttHealth::Down(why) => write!(f, "down: {why}"),
        }
    }
}

/// The link's counters in /metrics. Clones share the values.
#[derive(Debug, Clone, Default)]
pub struct MqttCounters {
    /// Messages handed to the link.
    pub published: Counter,
    /// Messages dropped because the link's queue was full (the broker away for long).
    pub dropped: Counter,
    /// Messages received on the service's subscriptions.
    pub received: Counter,
    /// Connection attempts that failed.
    pub connection_failures: Counter,
    /// 1 while connected.
    pub connected: Gauge,
    /// Events dropped from a full outbox (the oldest first).
    pub outbox_dropped: Counter,
    /// Events waiting in the outbox for the broker.
    pub outbox_waiting: Gauge,
}

impl MqttCounters {
    /// Registers them as `mqtt_published`, `mqtt_dropped`, `mqtt_received`,
    /// `mqtt_connection_failures`, `mqtt_outbox_dropped`, `mqtt_connected` and
    /// `mqtt_outbox_waiting`.
    pub fn register(&self, registry: &mut Registry) {
        for (name, help, counter) in [
            (
                "mqtt_published",
                "MQTT messages handed to the link",
                &self.published,
            ),
            (
                "mqtt_dropped",
                "MQTT messages dropped while the broker was away too long",
                &self.dropped,
            ),
            (
                "mqtt_received",
                "MQTT messages received on the service's subscriptions",
                &self.received,
            ),
            (
                "mqtt_connection_failures",
                "MQTT connection attempts that failed",
                &self.connection_failures,
            ),
            (
                "mqtt_outbox_dropped",
                "MQTT events dropped from a full outbox while the broker was away (the oldest first)",
                &self.outbox_dropped,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        for (name, help, gauge) in [
            (
                "mqtt_connected",
                "1 while connected to the MQTT broker",
                &self.connected,
            ),
            (
                "mqtt_outbox_waiting",
                "MQTT events waiting in the outbox for the broker",
                &self.outbox_waiting,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
    }
}

/// A message from the broker on one of the service's subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// What is published again at every connection: retained messages by topic, and the
/// subscriptions.
#[derive(Debug, Default)]
struct Replay {
    retained: BTreeMap<String, Vec<u8>>,
    subscriptions: Vec<String>,
    /// Events for the broker, oldest first: topic and payload.
    outbox: VecDeque<(String, Vec<u8>)>,
}

/// One service's link to the broker. Clones share it.
#[derive(Debug, Clone)]
pub struct Mqtt {
    client: AsyncClient,
    replay: Arc<Mutex<Replay>>,
    health: watch::Receiver<MqttHealth>,
    counters: MqttCounters,
    pub(super) settings: Arc<MqttSettings>,
    pub(super) service: &'static str,
    pub(super) availability: String,
    /// `<prefix>/<service>/device`: whether the device answers this service.
    pub(super) device: String,
    closing: CancellationToken,
    driver: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Mqtt {
    /// Connects `service` (such as `button`) with `settings`, in a task that keeps the link up
    /// until [`Mqtt::close`]. Returns the link and the messages that arrive on its
    /// subscriptions. Must be called within a tokio runtime.
    pub fn start(
        service: &'static str,
        settings: MqttSettings,
        counters: MqttCounters,
    ) -> (Mqtt, mpsc::Receiver<Incoming>) {
        let availability = format!("{}/{service}/availability", settings.prefix);
        // Unique to this process: two devices left on the same prefix must not take turns
        // kicking each other off the broker (each taking the other's "offline" will with it).
        let client_id = format!(
            "{}-{service}-{:08x}",
            settings.prefix.replace('/', "-"),
            fastrand::u32(..)
        );
        let mut options = MqttOptions::new(
            client_id,
            settings.broker.host.clone(),
            settings.broker.port,
        );
        options
            // A connection that died without a word (a cable, a LAN switch) is noticed within
            // about this long, and events go to the outbox from then on.
            .set_keep_alive(KEEP_ALIVE)
            .set_max_packet_size(MAX_INCOMING, 64 * 1024)
            .set_last_will(LastWill::new(
                &availability,
                "offline",
                QoS::AtLeastOnce,
                true,
            ));
        if let Some((user, password)) = &settings.credentials {
            options.set_credentials(user.expose(), password.expose());
        }
        let (client, eventloop) = AsyncClient::new(options, QUEUE);
        let (health_tx, health) = watch::channel(MqttHealth::Connecting);
        let (incoming_tx, incoming) = mpsc::channel(QUEUE);
        let mqtt = Mqtt {
            client,
            replay: Arc::default(),
            health,
            counters,
            device: format!("{}/{service}/device", settings.prefix),
            settings: Arc::new(settings),
            service,
            availability,
            closing: CancellationToken::new(),
            driver: Arc::default(),
        };
        mqtt.publish(&mqtt.availability.clone(), "online", true);
        mqtt.set_device_answering(false);
        mqtt.subscribe(&format!("{}/status", mqtt.settings.discovery_prefix));
        let driver = Driver {
            mqtt: mqtt.clone(),
            eventloop,
            health: health_tx,
            incoming: incoming_tx,
            outage: Burst::default(),
            births: Burst::default(),
            last_birth: None,
            replays: TokenBucket::new(1, 1.0),
        };
        let task = tokio::spawn(driver.run(mqtt.closing.clone()));
        *mqtt.driver.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        (mqtt, incoming)
    }

    /// Says `offline` (retained), disconnects cleanly, and stops the link: within a second.
    pub async fn close(&self) {
        self.closing.cancel();
        let task = self
            .driver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
        }
    }

    /// Says on `<prefix>/<service>/device` (retained) whether the device answers this
    /// service: `online` or `offline` (the first until it is known). Home Assistant shows the
    /// service's entities available only while both this and the service's availability say
    /// `online`.
    pub fn set_device_answering(&self, answering: bool) {
        let payload = if answering { "online" } else { "offline" };
        self.publish_if_changed(&self.device.clone(), payload);
    }

    /// Publishes `payload` on `topic`, retained, unless it is what was published there last.
    pub fn publish_if_changed(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        let payload = payload.into();
        let said = self
            .replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retained
            .get(topic)
            .is_some_and(|said| *said == payload);
        if !said {
            self.publish(topic, payload, true);
        }
    }

    /// `<prefix>/<suffix>`.
    pub fn topic(&self, suffix: &str) -> String {
        format!("{}/{suffix}", self.settings.prefix)
    }

    /// Publishes with QoS 1; a retained message is also published again at every connection
    /// (an empty retained payload deletes the broker's copy, and is not kept). Never waits:
    /// with the broker away for long, the oldest waiting messages are kept and this one is
    /// dropped and counted.
    pub fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        let payload = payload.into();
        if retain {
            let mut replay = self.replay.lock().unwrap_or_else(PoisonError::into_inner);
            if payload.is_empty() {
                replay.retained.remove(topic);
            } else {
                replay.retained.insert(topic.to_owned(), payload.clone());
            }
        }
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            Ok(()) => self.counters.published.inc(),
            Err(_) => self.counters.dropped.inc(),
        };
    }

    /// Delivers an event (QoS 1, not retained) that must not be lost to a broker outage: while
    /// the broker is away it waits in the outbox (at most [`OUTBOX`]; beyond, the oldest is
    /// dropped and counted), and goes out after the retained state on reconnect, in order.
    /// Never waits. (An event handed to a connection that has died without a word, before
    /// the keep-alive notices, can still be lost: the link starts a clean session each time.)
    pub fn deliver(&self, topic: &str, payload: impl Into<Vec<u8>>) {
        let mut replay = self.replay.lock().unwrap_or_else(PoisonError::into_inner);
        replay.outbox.push_back((topic.to_owned(), payload.into()));
        if replay.outbox.len() > OUTBOX {
            replay.outbox.pop_front();
            self.counters.outbox_dropped.inc();
        }
        self.flush(&mut replay);
    }

    /// Hands the outbox to the connection, oldest first, while connected and while the
    /// connection takes them.
    fn flush(&self, replay: &mut Replay) {
        if *self.health.borrow() == MqttHealth::Connected {
            while let Some((topic, payload)) = replay.outbox.front() {
                if self
                    .client
                    .try_publish(topic, QoS::AtLeastOnce, false, payload.clone())
                    .is_err()
                {
                    break;
                }
                self.counters.published.inc();
                replay.outbox.pop_front();
            }
        }
        self.counters
            .outbox_waiting
            .set(i64::try_from(replay.outbox.len()).unwrap_or(i64::MAX));
    }

    /// Subscribes to `topic` with QoS 1, now and after every reconnect.
    pub fn subscribe(&self, topic: &str) {
        self.replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .subscriptions
            .push(topic.to_owned());
        let _ = self.client.try_subscribe(topic, QoS::AtLeastOnce);
    }

    /// The link's state.
    pub fn health(&self) -> MqttHealth {
        self.health.borrow().clone()
    }

    /// The link's state as it changes.
    pub fn health_updates(&self) -> watch::Receiver<MqttHealth> {
        self.health.clone()
    }

    /// Publishes again everything retained, and subscribes again.
    fn replay(&self) {
        let replay = self.replay.lock().unwrap_or_else(PoisonError::into_inner);
        for topic in &replay.subscriptions {
            let _ = self.client.try_subscribe(topic, QoS::AtLeastOnce);
        }
        for (topic, payload) in &replay.retained {
            match self
                .client
                .try_publish(topic, QoS::AtLeastOnce, true, payload.clone())
            {
                Ok(()) => self.counters.published.inc(),
                Err(_) => self.counters.dropped.inc(),
            };
        }
    }

    /// Hands the outbox on, if anything waits in it (after the connection took something).
    fn flush_waiting(&self) {
        let mut replay = self.replay.lock().unwrap_or_else(PoisonError::into_inner);
        if !replay.outbox.is_empty() {
            self.flush(&mut replay);
        }
    }
}

/// The task that drives the connection.
struct Driver {
    mqtt: Mqtt,
    eventloop: EventLoop,
    health: watch::Sender<MqttHealth>,
    incoming: mpsc::Sender<Incoming>,
    outage: Burst,
    /// Home Assistant's births: a storm is logged once at each end.
    births: Burst,
    last_birth: Option<Instant>,
    /// Replays for births: at most one a second.
    replays: TokenBucket,
}

impl Driver {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(RECONNECT);
        let broker = self.mqtt.settings.broker.to_string();
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => break,
                event = self.eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff.reset();
                    self.mqtt.counters.connected.set(1);
                    match self.outage.end() {
                        Some(outage) => tracing::info!(
                            %broker,
                            outage_ms = outage.lasted_ms(),
                            "the MQTT broker answers again; publishing the retained state again"
                        ),
                        None => tracing::info!(%broker, "connected to the MQTT broker"),
                    }
                    // What was queued goes out first; then the latest of everything retained;
                    // then the outbox. Connected only now: an event delivered meanwhile
                    // waits in the outbox, behind the state.
                    self.mqtt.replay();
                    self.health.send_replace(MqttHealth::Connected);
                    self.mqtt.flush_waiting();
                }
                Ok(Event::Incoming(Packet::Publish(message))) => {
                    self.received(message.topic, message.payload.to_vec());
                }
                Ok(_) => self.mqtt.flush_waiting(),
                Err(error) => {
                    self.mqtt.counters.connection_failures.inc();
                    self.mqtt.counters.connected.set(0);
                    let why = describe(&error);
                    if self.outage.hit() {
                        tracing::warn!(%broker, "the MQTT broker is not reachable: {why}; the service goes on over HTTP and tries again every {}-{} s", RECONNECT.first.as_secs(), RECONNECT.cap.as_secs());
                    }
                    self.health.send_replace(MqttHealth::Down(why));
                    // The next poll connects again at once, so pause here.
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }
        }
        self.say_goodbye().await;
    }

    /// A message on a subscription: Home Assistant's birth makes the link publish again what
    /// it retains (discovery and state); anything else goes to the service.
    fn received(&mut self, topic: String, payload: Vec<u8>) {
        let status = format!("{}/status", self.mqtt.settings.discovery_prefix);
        if topic == status {
            if payload == b"online" {
                self.born();
            }
            return;
        }
        // Only the topics subscribed to, exactly: a broker that sends others is ignored.
        let subscribed = self
            .mqtt
            .replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .subscriptions
            .contains(&topic);
        if !subscribed {
            self.mqtt.counters.dropped.inc();
            return;
        }
        self.mqtt.counters.received.inc();
        if self.incoming.try_send(Incoming { topic, payload }).is_err() {
            self.mqtt.counters.dropped.inc();
        }
    }

    /// Home Assistant announced itself: everything retained is published again, at most once a
    /// second (a storm of births must not crowd out real state), and a storm is logged once
    /// when it starts and once when it has been quiet for a while.
    fn born(&mut self) {
        let now = Instant::now();
        if self.last_birth.is_some_and(|at| now - at > BIRTH_QUIET) {
            if let Some(storm) = self.births.end() {
                if storm.count > 1 {
                    tracing::info!(
                        births = storm.count,
                        "Home Assistant announced itself {} times in a row; announced again at most once a second",
                        storm.count
                    );
                }
            }
        }
        self.last_birth = Some(now);
        if self.births.hit() {
            tracing::info!("Home Assistant came online: announcing again");
        }
        if self.replays.take(now).is_ok() {
            self.mqtt.replay();
        }
    }

    /// `offline`, retained, then a clean disconnect, within half a second.
    async fn say_goodbye(mut self) {
        if self.health.borrow().clone() != MqttHealth::Connected {
            return;
        }
        self.mqtt
            .publish(&self.mqtt.availability.clone(), "offline", true);
        let _ = self.mqtt.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Ok(event) = self.eventloop.poll().await {
                if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
        self.mqtt.counters.connected.set(0);
    }
}

/// What went wrong, in words a person can act on.
fn describe(error: &ConnectionError) -> String {
    use rumqttc::ConnectReturnCode as Code;
    match error {
        ConnectionError::ConnectionRefused(Code::NotAuthorized | Code::BadUserNamePassword) => {
            "the broker refused the user name or password (MQTT_USERNAME, MQTT_PASSWORD)".into()
        }
        ConnectionError::ConnectionRefused(code) => format!("the broker refused: {code:?}"),
        ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "nothing listens there (is the broker running? check MQTT_URL)".into()
        }
        ConnectionError::NetworkTimeout => {
            "no answer within 5 s (check MQTT_URL and the network)".into()
        }
        other => other.to_string(),
    }
}
