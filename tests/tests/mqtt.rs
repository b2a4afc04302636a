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
use test_kit::{Background, wait_until, wait_until_async};
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

    // Two, then three clicks within the window: one double, one triple, no single.
    for (clicks, count) in [(2, "double"), (3, "triple")] {
        for click in 1..=clicks {
            sim.click(Duration::from_millis(60));
            assert_eq!(gesture(&mut watcher, prefix).await.0, "press");
            assert_eq!(gesture(&mut watcher, prefix).await.0, "release");
            if click == clicks {
                assert_eq!(gesture(&mut watcher, prefix).await.0, count);
            }
        }
    }

    // Held: long while still held, a repeat every 200 ms, the LED lit all along; then the
    // release and long_release.
    sim.press();
    assert_eq!(gesture(&mut watcher, prefix).await.0, "press");
    assert_eq!(gesture(&mut watcher, prefix).await.0, "long");
    for _ in 0..2 {
        assert_eq!(gesture(&mut watcher, prefix).await.0, "repeat");
    }
    assert_eq!(
        sim.led().brightness,
        255,
        "the LED does not wait for gestures"
    );
    sim.release();
    let mut after = Vec::new();
    while after.last().is_none_or(|name| name != "long_release") {
        after.push(gesture(&mut watcher, prefix).await.0);
    }
    let repeats = after.iter().take_while(|name| *name == "repeat").count();
    assert_eq!(after[repeats..], ["release", "long_release"], "{after:?}");
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

/// The two parts of the device, button-service's and led-service's: their discovery topics.
fn device_topics(node: &str) -> [String; 2] {
    ["button", "led"].map(|service| format!("homeassistant/device/{node}_{service}/config"))
}

/// The single-entity discovery topics of earlier versions, handed over to the device.
fn legacy_topics(node: &str) -> [String; 3] {
    [
        ("event", "button"),
        ("binary_sensor", "pressed"),
        ("light", "led"),
    ]
    .map(|(platform, object)| format!("homeassistant/{platform}/{node}_{object}/config"))
}

/// Both parts of the device, once both have arrived: button-service's, led-service's.
async fn device_parts(watcher: &mut Watcher, node: &str) -> [Value; 2] {
    let topics = device_topics(node);
    let messages = watcher
        .wait_for_each(&[&topics[0], &topics[1]], WAIT, |m| !m.payload.is_empty())
        .await;
    [json(&messages[0]), json(&messages[1])]
}

/// The component `key` of a device part.
fn component<'a>(part: &'a Value, key: &str) -> &'a Value {
    let component = &part["components"][key];
    assert!(component.is_object(), "no component {key} in {part:#}");
    component
}

