//! MQTT, off unless configured: one connection per service to a broker on the LAN, kept up by
//! itself. A broker outage is a fault like any other: the service goes on over HTTP, the
//! connection is tried again with a growing pause (1 s to 30 s), the outage is logged once when
//! it starts and once when it ends, and everything retained is published again on reconnect.
//!
//! Each service has `<prefix>/<service>/availability`: `online` once connected, `offline` on a
//! clean stop, and `offline` from the broker (the last will) when the service dies or its link
//! drops. Retained messages are kept here too, so a reconnect, or Home Assistant announcing
//! itself on `<discovery prefix>/status`, gets them all again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::args::{SecretError, secret};

/// The longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Messages the service may have waiting for the connection (more are dropped and counted).
const QUEUE: usize = 64;
/// Largest message accepted from the broker: commands are small.
const MAX_INCOMING: usize = 4096;

/// The MQTT flags both services take.
#[derive(Debug, Clone, clap::Args)]
pub struct MqttArgs {
    /// The MQTT broker, `mqtt://HOST[:PORT]` (port 1883 by default); unset or empty: no MQTT.
    #[arg(long, env = "MQTT_URL", value_parser = check_broker)]
    pub mqtt_url: Option<String>,
    /// User name at the broker.
    #[arg(long, env = "MQTT_USERNAME", hide_env_values = true)]
    pub mqtt_username: Option<String>,
    /// A file holding the user name, instead of MQTT_USERNAME.
    #[arg(long, env = "MQTT_USERNAME_FILE")]
    pub mqtt_username_file: Option<std::path::PathBuf>,
    /// Password at the broker.
    #[arg(long, env = "MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,
    /// A file holding the password (a Docker or Kubernetes secret), instead of MQTT_PASSWORD.
    #[arg(long, env = "MQTT_PASSWORD_FILE")]
    pub mqtt_password_file: Option<std::path::PathBuf>,
    /// The start of every topic; unset or empty: `qwiic/` and this machine's host name. Set
    /// the same on both services of one device, and a different one for each device.
    #[arg(long, env = "MQTT_TOPIC_PREFIX", value_parser = check_topic_prefix)]
    pub mqtt_topic_prefix: Option<String>,
    /// Announce the button and its LED to Home Assistant (MQTT discovery); `false` removes
    /// what was announced.
    #[arg(long, env = "HA_DISCOVERY", default_value_t = true, action = clap::ArgAction::Set)]
    pub ha_discovery: bool,
    /// Home Assistant's discovery prefix.
    #[arg(long, env = "HA_DISCOVERY_PREFIX", default_value = "homeassistant", value_parser = parse_topic_prefix)]
    pub ha_discovery_prefix: String,
}

/// Where the broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
        }
    }
}

/// Checks `MQTT_URL` for clap; an empty value is no broker (compose passes one when unset).
fn check_broker(input: &str) -> Result<String, String> {
    if !input.trim().is_empty() {
        parse_broker(input)?;
    }
    Ok(input.trim().to_owned())
}

/// Checks `MQTT_TOPIC_PREFIX` for clap; an empty value is the default.
fn check_topic_prefix(input: &str) -> Result<String, String> {
    if input.trim().is_empty() {
        return Ok(String::new());
    }
    parse_topic_prefix(input)
}

/// Parses `mqtt://HOST[:PORT]`.
pub fn parse_broker(input: &str) -> Result<Broker, String> {
    const ACCEPTED: &str = "use mqtt://HOST or mqtt://HOST:PORT, such as mqtt://192.168.1.10:1883";
    let input = input.trim();
    let rest = match input.split_once("://") {
        Some(("mqtt" | "tcp", rest)) => rest,
        Some(("mqtts" | "ssl" | "ws" | "wss", _)) => {
            return Err(format!(
                "{input}: these builds speak plain MQTT only (no TLS, no WebSocket): use a broker on the LAN, and a Mosquitto bridge for TLS to a cloud hub (README)"
            ));
        }
        _ => return Err(format!("{input:?} is not a broker address: {ACCEPTED}")),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{input}: an IPv6 address needs its closing ']'"))?;
            (host, after.strip_prefix(':'))
        }
        None => match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(format!("{input}: no host, or not a bare host: {ACCEPTED}"));
    }
    let port = match port {
        None => 1883,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| format!("{input}: the port must be 1-65535"))?,
    };
    Ok(Broker {
        host: host.to_owned(),
        port,
    })
}

