//! Both services on one simulated button, with a real Mosquitto: presses arrive as gestures,
//! Home Assistant finds one device with the button, its pressed state and the LED, and
//! discovery turned off removes what was announced. (led-service/tests/mqtt.rs covers the LED's
//! commands, broker restarts and last wills with the binary.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::time::Duration;

use clap::Parser as _;
use qwiic_bus::Bus;
use qwiic_sim::SimButton;
use serde_json::Value;
use service_kit::CancellationToken;
use test_kit::mqtt::{Broker, Message, Watcher};
use test_kit::{Background, wait_until};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(10);

/// led-service and button-service on `sim`, both on `broker` under `prefix`.
struct System {
    led: Background<std::io::Result<()>>,
    button: Background<Result<(), button_service::RunError>>,
    /// Their /healthz.
    health: [String; 2],
}

impl System {
    async fn start(sim: &SimButton, broker: &Broker, prefix: &str, flags: &[&str]) -> System {
        let mqtt = [
            format!("--mqtt-url={}", broker.url()),
            format!("--mqtt-topic-prefix={prefix}"),
        ];
        let common: Vec<&str> = ["--bus=sim"]
            .into_iter()
            .chain(mqtt.iter().map(String::as_str))
            .chain(flags.iter().copied())
            .collect();
        let led_cli = led_service::config::Cli::parse_from(
            ["led-service"].into_iter().chain(common.iter().copied()),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let led_address = listener.local_addr().unwrap();
        let led_url = format!("--led-url=http://{led_address}");
        let led_health = format!("http://{led_address}/healthz");
        let bus = Bus::Sim(sim.clone());
        let led = Background::spawn(|shutdown| {
            let state = led_service::AppState::start(
                bus,
                &led_cli.config.resolve().unwrap(),
                shutdown.clone(),
            )
            .unwrap();
            led_service::run(listener, state, shutdown)
        });
        let button_cli = button_service::config::Cli::parse_from(
            ["button-service", "--poll-interval=10ms", led_url.as_str()]
                .into_iter()
                .chain(common.iter().copied()),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let button_health = format!("http://{}/healthz", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let service = button_service::Service::start(
            Bus::Sim(sim.clone()),
            &button_cli.config.resolve().unwrap(),
            shutdown.clone(),
        )
        .unwrap();
        let button = Background::new(
            shutdown.clone(),
            button_service::run(listener, service, shutdown),
        );
        let system = System {
            led,
            button,
            health: [led_health, button_health],
        };
        system.wait_ready().await;
        system
    }

    /// Waits until both services have found the button and connected to the broker: a press
    /// before the button service's first reading is not a press it saw.
    async fn wait_ready(&self) {
        for url in &self.health {
            let until = tokio::time::Instant::now() + WAIT;
            loop {
                let health: Option<Value> = match reqwest::get(url).await {
                    Ok(response) => response.json().await.ok(),
                    Err(_) => None,
                };
                let ready = health.as_ref().is_some_and(|health| {
                    health["status"] == "ok" && health["mqtt"] == "connected"
                });
                if ready {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < until,
                    "{url} not ready: {health:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    async fn stop(self) {
        self.button.stop().await.unwrap();
        self.led.stop().await.unwrap();
    }
}

fn json(message: &Message) -> Value {
    serde_json::from_str(&message.payload).unwrap_or_else(|error| {
        panic!(
            "{} is not JSON ({error}): {}",
            message.topic, message.payload
        )
    })
}

/// The next gesture on `<prefix>/button/event`: its name and sequence number.
async fn gesture(watcher: &mut Watcher, prefix: &str) -> (String, u64) {
    let message = watcher
        .wait_for(&format!("{prefix}/button/event"), WAIT, |_| true)
        .await;
    let event = json(&message);
    assert_eq!(event["event_type"], event["event"], "{event}");
    assert!(
        humantime::parse_rfc3339(event["at"].as_str().unwrap()).is_ok(),
        "{event}"
    );
    (
        event["event"].as_str().unwrap().to_owned(),
        event["seq"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presses_arrive_as_gestures_and_the_led_still_follows_at_once() {
    let prefix = "qwiic/test-gestures";
    let broker = Broker::start();
    let mut watcher = Watcher::connect(&broker, &[&format!("{prefix}/button/event")]).await;
    let mut states = Watcher::connect(&broker, &[&format!("{prefix}/button/state")]).await;
    let sim = SimButton::new();
    let system = System::start(&sim, &broker, prefix, &[]).await;

    // A click: press and release at once, single once the double-press window has closed.
    sim.click(Duration::from_millis(60));
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(gesture(&mut watcher, prefix).await);
    }
    let names: Vec<&str> = seen.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["press", "release", "single"]);
    assert!(
        seen.windows(2).all(|pair| pair[1].1 == pair[0].1 + 1),
        "numbered without gaps: {seen:?}"
    );
    for level in ["pressed", "released"] {
        states
            .wait_for(&format!("{prefix}/button/state"), WAIT, |m| {
                m.payload == level
            })
            .await;
    }

    // Two clicks within the window: one double, no single.
    sim.click(Duration::from_millis(60));
    assert_eq!(gesture(&mut watcher, prefix).await.0, "press");
    assert_eq!(gesture(&mut watcher, prefix).await.0, "release");
    sim.click(Duration::from_millis(60));
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(gesture(&mut watcher, prefix).await.0);
    }
    assert_eq!(names, ["press", "release", "double"]);

    // Held: long while still held, and the LED lit all along.
    sim.press();
    assert_eq!(gesture(&mut watcher, prefix).await.0, "press");
    assert_eq!(gesture(&mut watcher, prefix).await.0, "long");
    assert_eq!(
        sim.led().brightness,
        255,
        "the LED does not wait for gestures"
    );
    sim.release();
    assert_eq!(gesture(&mut watcher, prefix).await.0, "release");
    let led = sim.clone();
    wait_until("the LED dark again", WAIT, move || {
        led.led().brightness == 0
    })
    .await;

    // A late subscriber gets the level, retained.
    let mut late = Watcher::connect(&broker, &[&format!("{prefix}/button/state")]).await;
    let level = late
        .wait_for(&format!("{prefix}/button/state"), WAIT, |_| true)
        .await;
    assert!(level.retained && level.payload == "released", "{level:?}");
    system.stop().await;
}

/// The button's three Home Assistant entities: component and object id.
const ENTITIES: [(&str, &str); 3] = [
    ("event", "button"),
    ("binary_sensor", "pressed"),
    ("light", "led"),
];

/// The discovery config topics of `node`'s entities.
fn config_topics(node: &str) -> Vec<String> {
    ENTITIES
        .iter()
        .map(|(component, object)| format!("homeassistant/{component}/{node}_{object}/config"))
        .collect()
}

/// The discovery configs, in the order of [`ENTITIES`], once all three have arrived.
async fn configs(watcher: &mut Watcher, node: &str) -> Vec<(String, Value)> {
    let topics = config_topics(node);
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let messages = watcher
        .wait_for_each(&topics, WAIT, |m| !m.payload.is_empty())
        .await;
    ENTITIES
        .iter()
        .zip(messages)
        .map(|((component, _), message)| ((*component).to_owned(), json(&message)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_finds_one_device_with_the_button_its_pressed_state_and_the_led() {
    let (prefix, node) = ("qwiic/test-ha", "qwiic_test-ha");
    let broker = Broker::start();
    let mut watcher = Watcher::connect(&broker, &["homeassistant/#"]).await;
    let sim = SimButton::new();
    let system = System::start(&sim, &broker, prefix, &[]).await;
    let configs = configs(&mut watcher, node).await;

    // What Home Assistant's MQTT discovery reads (its documentation, per platform).
    let device = &configs[0].1["device"];
    for (component, config) in &configs {
        let context = format!("{component}: {config:#}");
        assert_eq!(&config["device"], device, "one device: {context}");
        let unique_id = config["unique_id"].as_str().unwrap();
        assert!(unique_id.starts_with(node), "{context}");
        assert_eq!(
            config["default_entity_id"],
            format!("{component}.{unique_id}"),
            "{context}"
        );
        assert_eq!(config["origin"]["name"], "qwiic-containers", "{context}");
        assert!(config["origin"]["sw_version"].is_string(), "{context}");
        assert!(
            config["state_topic"].as_str().unwrap().starts_with(prefix),
            "{context}"
        );
        // Each names its service's availability topic, where that service says online.
        let availability = config["availability"][0]["topic"].as_str().unwrap();
        let mut late = Watcher::connect(&broker, &[availability]).await;
        late.wait_for(availability, WAIT, |m| m.retained && m.payload == "online")
            .await;
    }
    assert_eq!(device["identifiers"][0], node);
    assert_eq!(device["manufacturer"], "SparkFun");
    assert_eq!(device["model"], "Qwiic Button");
    assert_eq!(device["sw_version"], "1.3", "the button's firmware");

    let event = &configs[0].1;
    let types: Vec<&str> = event["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for wanted in ["single", "double", "long"] {
        assert!(types.contains(&wanted), "{types:?}");
    }
    assert_eq!(event["device_class"], "button");

    let pressed = &configs[1].1;
    assert_eq!(
        (
            pressed["payload_on"].as_str(),
            pressed["payload_off"].as_str()
        ),
        (Some("pressed"), Some("released"))
    );

    let light = &configs[2].1;
    assert_eq!(light["schema"], "json");
    assert_eq!(
        light["supported_color_modes"],
        serde_json::json!(["brightness"])
    );
    assert_eq!(light["brightness"], true);
    assert_eq!(light["brightness_scale"], 255);
    // Its command topic drives the LED.
    watcher
        .publish(
            light["command_topic"].as_str().unwrap(),
            r#"{"state": "ON", "brightness": 200}"#,
            false,
        )
        .await;
    let led = sim.clone();
    wait_until("the LED at 200", WAIT, move || led.led().brightness == 200).await;

    // Home Assistant restarting announces itself: everything is announced again.
    watcher
        .publish("homeassistant/status", "online", false)
        .await;
    let again = watcher
        .wait_for(
            &format!("homeassistant/light/{node}_led/config"),
            WAIT,
            |m| !m.retained && !m.payload.is_empty(),
        )
        .await;
    assert_eq!(json(&again)["unique_id"], format!("{node}_led"));
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_discovery_turned_off_what_was_announced_is_removed() {
    let (prefix, node) = ("qwiic/test-removal", "qwiic_test-removal");
    let broker = Broker::start();
    let mut watcher = Watcher::connect(&broker, &["homeassistant/#"]).await;
    let sim = SimButton::new();
    let system = System::start(&sim, &broker, prefix, &[]).await;
    configs(&mut watcher, node).await;
    system.stop().await;

    let system = System::start(&sim, &broker, prefix, &["--ha-discovery=false"]).await;
    let topics = config_topics(node);
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    watcher
        .wait_for_each(&topics, WAIT, |m| m.payload.is_empty())
        .await;
    // Nothing retained is left for Home Assistant to find.
    let mut late = Watcher::connect(&broker, &["homeassistant/#"]).await;
    let left = late.collect(Duration::from_millis(500)).await;
    assert!(left.is_empty(), "{left:?}");
    system.stop().await;
}