/// Every gesture a device trigger is announced for, with Home Assistant's trigger type.
const TRIGGERS: [(&str, &str); 8] = [
    ("single", "button_short_press"),
    ("double", "button_double_press"),
    ("triple", "button_triple_press"),
    ("quadruple", "button_quadruple_press"),
    ("quintuple", "button_quintuple_press"),
    ("long", "button_long_press"),
    ("repeat", "repeat"),
    ("long_release", "button_long_release"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_finds_one_device_with_the_button_its_triggers_and_the_led() {
    let (prefix, node) = ("qwiic/test-ha", "qwiic_test-ha");
    let broker = Broker::start();
    let mut watcher = Watcher::connect(&broker, &["homeassistant/#"]).await;
    let mut events = Watcher::connect(&broker, &[&format!("{prefix}/button/event")]).await;
    let sim = SimButton::new();
    let system = System::start(&sim, &broker, prefix, &[]).await;
    let [button, led] = device_parts(&mut watcher, node).await;

    // What Home Assistant's device-based discovery reads (its MQTT documentation): the one
    // device and the origin in both parts, each component under its unique id.
    assert_eq!(button["device"], led["device"], "one device");
    let device = &button["device"];
    assert_eq!(device["identifiers"][0], node);
    assert_eq!(device["manufacturer"], "SparkFun");
    assert_eq!(device["model"], "Qwiic Button");
    assert_eq!(device["sw_version"], "1.3", "the button's firmware");
    for part in [&button, &led] {
        assert_eq!(part["origin"]["name"], "qwiic-containers", "{part:#}");
        assert!(part["origin"]["sw_version"].is_string(), "{part:#}");
        let keys: Vec<&String> = part["components"].as_object().unwrap().keys().collect();
        assert!(keys.iter().all(|key| key.starts_with(node)), "{keys:?}");
    }

    // The entities: available while the service is and the button answers it.
    for (part, key, platform) in [
        (&button, format!("{node}_button"), "event"),
        (&button, format!("{node}_pressed"), "binary_sensor"),
        (&led, format!("{node}_led"), "light"),
    ] {
        let entity = component(part, &key);
        let context = format!("{key}: {entity:#}");
        assert_eq!(entity["platform"], platform, "{context}");
        assert_eq!(entity["unique_id"], key.as_str(), "{context}");
        assert_eq!(
            entity["default_entity_id"],
            format!("{platform}.{key}"),
            "{context}"
        );
        assert!(
            entity["state_topic"].as_str().unwrap().starts_with(prefix),
            "{context}"
        );
        assert_eq!(entity["availability_mode"], "all", "{context}");
        let topics: Vec<&str> = entity["availability"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["topic"].as_str().unwrap())
            .collect();
        let service = if platform == "light" { "led" } else { "button" };
        assert_eq!(
            topics,
            [
                format!("{prefix}/{service}/availability"),
                format!("{prefix}/{service}/device")
            ],
            "{context}"
        );
        for topic in topics {
            let mut late = Watcher::connect(&broker, &[topic]).await;
            late.wait_for(topic, WAIT, |m| m.retained && m.payload == "online")
                .await;
        }
    }

    let event = component(&button, &format!("{node}_button"));
    let types: Vec<&str> = event["event_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "press",
            "release",
            "single",
            "double",
            "triple",
            "quadruple",
            "quintuple",
            "long",
            "repeat",
            "long_release"
        ]
    );
    assert_eq!(event["device_class"], "button");

    let pressed = component(&button, &format!("{node}_pressed"));
    assert_eq!(
        (
            pressed["payload_on"].as_str(),
            pressed["payload_off"].as_str()
        ),
        (Some("pressed"), Some("released"))
    );

    // A device trigger per gesture, before any press (Home Assistant's MQTT device trigger:
    // the rendered value_template is compared with payload; type and subtype unique).
    for (gesture, kind) in TRIGGERS {
        let trigger = component(&button, &format!("{node}_trigger_{gesture}"));
        let context = format!("{gesture}: {trigger:#}");
        assert_eq!(trigger["platform"], "device_automation", "{context}");
        assert_eq!(trigger["automation_type"], "trigger", "{context}");
        assert_eq!(trigger["topic"], event["state_topic"], "{context}");
        assert_eq!(
            trigger["value_template"], "{{ value_json.event }}",
            "{context}"
        );
        assert_eq!(trigger["payload"], gesture, "{context}");
        assert_eq!(trigger["type"], kind, "{context}");
        assert_eq!(trigger["subtype"], "button_1", "{context}");
        assert!(trigger.get("unique_id").is_none(), "{context}");
    }
    // A click fires the single trigger: its topic carries a message whose value is its payload.
    sim.click(Duration::from_millis(60));
    events
        .wait_for(&format!("{prefix}/button/event"), WAIT, |m| {
            json(m)["event"] == "single"
        })
        .await;

    let light = component(&led, &format!("{node}_led"));
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
    let led_now = sim.clone();
    wait_until("the LED at 200", WAIT, move || {
        led_now.led().brightness == 200
    })
    .await;

    // Diagnostics: a sensor per number, read from the service's diagnostics message; the
    // LED's change just now shows in its EEPROM bytes.
    for (part, service, keys) in [
        (&button, "button", ["bus_errors", "rejected_readings"]),
        (&led, "led", ["eeprom_byte_writes", "wear_budget_spent"]),
    ] {
        let topic = format!("{prefix}/{service}/diagnostics");
        for key in keys {
            let sensor = component(part, &format!("{node}_{key}"));
            let context = format!("{key}: {sensor:#}");
            assert_eq!(sensor["platform"], "sensor", "{context}");
            assert_eq!(sensor["entity_category"], "diagnostic", "{context}");
            assert_eq!(sensor["state_topic"], topic.as_str(), "{context}");
            assert_eq!(
                sensor["value_template"],
                format!("{{{{ value_json.{key} }}}}"),
                "{context}"
            );
        }
        let mut diagnostics = Watcher::connect(&broker, &[&topic]).await;
        diagnostics
            .wait_for(&topic, WAIT, |m| {
                let values = json(m);
                keys.iter().all(|key| values[key].is_number())
                    && (service == "button" || values["eeprom_byte_writes"].as_u64() > Some(0))
            })
            .await;
    }
    let wear = component(&led, &format!("{node}_wear_budget_spent"));
    assert_eq!(wear["unit_of_measurement"], "%");
    assert_eq!(wear["state_class"], "measurement");
    let errors = component(&button, &format!("{node}_bus_errors"));
    assert_eq!(errors["state_class"], "total_increasing");

    // Home Assistant restarting announces itself: everything is announced again.
    watcher
        .publish("homeassistant/status", "online", false)
        .await;
    let again = watcher
        .wait_for(&device_topics(node)[1], WAIT, |m| {
            !m.retained && !m.payload.is_empty()
        })
        .await;
    assert!(json(&again)["components"][format!("{node}_led")].is_object());
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lights_effects_reach_the_buttons_pulse_registers_and_a_flash_ends_where_it_began() {
    let (prefix, node) = ("qwiic/test-effects", "qwiic_test-effects");
    let broker = Broker::start();
    let mut watcher = Watcher::connect(&broker, &["homeassistant/#"]).await;
    let state_topic = format!("{prefix}/led/state");
    let mut states = Watcher::connect(&broker, &[&state_topic]).await;
    let sim = SimButton::new();
    let system = System::start(&sim, &broker, prefix, &[]).await;
    let [_, led] = device_parts(&mut watcher, node).await;
    let light = component(&led, &format!("{node}_led"));
    assert_eq!(light["effect"], true);
    assert_eq!(
        light["effect_list"],
        serde_json::json!(["steady", "pulse", "breathe", "blink"])
    );
    assert_eq!(light["flash"], true);
    assert_eq!(light["transition"], false);
    let set = light["command_topic"].as_str().unwrap();

    // Each effect is the firmware's pulse: cycle, off time, granularity, as effects.rs says.
    for (effect, cycle, off, granularity) in [
        ("pulse", 1000, 500, 1),
        ("breathe", 4000, 0, 1),
        ("blink", 200, 300, 255),
    ] {
        let command = format!(r#"{{"state": "ON", "brightness": 100, "effect": "{effect}"}}"#);
        watcher.publish(set, command, false).await;
        let led_now = sim.clone();
        wait_until(effect, WAIT, move || {
            let led = led_now.led();
            (
                led.brightness,
                led.cycle_time_ms,
                led.off_time_ms,
                led.granularity,
            ) == (100, cycle, off, granularity)
        })
        .await;
        states
            .wait_for(&state_topic, WAIT, |m| json(m)["effect"] == effect)
            .await;
    }

    // Steady at 60 (the effect named: without one the blink would go on at 60), then a 1 s
    // flash: blinking, then steady at 60 again.
    watcher
        .publish(
            set,
            r#"{"state": "ON", "brightness": 60, "effect": "steady"}"#,
            false,
        )
        .await;
    states
        .wait_for(&state_topic, WAIT, |m| {
            let state = json(m);
            state["brightness"] == 60 && state["effect"] == "steady"
        })
        .await;
    watcher
        .publish(set, r#"{"state": "ON", "flash": 1}"#, false)
        .await;
    states
        .wait_for(&state_topic, WAIT, |m| json(m)["effect"] == "blink")
        .await;
    states
        .wait_for(&state_topic, WAIT, |m| {
            let state = json(m);
            state["brightness"] == 60 && state["effect"] == "steady"
        })
        .await;
    let led_now = sim.led();
    assert_eq!((led_now.brightness, led_now.cycle_time_ms), (60, 0));
    system.stop().await;
}

/// The value of the metric whose name ends in `name` on the service whose /healthz is `health`.
async fn metric(health: &str, name: &str) -> f64 {
    let url = health.replace("/healthz", "/metrics");
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (metric, value) = line.split_once(' ')?;
            metric.ends_with(name).then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gestures_made_while_the_broker_is_down_arrive_after_it_returns_in_order_and_as_made() {
    let prefix = "qwiic/test-outbox";
    let topic = format!("{prefix}/button/event");
    let mut broker = Broker::start();
    let sim = SimButton::new();
    let system = System::start(&sim, &broker, prefix, &[]).await;
    let button = system.health[1].clone();

    broker.kill();
    let down = button.clone();
    wait_until_async("button-service seeing the broker gone", WAIT, move || {
        let down = down.clone();
        async move { metric(&down, "mqtt_connection_failures_total").await >= 1.0 }
    })
    .await;
    let made = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    for _ in 0..3 {
        let before = metric(&button, "mqtt_outbox_waiting").await;
        sim.click(Duration::from_millis(60));
        let waiting = button.clone();
        wait_until_async("the click's gestures in the outbox", WAIT, move || {
            let waiting = waiting.clone();
            async move { metric(&waiting, "mqtt_outbox_waiting").await >= before + 3.0 }
        })
        .await;
    }
    // The next failed attempt from the third on: the one after it is at least 3.2 s away (4 s,
    // less 20% jitter), time enough to subscribe to the restarted broker before
    // button-service is back.
    let after = metric(&button, "mqtt_connection_failures_total")
        .await
        .max(2.0);
    let failures = button.clone();
    wait_until_async("one more failed connection attempt", WAIT, move || {
        let failures = failures.clone();
        async move { metric(&failures, "mqtt_connection_failures_total").await > after }
    })
    .await;
    broker.restart();
    let mut watcher = Watcher::connect(&broker, &[&topic]).await;
    let mut seen = Vec::new();
    for _ in 0..9 {
        let message = watcher.wait_for(&topic, WAIT, |_| true).await;
        let event = json(&message);
        let at = event["at"].as_str().unwrap().to_owned();
        assert!(at >= made, "made during the outage: {event}");
        seen.push((
            event["event"].as_str().unwrap().to_owned(),
            event["seq"].as_u64().unwrap(),
        ));
    }
    let names: Vec<&str> = seen.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["press", "release", "single"].repeat(3));
    assert!(
        seen.windows(2).all(|pair| pair[1].1 == pair[0].1 + 1),
        "in order, none missing: {seen:?}"
    );
    assert_eq!(metric(&button, "mqtt_outbox_dropped_total").await, 0.0);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplugged_button_makes_both_services_entities_unavailable_until_it_is_back() {
    let prefix = "qwiic/test-unplug";
    let broker = Broker::start();
    let topics = ["button", "led"].map(|service| format!("{prefix}/{service}/device"));
    let mut watcher = Watcher::connect(&broker, &[&topics[0], &topics[1]]).await;
    let sim = SimButton::new();
    let system = System::start(&sim, &broker, prefix, &[]).await;
    for (state, change) in [
        ("online", None),
        ("offline", Some(SimButton::unplug as fn(&SimButton))),
        ("online", Some(SimButton::replug as fn(&SimButton))),
    ] {
        if let Some(change) = change {
            change(&sim);
        }
        // led-service looks at least every 5 s while nothing else asks.
        watcher
            .wait_for_each(&[&topics[0], &topics[1]], WAIT, |m| m.payload == state)
            .await;
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_entity_configs_of_earlier_versions_are_handed_over_to_the_device() {
    let (prefix, node) = ("qwiic/test-migrate", "qwiic_test-migrate");
    let broker = Broker::start();
    let legacy = legacy_topics(node);
    // What an earlier version left retained on the broker.
    let seeder = Watcher::connect(&broker, &[]).await;
    for topic in &legacy {
        seeder.publish(topic, r#"{"name": "old"}"#, true).await;
    }
    let mut watcher = Watcher::connect(&broker, &["homeassistant/#"]).await;
    // Retained, or live if the broker had not stored them yet when the watcher subscribed.
    let legacy_refs: Vec<&str> = legacy.iter().map(String::as_str).collect();
    watcher
        .wait_for_each(&legacy_refs, WAIT, |m| m.payload.contains("old"))
        .await;
    let sim = SimButton::new();
    let system = System::start(&sim, &broker, prefix, &[]).await;
    // Home Assistant's documented order, per old topic: migrate_discovery, then the device's
    // message (the same unique ids), then an empty message that removes the old one.
    let devices = device_topics(node);
    let removed = |m: &Message| !m.retained && m.payload.is_empty();
    let recorded = watcher
        .record_until(WAIT, |so_far| {
            legacy
                .iter()
                .all(|topic| so_far.iter().any(|m| m.topic == *topic && removed(m)))
        })
        .await;
    let position = |wanted: &dyn Fn(&Message) -> bool| {
        recorded
            .iter()
            .position(wanted)
            .unwrap_or_else(|| panic!("not found in {recorded:#?}"))
    };
    for (topic, device) in legacy.iter().zip([&devices[0], &devices[0], &devices[1]]) {
        let migrate = position(&|m| {
            m.topic == *topic
                && !m.payload.is_empty()
                && json(m) == serde_json::json!({"migrate_discovery": true})
        });
        let announced = position(&|m| m.topic == *device && !m.payload.is_empty());
        let emptied = position(&|m| m.topic == *topic && removed(m));
        assert!(
            migrate < announced && announced < emptied,
            "{topic}: migrate {migrate}, device {announced}, empty {emptied}"
        );
    }
    // Afterwards the broker holds the two parts of the device and nothing on the old topics.
    let mut late = Watcher::connect(&broker, &["homeassistant/#"]).await;
    let left = late.collect(Duration::from_millis(500)).await;
    let mut topics: Vec<&str> = left.iter().map(|m| m.topic.as_str()).collect();
    topics.sort_unstable();
    assert_eq!(topics, [devices[0].as_str(), devices[1].as_str()]);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_discovery_turned_off_what_was_announced_is_removed() {
    let (prefix, node) = ("qwiic/test-removal", "qwiic_test-removal");
    let broker = Broker::start();
    let mut watcher = Watcher::connect(&broker, &["homeassistant/#"]).await;
    let sim = SimButton::new();
    let system = System::start(&sim, &broker, prefix, &[]).await;
    device_parts(&mut watcher, node).await;
    system.stop().await;

    let system = System::start(&sim, &broker, prefix, &["--ha-discovery=false"]).await;
    let topics = device_topics(node);
    watcher
        .wait_for_each(&[&topics[0], &topics[1]], WAIT, |m| m.payload.is_empty())
        .await;
    // Nothing retained is left for Home Assistant to find.
    let mut late = Watcher::connect(&broker, &["homeassistant/#"]).await;
    let left = late.collect(Duration::from_millis(500)).await;
    assert!(left.is_empty(), "{left:?}");
    system.stop().await;
}
