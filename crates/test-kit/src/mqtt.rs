//! A real MQTT broker for tests (Debian's Mosquitto, on a loopback port of its own), and a
//! client that watches topics as Home Assistant or a person with `mosquitto_sub` would.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// A Mosquitto broker, killed on drop. `$MOSQUITTO` names the binary (else
/// `/usr/sbin/mosquitto`, Debian's; scripts/test-deps installs it).
pub struct Broker {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
}

impl Broker {
    /// A broker that lets anyone in.
    pub fn start() -> Broker {
        Broker::start_with(None)
    }

    /// A broker that lets in only `user` with `password`.
    pub fn start_with_password(user: &str, password: &str) -> Broker {
        Broker::start_with(Some((user, password)))
    }

    /// A broker that lets in whom `passwords`, a Mosquitto password file, names.
    pub fn start_with_password_file(passwords: &std::path::Path) -> Broker {
        Broker::start_with_config(&format!(
            "allow_anonymous false\npassword_file {}\n",
            passwords.display()
        ))
    }

    fn start_with(credentials: Option<(&str, &str)>) -> Broker {
        match credentials {
            None => Broker::start_with_config("allow_anonymous true\n"),
            Some((user, password)) => {
                let passwords = std::env::temp_dir().join(format!(
                    "qwiic-mosquitto-passwords-{}-{}",
                    std::process::id(),
                    fastrand::u64(..)
                ));
                let status = Command::new(passwd_binary())
                    .arg("-c")
                    .arg("-b")
                    .arg(&passwords)
                    .args([user, password])
                    .status()
                    .unwrap();
                assert!(status.success(), "mosquitto_passwd failed");
                Broker::start_with_password_file(&passwords)
            }
        }
    }

    /// A broker on a free loopback port with `access` (its authentication lines).
    fn start_with_config(access: &str) -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("qwiic-mosquitto-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // `user root` keeps a root test run from dropping to the user mosquitto, which could
        // not read this directory; it has no effect for anyone else.
        let config = format!(
            "listener {port} 127.0.0.1\npersistence false\nlog_dest stderr\nuser root\n{access}"
        );
        std::fs::write(dir.join("mosquitto.conf"), config).unwrap();
        let mut broker = Broker {
            child: None,
            port,
            dir,
        };
        broker.restart();
        broker
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Kills it (as a crash or a power cut would: no goodbye to anyone).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (after [`Broker::kill`]); returns once it accepts
    /// connections. It remembers nothing (no persistence), as a broker that lost its state.
    pub fn restart(&mut self) {
        self.kill();
        let binary = std::env::var("MOSQUITTO").unwrap_or_else(|_| "/usr/sbin/mosquitto".into());
        let child = Command::new(&binary)
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {binary} ({error}): install Debian's mosquitto (scripts/test-deps) or set MOSQUITTO"
                )
            });
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < until,
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn passwd_binary() -> String {
    std::env::var("MOSQUITTO_PASSWD").unwrap_or_else(|_| "/usr/bin/mosquitto_passwd".into())
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A message a [`Watcher`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its topic.
    pub topic: String,
    /// Its payload, as text.
    pub payload: String,
    /// Whether the broker delivered it as retained (sent before the watcher subscribed).
    pub retained: bool,
}

/// A client subscribed to topic filters, as Home Assistant or `mosquitto_sub` would be.
pub struct Watcher {
    client: AsyncClient,
    messages: mpsc::UnboundedReceiver<Message>,
}

impl Watcher {
    /// Connects to `broker` and subscribes to `filters` (such as `qwiic/test/#`); returns once
    /// the subscriptions are acknowledged.
    pub async fn connect(broker: &Broker, filters: &[&str]) -> Watcher {
        let id = format!("watcher-{}", fastrand::u64(..));
        let mut options = MqttOptions::new(id, "127.0.0.1", broker.port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        for filter in filters {
            client.subscribe(*filter, QoS::AtLeastOnce).await.unwrap();
        }
        let (sender, messages) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(message))) => {
                        let message = Message {
                            topic: message.topic,
                            payload: String::from_utf8_lossy(&message.payload).into_owned(),
                            retained: message.retain,
                        };
                        if sender.send(message).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        for _ in filters {
            tokio::time::timeout(Duration::from_secs(10), subscribed.recv())
                .await
                .expect("the broker did not acknowledge the subscription");
        }
        Watcher { client, messages }
    }

    /// The next message on `topic` that `wanted` accepts, within `within`; the ones before it
    /// are skipped.
    pub async fn wait_for(
        &mut self,
        topic: &str,
        within: Duration,
        mut wanted: impl FnMut(&Message) -> bool,
    ) -> Message {
        let until = tokio::time::Instant::now() + within;
        let mut skipped = Vec::new();
        loop {
            let message = tokio::time::timeout_at(until, self.messages.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("nothing wanted on {topic} within {within:?}; skipped: {skipped:#?}")
                })
                .expect("the watcher's connection task ended");
            if message.topic == topic && wanted(&message) {
                return message;
            }
            skipped.push(message);
        }
    }

    /// The last message on each of `topics` that `wanted` accepts, once there is one on each,
    /// whatever their order, within `within`.
    pub async fn wait_for_each(
        &mut self,
        topics: &[&str],
        within: Duration,
        mut wanted: impl FnMut(&Message) -> bool,
    ) -> Vec<Message> {
        let until = tokio::time::Instant::now() + within;
        let mut found: Vec<Option<Message>> = vec![None; topics.len()];
        let mut skipped = Vec::new();
        while found.iter().any(Option::is_none) {
            let message = tokio::time::timeout_at(until, self.messages.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("not all of {topics:?} within {within:?}; got {found:#?}; skipped: {skipped:#?}")
                })
                .expect("the watcher's connection task ended");
            match topics.iter().position(|topic| *topic == message.topic) {
                Some(at) if wanted(&message) => found[at] = Some(message),
                _ => skipped.push(message),
            }
        }
        found.into_iter().flatten().collect()
    }

    /// Every message, in the order of arrival, until `done` says the ones so far are enough,
    /// within `within`.
    pub async fn record_until(
        &mut self,
        within: Duration,
        mut done: impl FnMut(&[Message]) -> bool,
    ) -> Vec<Message> {
        let until = tokio::time::Instant::now() + within;
        let mut recorded = Vec::new();
        while !done(&recorded) {
            let message = tokio::time::timeout_at(until, self.messages.recv())
                .await
                .unwrap_or_else(|_| panic!("not done within {within:?}; got {recorded:#?}"))
                .expect("the watcher's connection task ended");
            recorded.push(message);
        }
        recorded
    }

    /// Every message that arrives within `within`.
    pub async fn collect(&mut self, within: Duration) -> Vec<Message> {
        let until = tokio::time::Instant::now() + within;
        let mut messages = Vec::new();
        while let Ok(Some(message)) = tokio::time::timeout_at(until, self.messages.recv()).await {
            messages.push(message);
        }
        messages
    }

    /// Publishes `payload` on `topic` with QoS 1.
    pub async fn publish(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.into())
            .await
            .unwrap();
    }
}