/// Parses a topic prefix: levels of letters, digits, `_` and `-`, separated by `/`.
pub fn parse_topic_prefix(input: &str) -> Result<String, String> {
    let prefix = input.trim().trim_end_matches('/');
    let valid = !prefix.is_empty()
        && prefix.split('/').all(|level| {
            !level.is_empty()
                && level
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if valid {
        Ok(prefix.to_owned())
    } else {
        Err(format!(
            "{input:?} is not a topic prefix: use levels of letters, digits, '_' and '-' separated by '/', such as qwiic/garage"
        ))
    }
}

/// `qwiic/<this machine's host name>`, in topic-safe characters.
pub fn default_topic_prefix() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let safe: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("qwiic/{}", if safe.is_empty() { "device" } else { &safe })
}

/// The settings of one service's MQTT link, resolved from [`MqttArgs`].
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// The broker.
    pub broker: Broker,
    /// User name and password, when the broker wants them.
    pub credentials: Option<(String, String)>,
    /// The start of every topic.
    pub prefix: String,
    /// Whether to announce to Home Assistant (else: remove what was announced).
    pub ha_discovery: bool,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
}

impl MqttArgs {
    /// The settings, or `None` when no broker is set.
    pub fn settings(&self) -> Result<Option<MqttSettings>, MqttSettingsError> {
        let url = self.mqtt_url.as_deref().unwrap_or_default();
        if url.is_empty() {
            return Ok(None);
        }
        let broker = parse_broker(url).map_err(MqttSettingsError::Url)?;
        let prefix = match self.mqtt_topic_prefix.as_deref() {
            None | Some("") => default_topic_prefix(),
            Some(prefix) => parse_topic_prefix(prefix).map_err(MqttSettingsError::Url)?,
        };
        let username = secret(
            self.mqtt_username.as_deref(),
            self.mqtt_username_file.as_deref(),
            "the MQTT user name",
            "MQTT_USERNAME",
        )?;
        let password = secret(
            self.mqtt_password.as_deref(),
            self.mqtt_password_file.as_deref(),
            "the MQTT password",
            "MQTT_PASSWORD",
        )?;
        Ok(Some(MqttSettings {
            broker,
            credentials: username.map(|user| (user, password.unwrap_or_default())),
            prefix,
            ha_discovery: self.ha_discovery,
            discovery_prefix: self.ha_discovery_prefix.clone(),
        }))
    }
}

/// Why the MQTT settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum MqttSettingsError {
    /// The broker's address or the topic prefix is wrong.
    #[error("{0}")]
    Url(String),
    /// The user name or password could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

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
}

impl MqttCounters {
    /// Registers them as `mqtt_published`, `mqtt_dropped`, `mqtt_received`,
    /// `mqtt_connection_failures` and `mqtt_connected`.
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
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "mqtt_connected",
            "1 while connected to the MQTT broker",
            self.connected.clone(),
        );
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
}

