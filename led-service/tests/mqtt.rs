//! The LED over MQTT, with the binary (its own simulated button, `BUS=sim`) and a real
//! Mosquitto: commands light it, its state follows every source, bad commands change nothing
//! and are logged once per burst, a broker restart is survived and the retained state comes
//! back, and a killed service shows `offline` through its last will.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::time::Duration;

use serde_json::{Value, json};
use test_kit::RunningBinary;
use test_kit::mqtt::{Broker, Watcher};

const PREFIX: &str = "qwiic/test-led";
const WAIT: Duration = Duration::from_secs(10);

fn led_service(broker: &Broker, extra: &[(&str, &str)]) -> RunningBinary {
    let url = broker.url();
    let mut env = vec![
        ("BUS", "sim"),
        ("MQTT_URL", url.as_str()),
        ("MQTT_TOPIC_PREFIX", PREFIX),
        ("RUST_LOG", "info"),
    ];
    env.extend_from_slice(extra);
    let service = RunningBinary::start(env!("CARGO_BIN_EXE_led-service"), &env);
    service.wait_for_log("ready", WAIT);
    service
}

fn topic(suffix: &str) -> String {
    format!("{PREFIX}/led/{suffix}")
}

async fn http(service: &RunningBinary, method: reqwest::Method, path: &str) -> Value {
    let address = service.address("listen", WAIT);
    reqwest::Client::new()
        .request(method, format!("http://{address}{path}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn state(message: &test_kit::mqtt::Message) -> Value {
    serde_json::from_str(&message.payload).unwrap()
}

#[tokio::test]
async fn commands_light_the_led_and_its_state_follows_every_source() {
    let broker = Broker::start();
    let mut watcher = Watcher::connect(&broker, &[&format!("{PREFIX}/#")]).await;
    let mut service = led_service(&broker, &[]);
    watcher
        .wait_for(&topic("availability"), WAIT, |m| m.payload == "online")
        .await;

    // Home Assistant turns it on at half brightness.
    watcher
        .publish(
            &topic("set"),
            r#"{"state": "ON", "brightness": 128}"#,
            false,
        )
        .await;
    let on = watcher
        .wait_for(&topic("state"), WAIT, |m| state(m)["state"] == "ON")
        .await;
    assert_eq!(state(&on)["brightness"], 128);
    let led = http(&service, reqwest::Method::GET, "/led").await;
    assert_eq!(
        (led["on"].clone(), led["brightness"].clone()),
        (json!(true), json!(128))
    );
    assert!(
        led["changed_by"].as_str().unwrap().contains("mqtt"),
        "{led}"
    );

    // "ON" alone keeps the last brightness, as a light does.
    watcher
        .publish(&topic("set"), r#"{"state": "OFF"}"#, false)
        .await;
    watcher
        .wait_for(&topic("state"), WAIT, |m| state(m)["state"] == "OFF")
        .await;
    watcher
        .publish(&topic("set"), r#"{"state": "ON"}"#, false)
        .await;
    let again = watcher
        .wait_for(&topic("state"), WAIT, |m| state(m)["state"] == "ON")
        .await;
    assert_eq!(state(&again)["brightness"], 128);

    // A change over HTTP shows on MQTT too.
    http(&service, reqwest::Method::POST, "/false").await;
    watcher
        .wait_for(&topic("state"), WAIT, |m| state(m)["state"] == "OFF")
        .await;

    // A late subscriber (Home Assistant starting) gets the state retained.
    let mut late = Watcher::connect(&broker, &[&topic("state")]).await;
    let retained = late.wait_for(&topic("state"), WAIT, |_| true).await;
    assert!(
        retained.retained && state(&retained)["state"] == "OFF",
        "{retained:?}"
    );

    // Stopped cleanly: the LED is switched off (already off), the state stays, and the
    // service says offline itself.
    http(&service, reqwest::Method::POST, "/true").await;
    watcher
        .wait_for(&topic("state"), WAIT, |m| state(m)["state"] == "ON")
        .await;
    let (status, _) = service.terminate(WAIT);
    assert!(status.success());
    watcher
        .wait_for(&topic("state"), WAIT, |m| state(m)["state"] == "OFF")
        .await;
    watcher
        .wait_for(&topic("availability"), WAIT, |m| m.payload == "offline")
        .await;
}

#[tokio::test]
async fn bad_commands_change_nothing_are_counted_and_logged_once_per_burst() {
    let broker = Broker::start();
    let mut watcher = Watcher::connect(&broker, &[&format!("{PREFIX}/#")]).await;
    let service = led_service(&broker, &[]);
    watcher
        .wait_for(&topic("availability"), WAIT, |m| m.payload == "online")
        .await;
    for bad in [
        "ON",
        r#"{"state": "ON", "brightness": 256}"#,
        r#"{"state": "ON", "color": {"r": 255}}"#,
        r#"{"state": "ON", "brightness": 0}"#,
    ] {
        watcher.publish(&topic("set"), bad, false).await;
    }
    // A good one after them is carried out: the bad ones were handled (and ignored) first.
    watcher
        .publish(&topic("set"), r#"{"state": "ON", "brightness": 9}"#, false)
        .await;
    watcher
        .wait_for(&topic("state"), WAIT, |m| state(m)["brightness"] == 9)
        .await;
    let log = service.log();
    assert_eq!(
        log.matches("that are not a light command").count(),
        1,
        "one line for the burst:\n{log}"
    );
    let address = service.address("listen", WAIT);
    let metrics = reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("led_service_mqtt_commands_rejected_total 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_broker_restart_is_survived_and_the_retained_state_is_published_again() {
    let mut broker = Broker::start();
    let mut service = led_service(&broker, &[]);
    {
        let mut watcher = Watcher::connect(&broker, &[&format!("{PREFIX}/#")]).await;
        watcher
            .wait_for(&topic("availability"), WAIT, |m| m.payload == "online")
            .await;
    }
    http(&service, reqwest::Method::POST, "/true").await;

    broker.kill();
    service.wait_for_log("the MQTT broker is not reachable", WAIT);
    // The service goes on over HTTP, healthy, and says where MQTT stands.
    let health = http(&service, reqwest::Method::GET, "/healthz").await;
    assert_eq!(health["status"], "ok", "{health}");
    assert!(
        health["mqtt"].as_str().unwrap().starts_with("down: "),
        "{health}"
    );
    let off = http(&service, reqwest::Method::POST, "/false").await;
    assert_eq!(off["on"], false);

    // The broker comes back having forgotten everything (no persistence): the link comes
    // back by itself and publishes its retained messages again, with the change made
    // meanwhile.
    broker.restart();
    service.wait_for_log("the MQTT broker answers again", Duration::from_secs(40));
    let mut watcher = Watcher::connect(&broker, &[&format!("{PREFIX}/#")]).await;
    // The broker hands retained messages over in an order of its own.
    let retained = watcher
        .wait_for_each(&[&topic("state"), &topic("availability")], WAIT, |m| {
            m.retained
        })
        .await;
    assert_eq!(state(&retained[0])["state"], "OFF");
    assert_eq!(retained[1].payload, "online");
    let log = service.log();
    assert_eq!(
        log.matches("the MQTT broker is not reachable").count(),
        1,
        "the outage is logged once:\n{log}"
    );
    let health = http(&service, reqwest::Method::GET, "/healthz").await;
    assert_eq!(health["mqtt"], "connected", "{health}");
    service.terminate(WAIT);
}

#[tokio::test]
async fn a_killed_service_shows_offline_through_its_last_will() {
    let broker = Broker::start();
    let mut watcher = Watcher::connect(&broker, &[&topic("availability")]).await;
    let mut service = led_service(&broker, &[]);
    watcher
        .wait_for(&topic("availability"), WAIT, |m| m.payload == "online")
        .await;
    service.kill();
    watcher
        .wait_for(&topic("availability"), WAIT, |m| m.payload == "offline")
        .await;
}

#[tokio::test]
async fn a_refused_password_is_logged_once_and_the_service_stays_healthy() {
    let broker = Broker::start_with_password("alice", "right");
    let service = led_service(
        &broker,
        &[("MQTT_USERNAME", "alice"), ("MQTT_PASSWORD", "wrong")],
    );
    service.wait_for_log("refused the user name or password", WAIT);
    let health = http(&service, reqwest::Method::GET, "/healthz").await;
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(
        health["mqtt"],
        "down: the broker refused the user name or password (MQTT_USERNAME, MQTT_PASSWORD)"
    );
    // The right password gets in.
    let right = led_service(
        &broker,
        &[
            ("MQTT_USERNAME", "alice"),
            ("MQTT_PASSWORD", "right"),
            ("MQTT_TOPIC_PREFIX", "qwiic/test-led-right"),
        ],
    );
    right.wait_for_log("connected to the MQTT broker", WAIT);
    assert_eq!(
        service
            .log()
            .matches("refused the user name or password")
            .count(),
        1,
        "{}",
        service.log()
    );
}

#[tokio::test]
async fn a_storm_of_home_assistant_births_is_answered_at_most_once_a_second_and_logged_once() {
    let broker = Broker::start();
    let discovery = "homeassistant/light/qwiic_test-led-storm_led/config";
    let mut watcher = Watcher::connect(&broker, &[discovery]).await;
    let service = led_service(&broker, &[("MQTT_TOPIC_PREFIX", "qwiic/test-led-storm")]);
    // The first announcement (retained), then 500 births in about a second.
    watcher
        .wait_for(discovery, WAIT, |m| !m.payload.is_empty())
        .await;
    let started = std::time::Instant::now();
    for _ in 0..500 {
        watcher
            .publish("homeassistant/status", "online", false)
            .await;
    }
    let storm = started.elapsed();
    let announcements = watcher.collect(Duration::from_secs(2)).await.len();
    let seconds = (storm + Duration::from_secs(2)).as_secs_f64();
    eprintln!("figure: 500 births in {storm:?}: announced again {announcements} times");
    assert!(
        announcements >= 1 && (announcements as f64) <= seconds + 1.0,
        "{announcements} announcements in {seconds:.1} s"
    );
    let log = service.log();
    assert_eq!(log.matches("came online").count(), 1, "{log}");
}

#[tokio::test]
async fn two_devices_left_on_one_prefix_do_not_kick_each_other_off_the_broker() {
    let broker = Broker::start();
    let prefix = ("MQTT_TOPIC_PREFIX", "qwiic/test-led-twins");
    let first = led_service(&broker, &[prefix]);
    let second = led_service(&broker, &[prefix]);
    for service in [&first, &second] {
        service.wait_for_log("connected to the MQTT broker", WAIT);
    }
    // A broker drops the older of two clients with one id at once; watch for a while.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for service in [&first, &second] {
        let log = service.log();
        assert!(!log.contains("not reachable"), "{log}");
        let health = http(service, reqwest::Method::GET, "/healthz").await;
        assert_eq!(health["mqtt"], "connected", "{health}");
    }
}

/// init_os.sh's `mosquitto_hash` on its own: the line of a Mosquitto password file it writes.
fn init_os_hash(user: &str, password: &str) -> String {
    let script = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../init_os.sh"),
    )
    .unwrap();
    let start = script.find("mosquitto_hash() {").unwrap();
    let end = start + script[start..].find("\n}\n").unwrap() + 3;
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail\n{}\nmosquitto_hash \"$1\" \"$2\"",
            &script[start..end]
        ))
        .args(["bash", user, password])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn the_brokers_password_file_init_os_makes_lets_in_that_password_only() {
    let passwords =
        std::env::temp_dir().join(format!("qwiic-init-os-passwd-{}", std::process::id()));
    std::fs::write(&passwords, init_os_hash("qwiic", "Zq8 p4ss\\word")).unwrap();
    let broker = Broker::start_with_password_file(&passwords);
    for (password, lets_in) in [("Zq8 p4ss\\word", true), ("guess", false)] {
        let led = RunningBinary::start(
            env!("CARGO_BIN_EXE_led-service"),
            &[
                ("BUS", "sim"),
                ("MQTT_URL", broker.url().as_str()),
                ("MQTT_USERNAME", "qwiic"),
                ("MQTT_PASSWORD", password),
            ],
        );
        let line = led.wait_for_log("MQTT broker", Duration::from_secs(10));
        assert_eq!(
            line.contains("connected to the MQTT broker"),
            lets_in,
            "{password}: {line}"
        );
    }
    std::fs::remove_file(passwords).unwrap();
}