/// One service's link to the broker. Clones share it.
#[derive(Debug, Clone)]
pub struct Mqtt {
    client: AsyncClient,
    replay: Arc<Mutex<Replay>>,
    health: watch::Receiver<MqttHealth>,
    counters: MqttCounters,
    settings: Arc<MqttSettings>,
    availability: String,
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
        let client_id = format!("{}-{service}", settings.prefix.replace('/', "-"));
        let mut options = MqttOptions::new(
            client_id,
            settings.broker.host.clone(),
            settings.broker.port,
        );
        options
            .set_keep_alive(Duration::from_secs(60))
            .set_max_packet_size(MAX_INCOMING, 64 * 1024)
            .set_last_will(LastWill::new(
                &availability,
                "offline",
                QoS::AtLeastOnce,
                true,
            ));
        if let Some((user, password)) = &settings.credentials {
            options.set_credentials(user, password);
        }
        let (client, eventloop) = AsyncClient::new(options, QUEUE);
        let (health_tx, health) = watch::channel(MqttHealth::Connecting);
        let (incoming_tx, incoming) = mpsc::channel(QUEUE);
        let mqtt = Mqtt {
            client,
            replay: Arc::default(),
            health,
            counters,
            settings: Arc::new(settings),
            availability,
            closing: CancellationToken::new(),
            driver: Arc::default(),
        };
        mqtt.publish(&mqtt.availability.clone(), "online", true);
        mqtt.subscribe(&format!("{}/status", mqtt.settings.discovery_prefix));
        let driver = Driver {
            mqtt: mqtt.clone(),
            eventloop,
            health: health_tx,
            incoming: incoming_tx,
            down_since: None,
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

    /// `<prefix>/<suffix>`.
    pub fn topic(&self, suffix: &str) -> String {
        format!("{}/{suffix}", self.settings.prefix)
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &MqttSettings {
        &self.settings
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

    /// Announces one entity of the button to Home Assistant (MQTT discovery), retained:
    /// `config` completed with its `unique_id`, `default_entity_id`, availability, the device
    /// both services share (`firmware` is the button's) and the origin (`version` is the
    /// service's). With discovery off, removes it instead (an empty retained config).
    pub fn announce(
        &self,
        component: &str,
        object: &str,
        mut config: serde_json::Value,
        firmware: &str,
        version: &str,
    ) {
        let node = self.settings.prefix.replace('/', "_");
        let unique_id = format!("{node}_{object}");
        let topic = format!(
            "{}/{component}/{unique_id}/config",
            self.settings.discovery_prefix
        );
        if !self.settings.ha_discovery {
            self.publish(&topic, Vec::new(), true);
            return;
        }
        // Named after the prefix's last level, unless that says nothing more ("button").
        let name = match self.settings.prefix.rsplit('/').next() {
            Some(place) if !place.is_empty() && place != "button" => {
                format!("Qwiic Button {place}")
            }
            _ => "Qwiic Button".to_owned(),
        };
        let common = serde_json::json!({
            "unique_id": unique_id,
            "default_entity_id": format!("{component}.{unique_id}"),
            "availability": [{"topic": self.availability}],
            "device": {
                "identifiers": [node],
                "name": name,
                "manufacturer": "SparkFun",
                "model": "Qwiic Button",
                "sw_version": firmware,
            },
            "origin": {
                "name": "qwiic-containers",
                "sw_version": version,
                "support_url": "https://github.com/qwiic-containers/qwiic-containers",
            },
        });
        if let (Some(config), serde_json::Value::Object(common)) = (config.as_object_mut(), common)
        {
            config.extend(common);
        }
        self.publish(&topic, config.to_string(), true);
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
}

/// The task that drives the connection.
struct Driver {
    mqtt: Mqtt,
    eventloop: EventLoop,
    health: watch::Sender<MqttHealth>,
    incoming: mpsc::Sender<Incoming>,
    down_since: Option<Instant>,
}

impl Driver {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        let broker = self.mqtt.settings.broker.to_string();
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => break,
                event = self.eventloop.poll() => event,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_secs(1);
                    self.mqtt.counters.connected.set(1);
                    self.health.send_replace(MqttHealth::Connected);
                    match self.down_since.take() {
                        Some(since) => tracing::info!(
                            %broker,
                            outage_s = since.elapsed().as_secs_f64(),
                            "the MQTT broker answers again; publishing the retained state again"
                        ),
                        None => tracing::info!(%broker, "connected to the MQTT broker"),
                    }
                    // What was queued goes out first; then the latest of everything retained.
                    self.mqtt.replay();
                }
                Ok(Event::Incoming(Packet::Publish(message))) => {
                    self.received(message.topic, message.payload.to_vec());
                }
                Ok(_) => {}
                Err(error) => {
                    self.mqtt.counters.connection_failures.inc();
                    self.mqtt.counters.connected.set(0);
                    let why = describe(&error);
                    if self.down_since.is_none() {
                        self.down_since = Some(Instant::now());
                        tracing::warn!(%broker, "the MQTT broker is not reachable: {why}; the service goes on over HTTP and tries again every {}-{} s", 1, MAX_BACKOFF.as_secs());
                    }
                    self.health.send_replace(MqttHealth::Down(why));
                    // The next poll connects again at once, so pause here.
                    let pause = jitter(backoff);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
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
                tracing::info!("Home Assistant came online: announcing again");
                self.mqtt.replay();
            }
            return;
        }
        self.mqtt.counters.received.inc();
        if self.incoming.try_send(Incoming { topic, payload }).is_err() {
            self.mqtt.counters.dropped.inc();
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

/// `pause` ±20%, so that many devices do not retry in step.
fn jitter(pause: Duration) -> Duration {
    pause.mul_f64(0.8 + 0.4 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn broker_addresses_parse_and_bad_ones_say_what_is_accepted() {
        for (input, host, port) in [
            ("mqtt://broker", "broker", 1883),
            ("mqtt://192.168.1.10:1884", "192.168.1.10", 1884),
            ("tcp://mosquitto:1883/", "mosquitto", 1883),
            ("mqtt://[::1]:1883", "::1", 1883),
            ("mqtt://[fe80::1]", "fe80::1", 1883),
        ] {
            let broker = parse_broker(input).unwrap();
            assert_eq!((broker.host.as_str(), broker.port), (host, port), "{input}");
        }
        assert_eq!(
            parse_broker("mqtt://[::1]:1883").unwrap().to_string(),
            "mqtt://[::1]:1883"
        );
        for (input, says) in [
            ("broker:1883", "use mqtt://HOST or mqtt://HOST:PORT"),
            ("http://broker", "use mqtt://HOST or mqtt://HOST:PORT"),
            ("mqtts://broker:8883", "no TLS"),
            ("mqtt://broker:0", "the port must be 1-65535"),
            ("mqtt://broker:http", "the port must be 1-65535"),
            ("mqtt://", "no host"),
            ("mqtt://user@broker", "not a bare host"),
            ("mqtt://[::1:1883", "closing ']'"),
        ] {
            let message = parse_broker(input).unwrap_err();
            assert!(message.contains(says), "{input}: {message}");
        }
    }

    #[test]
    fn topic_prefixes_are_levels_of_safe_characters() {
        assert_eq!(parse_topic_prefix("qwiic/garage/").unwrap(), "qwiic/garage");
        for bad in ["", "qwiic//x", "qwiic/+", "qwiic/#", "qwiic/a b", "/qwiic"] {
            let message = parse_topic_prefix(bad).unwrap_err();
            assert!(message.contains("such as qwiic/garage"), "{bad}: {message}");
        }
        let default = default_topic_prefix();
        assert!(parse_topic_prefix(&default).is_ok(), "{default}");
    }

    #[test]
    fn the_user_name_and_password_come_from_values_or_files() {
        let dir = std::env::temp_dir().join(format!("qwiic-mqtt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let password = dir.join("password");
        std::fs::write(&password, "pa55\n").unwrap();
        let args = |extra: &[&str]| {
            #[derive(clap::Parser)]
            struct Cli {
                #[command(flatten)]
                mqtt: MqttArgs,
            }
            let mut all = vec!["service"];
            all.extend(extra);
            <Cli as clap::Parser>::parse_from(all).mqtt
        };
        assert!(args(&[]).settings().unwrap().is_none(), "off by default");
        let settings = args(&[
            "--mqtt-url=mqtt://broker",
            "--mqtt-username=alice",
            "--mqtt-password-file",
            password.to_str().unwrap(),
        ])
        .settings()
        .unwrap()
        .unwrap();
        assert_eq!(settings.credentials, Some(("alice".into(), "pa55".into())));
        assert!(settings.ha_discovery, "discovery is on with MQTT");
        assert_eq!(settings.discovery_prefix, "homeassistant");
        let both = args(&[
            "--mqtt-url=mqtt://broker",
            "--mqtt-password=x",
            "--mqtt-password-file",
            password.to_str().unwrap(),
        ])
        .settings()
        .unwrap_err()
        .to_string();
        assert!(
            both.contains("both MQTT_PASSWORD and MQTT_PASSWORD_FILE are set"),
            "{both}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
