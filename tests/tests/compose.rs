//! The whole system in real containers, simulator mode, as `docker compose up` runs it:
//! images from scripts/build-images, the project's compose files, the Docker engine.
//! Every test brings up its own project on its own ports and removes it when done.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod code_settings;
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use support::{Compose, Stack, devices, root, run};

#[tokio::test]
async fn up_press_release_hardening_and_down() {
    // Every service healthy is the behaviour (Stack::up waits for it, bounded); how fast is a
    // figure, which the benchmark measures (a second build on the same two cores made Compose
    // v1 take 12 s here, against 3 s on a quiet machine).
    let (stack, up) = Stack::up("basic");
    eprintln!("figure: up and healthy in {up:?}");

    stack.simulator("/api/press").await;
    stack.wait_brightness(255, Duration::from_secs(2)).await;
    let led = stack.get(stack.led_port(), "/led").await.unwrap();
    assert_eq!(led["on"], true);
    assert!(
        led["changed_by"]
            .as_str()
            .unwrap()
            .contains("button-service"),
        "{led}"
    );
    stack.simulator("/api/release").await;
    stack.wait_brightness(0, Duration::from_secs(2)).await;

    for service in ["led", "button", "simulator"] {
        assert_eq!(
            stack.inspect(service, "{{.Config.User}}"),
            "65532:65532",
            "{service}"
        );
        assert_eq!(
            stack.inspect(service, "{{.HostConfig.ReadonlyRootfs}}"),
            "true",
            "{service}"
        );
        assert_eq!(
            stack.inspect(service, "{{.HostConfig.Privileged}}"),
            "false",
            "{service}"
        );
        assert_eq!(
            stack.inspect(service, "{{.HostConfig.CapDrop}}"),
            "[ALL]",
            "{service}"
        );
        assert_eq!(
            stack.inspect(service, "{{.HostConfig.SecurityOpt}}"),
            "[no-new-privileges:true]",
            "{service}"
        );
        assert_eq!(
            stack.inspect(service, "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}"),
            "33554432 64",
            "{service}: 32 MiB and 64 tasks at most"
        );
        // The process itself runs as 65532, as the kernel sees it.
        let pid = stack.inspect(service, "{{.State.Pid}}");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = status
            .lines()
            .find(|line| line.starts_with("Uid:"))
            .unwrap();
        assert!(
            uid.split_whitespace().skip(1).all(|id| id == "65532"),
            "{service}: {uid}"
        );
    }
    // Only the LED API and the simulator page are published; the button has no host port.
    assert_eq!(
        stack.inspect("button", "{{len .NetworkSettings.Ports}}"),
        "1"
    );
    assert_eq!(
        stack.inspect(
            "button",
            "{{range $p, $b := .NetworkSettings.Ports}}{{$b}}{{end}}"
        ),
        "[]"
    );

    // The simulator's page and control API have no token: this machine only.
    assert_eq!(
        stack.inspect(
            "simulator",
            "{{range $p, $b := .HostConfig.PortBindings}}{{range $b}}{{.HostIp}}{{end}}{{end}}"
        ),
        "127.0.0.1"
    );

    let started = Instant::now();
    run(stack.compose().args(["down", "-t", "10"]));
    let down = started.elapsed();
    eprintln!("figure: down in {down:?}");
    // Measured 1.6-1.9 s (the README's figure); the bound proves "well before the 10 s SIGKILL".
    assert!(down < Duration::from_secs(5), "compose down took {down:?}");
}

#[tokio::test]
async fn the_button_rides_out_a_crashed_and_a_killed_led_container() {
    let (stack, _) = Stack::up("led-faults");
    stack.simulator("/api/press").await;
    stack.wait_brightness(255, Duration::from_secs(2)).await;

    // The LED process exits under the engine's feet (SIGTERM from outside, not `docker stop`):
    // it switches the LED off on its way out, the restart policy brings the container back,
    // and the button service lights the LED again.
    stack.wait_log_count("led", "led-service ready", 1, Duration::from_secs(10));
    let pid = stack.inspect("led", "{{.State.Pid}}");
    run(Command::new("kill").args(["-TERM", &pid]));
    let until = Instant::now() + Duration::from_secs(10);
    while stack.inspect("led", "{{.RestartCount}}") != "1"
        || stack.inspect("led", "{{.State.Status}}") != "running"
    {
        assert!(
            Instant::now() < until,
            "the restart policy did not restart the led container"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let restarted = Instant::now();
    stack.forget_ports(); // the restart published the LED API on another port
    assert!(
        stack.logs("led").contains("LED switched off"),
        "{}",
        stack.logs("led")
    );
    stack.wait_brightness(255, Duration::from_secs(5)).await;
    let lit = restarted.elapsed();
    eprintln!("figure: LED lit again {lit:?} after the restart");
    assert!(lit < Duration::from_secs(3), "{lit:?}");

    // The button service may have met the restart too (it checks /healthz every second): that
    // outage, if it saw one, has ended in its log before the next one starts.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = stack.logs("button");
        let began = logs.matches("the LED service is not answering").count();
        if began == logs.matches("the LED service answers again").count() {
            break;
        }
        assert!(
            Instant::now() < until,
            "the restart's outage never ended:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // `docker kill` (SIGKILL): the engine counts it as a manual stop, so nothing restarts it.
    // The button is released during the outage; the button service keeps polling, logs ONE
    // outage, and delivers the latest state (off) as soon as the LED service is back.
    let mark = stack.log_mark("button");
    stack.docker("kill", "led");
    stack.simulator("/api/release").await;
    let until = Instant::now() + Duration::from_secs(10);
    while !stack
        .logs_after("button", &mark)
        .contains("the LED service is not answering")
    {
        assert!(
            Instant::now() < until,
            "no outage logged:\n{}",
            stack.logs("button")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // a few seconds of outage: still one line
    let logs = stack.logs_after("button", &mark);
    assert_eq!(
        logs.matches("the LED service is not answering").count(),
        1,
        "{logs}"
    );
    assert_eq!(stack.inspect("button", "{{.State.Status}}"), "running");
    assert_eq!(
        stack.inspect("button", "{{.RestartCount}}"),
        "0",
        "the button never died"
    );
    assert_eq!(
        stack.brightness().await,
        Some(255),
        "nobody could switch it off yet"
    );

    stack.docker("start", "led");
    let healed = stack.wait_brightness(0, Duration::from_secs(10)).await;
    eprintln!("figure: latest state delivered {healed:?} after docker start");
    // The LED shows the state before the button service has its answer: wait for the line.
    let until = Instant::now() + Duration::from_secs(5);
    while !stack
        .logs_after("button", &mark)
        .contains("the LED service answers again")
    {
        assert!(Instant::now() < until, "{}", stack.logs("button"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = stack.logs_after("button", &mark);
    assert_eq!(
        logs.matches("the LED service answers again").count(),
        1,
        "{logs}"
    );
    assert!(!logs.contains("panicked") && !stack.logs("led").contains("panicked"));
}

/// Waits for a health check of `service` that started after `since` (seconds since the
/// epoch), and says whether it passed.
fn next_health_check_passes(stack: &Stack, service: &str, since: i64) -> bool {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let log = stack.inspect(
            service,
            "{{range .State.Health.Log}}{{.Start.Unix}} {{.ExitCode}};{{end}}",
        );
        let checks: Vec<(i64, i64)> = log
            .split(';')
            .filter_map(|entry| {
                let (start, code) = entry.split_once(' ')?;
                Some((start.parse().ok()?, code.parse().ok()?))
            })
            .collect();
        if let Some((_, code)) = checks.iter().find(|(start, _)| *start > since) {
            return *code == 0;
        }
        assert!(
            Instant::now() < until,
            "no health check of {service}: {log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn without_the_simulator_both_services_stay_healthy_say_why_and_recover() {
    let (stack, _) = Stack::up("sim-down");
    stack.docker("stop", "simulator");
    let health = stack
        .wait_status("led", "degraded", Duration::from_secs(20))
        .await;
    assert!(
        health["button"]
            .as_str()
            .unwrap()
            .contains("tcp://simulator:7070"),
        "{health}"
    );
    // Serving, so healthy: a restart would not bring the bus back.
    let since = now_unix();
    for service in ["led", "button"] {
        assert!(
            next_health_check_passes(&stack, service, since),
            "{service} failed its health check while serving\n{}",
            stack.logs(service)
        );
    }

    stack.docker("start", "simulator");
    stack.wait_health("simulator", "healthy", Duration::from_secs(20));
    for service in ["led", "button"] {
        stack
            .wait_status(service, "ok", Duration::from_secs(20))
            .await;
    }
    stack.simulator("/api/press").await;
    stack.wait_brightness(255, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn up_with_the_button_unplugged_then_plugging_it_in_needs_no_command() {
    let (stack, _) = Stack::up("unplugged");
    stack.simulator("/api/unplug").await;
    // Both services start while the button is missing ...
    run(stack.compose().args([
        "up",
        "-d",
        "--no-build",
        "--no-deps",
        "--force-recreate",
        "led",
        "button",
    ]));
    stack.forget_containers();
    for service in ["led", "button"] {
        stack.wait_health(service, "healthy", Duration::from_secs(30));
    }
    for service in ["led", "button"] {
        let health = stack
            .wait_status(service, "degraded", Duration::from_secs(10))
            .await;
        assert!(
            health["button"]
                .as_str()
                .unwrap()
                .contains("no Qwiic Button"),
            "{service}: {health}"
        );
        let gauge = format!("{service}_service_i2c_button_answering");
        stack
            .wait_metric(service, &gauge, Duration::from_secs(5), |value| {
                value == 0.0
            })
            .await;
    }
    // ... and find it by themselves once it is plugged in (a press from before they found it
    // again is one nobody waited for).
    stack.simulator("/api/replug").await;
    for service in ["led", "button"] {
        stack
            .wait_status(service, "ok", Duration::from_secs(10))
            .await;
        let gauge = format!("{service}_service_i2c_button_answering");
        stack
            .wait_metric(service, &gauge, Duration::from_secs(5), |value| {
                value == 1.0
            })
            .await;
    }
    stack.simulator("/api/press").await;
    stack.wait_brightness(255, Duration::from_secs(10)).await;
    stack.simulator("/api/release").await;
    stack.wait_brightness(0, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn with_the_button_service_stopped_curl_lights_the_led() {
    let (stack, _) = Stack::up("manual");
    stack.docker("stop", "button");
    let output = run(Command::new("curl").args([
        "-s",
        "-X",
        "POST",
        &format!("localhost:{}/true", stack.led_port()),
    ]));
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["on"], true, "{body}");
    stack.wait_brightness(255, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn with_both_services_running_a_led_set_by_hand_stays_set_until_the_next_press() {
    let (stack, _) = Stack::up("by-hand");
    let checks = stack.metric("button", "button_service_checks_total").await;
    let output = run(Command::new("curl").args([
        "-s",
        "-X",
        "POST",
        &format!("localhost:{}/true", stack.led_port()),
    ]));
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["on"], true, "{body}");
    // Three checks of the LED service later (one a second), the LED is still lit: the original
    // re-sent the button's state every second and switched it off at once.
    let until = Instant::now() + Duration::from_secs(20);
    while stack.metric("button", "button_service_checks_total").await < checks + 3.0 {
        assert!(Instant::now() < until, "button-service stopped checking");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        stack.brightness().await,
        Some(255),
        "the hand-set LED stays set"
    );
    assert_eq!(
        stack.metric("button", "button_service_sends_total").await,
        0.0,
        "nothing was sent while the button rested"
    );

    // A press and a release still win.
    stack.simulator("/api/press").await;
    stack.simulator("/api/release").await;
    stack.wait_brightness(0, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn with_the_int_line_in_simulator_mode_each_press_and_release_is_read_when_int_changes() {
    // A heartbeat far beyond every wait here: only the INT line can be what read the button.
    let (stack, _) = Stack::up_with(
        "int",
        &[],
        &[("INT_GPIO", "simulator"), ("INT_HEARTBEAT", "60s")],
    );
    let polls = stack.metric("button", "button_service_polls_total").await;
    for _ in 0..3 {
        stack.simulator("/api/press").await;
        stack.wait_brightness(255, Duration::from_secs(5)).await;
        stack.simulator("/api/release").await;
        stack.wait_brightness(0, Duration::from_secs(5)).await;
    }
    let polls = stack.metric("button", "button_service_polls_total").await - polls;
    // Each edge is read, then read again while it settles (every POLL_INTERVAL for the
    // debounce time and a second sighting): a few reads an edge, not one every 20 ms.
    assert!(polls <= 6.0 * 8.0, "{polls} reads for six edges");
}

fn empty_env_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("qwiic-empty-{}.env", std::process::id()));
    std::fs::write(&path, "").unwrap();
    path
}

/// `compose config` of the project's files, as `compose` with `COMPOSE_FILE` and the variables
/// given (and none from the caller's environment or a developer's .env) merges them.
fn config_command(compose: Compose, compose_file: &str, variables: &[(&str, &str)]) -> Command {
    let mut command = compose.command();
    let settings = code_settings::settings_in_code();
    for variable in [
        "I2C_DEVICE",
        "I2C_GID",
        "INT_CHIP",
        "GPIO_GID",
        "IMAGE_REPOSITORY",
        "IMAGE_TAG",
        "LED_DIGEST",
        "BUTTON_DIGEST",
        "SIMULATOR_DIGEST",
        "COMPOSE_PROFILES",
        "RUST_LOG",
    ]
    .into_iter()
    .chain(settings.iter().map(|(_, setting)| setting.env.as_str()))
    {
        command.env_remove(variable);
    }
    command
        .env("COMPOSE_FILE", compose_file)
        .envs(variables.iter().copied())
        .arg("--env-file")
        .arg(empty_env_file())
        .arg("config");
    command
}

/// What that merge gives.
fn config(compose: Compose, compose_file: &str, variables: &[(&str, &str)]) -> Value {
    compose.config(config_command(compose, compose_file, variables))
}

/// What `compose config` says when it refuses `compose_file` with only `variables`.
fn config_refused(compose: Compose, compose_file: &str, variables: &[(&str, &str)]) -> String {
    let output = config_command(compose, compose_file, variables)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "{compose:?} {compose_file} {variables:?}"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const DEVICE: &str = "docker-compose.yml:docker-compose.device.yml";
const DEVICE_VARIABLES: [(&str, &str); 2] = [("I2C_DEVICE", "/dev/i2c-1"), ("I2C_GID", "108")];

#[test]
fn device_mode_without_init_os_says_to_run_it() {
    for compose in Compose::BOTH {
        let message = config_refused(compose, DEVICE, &[]);
        assert!(
            message.contains("run sudo ./init_os.sh"),
            "{compose:?}: {message}"
        );
    }
}

#[test]
fn device_mode_maps_only_the_bus_and_adds_the_group_by_number() {
    for compose in Compose::BOTH {
        let config = config(compose, DEVICE, &DEVICE_VARIABLES);
        let services = config["services"].as_object().unwrap();
        assert_eq!(
            services.keys().collect::<Vec<_>>(),
            ["button", "led"],
            "{compose:?}: device mode runs no simulator"
        );
        for (name, service) in services {
            let context = format!("{compose:?} {name}: {service:#}");
            assert_eq!(devices(service), ["/dev/i2c-1:/dev/i2c-1"], "{context}");
            // The button's second group is its own (65532) until the INT line is wired.
            let groups = match name.as_str() {
                "button" => json!(["108", "65532"]),
                _ => json!(["108"]),
            };
            assert_eq!(service["group_add"], groups, "{context}");
            assert!(service.get("user").is_none(), "{context}");
            assert_eq!(service["environment"]["BUS"], "/dev/i2c-1", "{context}");
            assert!(service.get("privileged").is_none(), "{context}");
            assert!(service.get("volumes").is_none(), "{context}");
        }
    }
}

#[test]
fn a_digest_in_env_pins_each_image_and_its_tag_stays_for_people_to_read() {
    let digest = |c: char| format!("@sha256:{}", c.to_string().repeat(64));
    let pins = [
        ("led", "LED_DIGEST", digest('a')),
        ("button", "BUTTON_DIGEST", digest('b')),
        ("simulator", "SIMULATOR_DIGEST", digest('c')),
    ];
    let mut given = vec![("IMAGE_TAG", "0.2.0".to_owned())];
    given.extend(
        pins.iter()
            .map(|(_, variable, pin)| (*variable, pin.clone())),
    );
    let given: Vec<(&str, &str)> = given.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for compose in Compose::BOTH {
        let mode = "docker-compose.yml:docker-compose.override.yml";
        let pinned = config(compose, mode, &given);
        let unpinned = config(compose, mode, &[("IMAGE_TAG", "0.2.0")]);
        for (service, _, pin) in &pins {
            let image = |config: &Value| {
                config["services"][*service]["image"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            let name = match *service {
                "simulator" => "qwiic-simulator".to_owned(),
                other => format!("qwiic-{other}-service"),
            };
            let tagged = format!("ghcr.io/qwiic-containers/{name}:0.2.0");
            assert_eq!(image(&unpinned), tagged, "{compose:?}");
            assert_eq!(image(&pinned), format!("{tagged}{pin}"), "{compose:?}");
        }
    }
}

const DEVICE_INT: &str = "docker-compose.yml:docker-compose.device.yml:docker-compose.int.yml";
const INT_VARIABLES: [(&str, &str); 5] = [
    ("I2C_DEVICE", "/dev/i2c-1"),
    ("I2C_GID", "108"),
    ("INT_GPIO", "pinctrl-bcm2711:24"),
    ("INT_CHIP", "/dev/gpiochip0"),
    ("GPIO_GID", "997"),
];

#[test]
fn the_int_overlay_maps_only_the_one_gpio_chip_into_the_button_with_the_gpio_group() {
    for compose in Compose::BOTH {
        let config = config(compose, DEVICE_INT, &INT_VARIABLES);
        let button = &config["services"]["button"];
        let context = format!("{compose:?}: {button:#}");
        let mut mapped = devices(button);
        mapped.sort();
        assert_eq!(
            mapped,
            ["/dev/gpiochip0:/dev/gpiochip0", "/dev/i2c-1:/dev/i2c-1"],
            "{context}"
        );
        // Both groups added, whichever Compose merges the files, and the image's user and group
        // kept: 65532 is the group that may read the secrets (the token overlay's).
        assert_eq!(button["group_add"], json!(["108", "997"]), "{context}");
        assert!(button.get("user").is_none(), "{context}");
        assert_eq!(
            button["environment"]["INT_GPIO"], "pinctrl-bcm2711:24",
            "{context}"
        );
        assert_eq!(button["environment"]["BUS"], "/dev/i2c-1", "{context}");
        let led = &config["services"]["led"];
        assert_eq!(
            devices(led),
            ["/dev/i2c-1:/dev/i2c-1"],
            "{compose:?}: {led:#}"
        );
        assert!(led.get("user").is_none(), "{compose:?}: {led:#}");
    }
    // Without INT, the button's second group is its own again: nothing more.
    assert!(
        std::fs::read_to_string(root().join("Dockerfile.button"))
            .unwrap()
            .contains("\nUSER 65532:65532\n"),
        "the image's group is no longer the one docker-compose.device.yml repeats"
    );
}

#[test]
fn the_int_overlay_without_init_os_says_to_run_it_with_the_pin() {
    for compose in Compose::BOTH {
        for missing in ["INT_GPIO", "INT_CHIP", "GPIO_GID"] {
            let given: Vec<_> = INT_VARIABLES
                .iter()
                .copied()
                .filter(|(name, _)| *name != missing)
                .collect();
            let message = config_refused(compose, DEVICE_INT, &given);
            assert!(
                message.contains(&format!(
                    "{missing} is not set: run sudo ./init_os.sh --int-pin 18"
                )),
                "{compose:?} without {missing}: {message}"
            );
        }
    }
}

/// Settings compose decides itself: how the containers are wired, and where the secret files
/// are inside them (the token overlay sets API_TOKEN_FILE and mounts the file).
const COMPOSE_DECIDES: [&str; 8] = [
    "BUS",
    "LISTEN_ADDR",
    "LED_URL",
    "TCP_LISTEN",
    "HTTP_LISTEN",
    "API_TOKEN_FILE",
    "MQTT_USERNAME_FILE",
    "MQTT_PASSWORD_FILE",
];

/// Where compose's default is not the binary's, and what it is: a stable topic prefix (a
/// container's host name changes at every start), and `led`, button-service's name for it,
/// among led-service's host names.
fn compose_default(service: &str, env: &str) -> Option<&'static str> {
    match (service, env) {
        ("led" | "button", "MQTT_TOPIC_PREFIX") => Some("qwiic/button"),
        ("led", "ALLOWED_HOSTS") => Some("led,"),
        _ => None,
    }
}

#[test]
fn every_setting_reaches_its_container_from_the_environment_and_empty_means_the_default() {
    let settings = code_settings::settings_in_code();
    let commands = code_settings::commands();
    for compose in Compose::BOTH {
        for (mode, variables, services) in [
            (
                "docker-compose.yml:docker-compose.override.yml",
                &[][..],
                &["led", "button", "simulator"][..],
            ),
            (DEVICE, &DEVICE_VARIABLES[..], &["led", "button"][..]),
        ] {
            let ours: Vec<_> = settings
                .iter()
                .filter(|(service, setting)| {
                    services.contains(service) && !COMPOSE_DECIDES.contains(&setting.env.as_str())
                })
                .collect();
            let sentinel = |env: &str| format!("from-env-{}", env.to_lowercase());
            let mut given: Vec<(String, String)> = variables
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            given.extend(ours.iter().map(|(_, s)| (s.env.clone(), sentinel(&s.env))));
            let given: Vec<(&str, &str)> = given
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let set = config(compose, mode, &given);
            let unset = config(compose, mode, variables);
            for (service, setting) in &ours {
                let context = format!("{compose:?} {mode} {service} {}", setting.env);
                let environment = |config: &Value| {
                    config["services"][*service]["environment"][&setting.env]
                        .as_str()
                        .map(str::to_owned)
                };
                let value = environment(&set).unwrap_or_default();
                assert!(
                    value.contains(&sentinel(&setting.env)),
                    "{context}: set in the environment, the container gets {value:?}"
                );
                let default = environment(&unset);
                let expected = compose_default(service, &setting.env)
                    .map(str::to_owned)
                    .or_else(|| setting.default.clone())
                    .unwrap_or_default();
                assert_eq!(
                    default.as_deref(),
                    Some(expected.as_str()),
                    "{context}: unset, the container gets the binary's default"
                );
                if expected.is_empty() {
                    let (_, command) = commands.iter().find(|(name, _)| name == service).unwrap();
                    let parsed =
                        command
                            .clone()
                            .try_get_matches_from(["binary", setting.flag.as_str(), ""]);
                    assert!(
                        parsed.is_ok(),
                        "{context}: compose passes it empty, which the binary refuses: {:?}",
                        parsed.err().map(|e| e.to_string())
                    );
                }
            }
        }
    }
}

#[test]
fn every_service_is_hardened_bounded_and_runs_the_published_image() {
    for compose in Compose::BOTH {
        for (mode, variables) in [
            ("docker-compose.yml:docker-compose.override.yml", &[][..]),
            (DEVICE, &DEVICE_VARIABLES[..]),
        ] {
            let config = config(compose, mode, variables);
            for (name, service) in config["services"].as_object().unwrap() {
                let context = format!("{compose:?} {mode} {name}: {service:#}");
                let published = match name.as_str() {
                    "led" => "led-service",
                    "button" => "button-service",
                    other => other,
                };
                assert_eq!(
                    service["image"],
                    format!("ghcr.io/qwiic-containers/qwiic-{published}:latest"),
                    "{context}"
                );
                assert_eq!(
                    service["build"]["dockerfile"],
                    format!("Dockerfile.{name}"),
                    "{context}"
                );
                assert_eq!(service["read_only"], true, "{context}");
                assert_eq!(service["cap_drop"], json!(["ALL"]), "{context}");
                assert_eq!(
                    service["security_opt"],
                    json!(["no-new-privileges:true"]),
                    "{context}"
                );
                assert_eq!(service["pids_limit"], 64, "{context}");
                assert_eq!(
                    service["runtime"], "runc",
                    "never the nvidia runtime a Jetson may make Docker's default: {context}"
                );
                assert!(service.get("privileged").is_none(), "{context}");
                assert!(
                    service.get("user").is_none(),
                    "the images' own 65532: {context}"
                );
                match compose {
                    // v1 keeps what the file says and ignores pull_policy (init_os.sh prints
                    // `docker-compose pull` first); v2 normalises both.
                    Compose::V1 => assert_eq!(service["mem_limit"], "32m", "{context}"),
                    Compose::V2 => {
                        assert_eq!(service["mem_limit"], "33554432", "{context}");
                        assert_eq!(service["pull_policy"], "missing", "{context}");
                    }
                }
            }
        }
    }
}

#[test]
fn one_variable_names_the_registry_and_another_the_tag() {
    for compose in Compose::BOTH {
        let config = config(
            compose,
            DEVICE,
            &[
                DEVICE_VARIABLES[0],
                DEVICE_VARIABLES[1],
                ("IMAGE_REPOSITORY", "registry.example:5000/me"),
                ("IMAGE_TAG", "0.2.0"),
            ],
        );
        assert_eq!(
            config["services"]["led"]["image"], "registry.example:5000/me/qwiic-led-service:0.2.0",
            "{compose:?}"
        );
    }
}

#[test]
fn the_simulator_page_is_published_on_this_machine_only_unless_asked() {
    for compose in Compose::BOTH {
        for (variables, host) in [
            (&[][..], "127.0.0.1"),
            (&[("SIMULATOR_BIND", "0.0.0.0")][..], "0.0.0.0"),
        ] {
            let config = config(
                compose,
                "docker-compose.yml:docker-compose.override.yml",
                variables,
            );
            let ports = &config["services"]["simulator"]["ports"][0];
            let bound = match compose {
                Compose::V1 => ports.as_str().unwrap().trim_end_matches("/tcp").to_owned(),
                Compose::V2 => format!(
                    "{}:{}:{}",
                    ports["host_ip"].as_str().unwrap(),
                    ports["published"].as_str().unwrap(),
                    ports["target"]
                ),
            };
            assert_eq!(bound, format!("{host}:8081:8081"), "{compose:?}: {ports}");
        }
    }
}

#[test]
fn the_token_overlay_mounts_a_secret_file_and_puts_no_token_in_the_environment() {
    for compose in Compose::BOTH {
        let config = config(
            compose,
            "docker-compose.yml:docker-compose.device.yml:docker-compose.token.yml",
            &[
                DEVICE_VARIABLES[0],
                DEVICE_VARIABLES[1],
                ("API_TOKEN_HOST_FILE", "/etc/qwiic/token"),
            ],
        );
        assert_eq!(
            config["secrets"]["api_token"]["file"], "/etc/qwiic/token",
            "{compose:?}: {config:#}"
        );
        for name in ["led", "button"] {
            let service = &config["services"][name];
            let context = format!("{compose:?} {name}: {service:#}");
            assert_eq!(
                service["environment"]["API_TOKEN_FILE"], "/run/secrets/api_token",
                "{context}"
            );
            assert_eq!(service["environment"]["API_TOKEN"], "", "{context}");
            let secret = &service["secrets"][0];
            let source = secret.as_str().or(secret["source"].as_str());
            assert_eq!(source, Some("api_token"), "{context}");
        }
    }
}

#[test]
fn the_mqtt_profile_adds_a_hardened_broker_and_the_services_use_it_when_told() {
    for compose in Compose::BOTH {
        let plain = config(
            compose,
            "docker-compose.yml:docker-compose.override.yml",
            &[],
        );
        assert!(
            plain["services"].get("mosquitto").is_none(),
            "{compose:?}: no broker without the profile"
        );
        for name in ["led", "button"] {
            let environment = &plain["services"][name]["environment"];
            assert_eq!(environment["MQTT_URL"], "", "{compose:?} {name}: MQTT off");
        }
        let config = config(
            compose,
            "docker-compose.yml:docker-compose.override.yml",
            &[
                ("COMPOSE_PROFILES", "mqtt"),
                ("MQTT_URL", "mqtt://mosquitto:1883"),
            ],
        );
        let broker = &config["services"]["mosquitto"];
        let context = format!("{compose:?}: {broker:#}");
        assert_eq!(broker["read_only"], true, "{context}");
        assert_eq!(broker["cap_drop"], json!(["ALL"]), "{context}");
        assert_eq!(
            broker["security_opt"],
            json!(["no-new-privileges:true"]),
            "{context}"
        );
        assert_eq!(broker["user"], "1883:1883", "{context}");
        assert!(broker.get("privileged").is_none(), "{context}");
        let mounted: Vec<String> = broker["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|volume| match compose {
                Compose::V1 => volume.as_str().unwrap().to_owned(),
                Compose::V2 => format!(
                    "{}:{}:{}",
                    volume["source"].as_str().unwrap(),
                    volume["target"].as_str().unwrap(),
                    if volume["read_only"] == true {
                        "ro"
                    } else {
                        "rw"
                    }
                ),
            })
            .collect();
        assert!(
            mounted[0].ends_with("/config/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro"),
            "{context}"
        );
        assert!(
            mounted[1].ends_with("/secrets/mosquitto-passwd:/mosquitto/secrets/passwd:ro"),
            "{context}: the password file init_os.sh makes"
        );
        let port = &broker["ports"][0];
        let bound = match compose {
            Compose::V1 => port.as_str().unwrap().trim_end_matches("/tcp").to_owned(),
            Compose::V2 => format!(
                "{}:{}:{}",
                port["host_ip"].as_str().unwrap(),
                port["published"].as_str().unwrap(),
                port["target"]
            ),
        };
        assert_eq!(bound, "127.0.0.1:1883:1883", "{context}");
        for name in ["led", "button"] {
            let environment = &config["services"][name]["environment"];
            assert_eq!(
                environment["MQTT_URL"], "mqtt://mosquitto:1883",
                "{compose:?} {name}"
            );
            assert_eq!(
                environment["MQTT_TOPIC_PREFIX"], "qwiic/button",
                "{compose:?} {name}"
            );
        }
    }
    // The broker it runs: the port the services use, nothing kept on the read-only disk.
    let broker = std::fs::read_to_string(root().join("config/mosquitto.conf")).unwrap();
    let settings: Vec<&str> = broker
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .collect();
    for wanted in [
        "listener 1883 0.0.0.0",
        "allow_anonymous false",
        "password_file /mosquitto/secrets/passwd",
        "persistence false",
        "log_dest stdout",
    ] {
        assert!(settings.contains(&wanted), "{wanted} missing: {settings:?}");
    }
}

/// With `token` set on both services: requests without it or with another get 401, the button
/// service's own requests light the LED, and the owner of the token may change it.
async fn strangers_get_401_and_the_button_still_lights_the_led(stack: &Stack, token: &str) {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/true", stack.led_port());
    let stranger = client.post(&url).send().await.unwrap();
    assert_eq!(stranger.status(), 401);
    let wrong = client
        .post(&url)
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    stack.simulator("/api/press").await;
    stack.wait_brightness(255, Duration::from_secs(2)).await;
    stack.simulator("/api/release").await;
    stack.wait_brightness(0, Duration::from_secs(2)).await;
    let owner = client.post(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(owner.status(), 200);
    stack.wait_brightness(255, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn with_api_token_in_the_environment_strangers_get_401_and_the_button_still_lights_the_led() {
    let (stack, _) = Stack::up_with("token-env", &[], &[("API_TOKEN", "s3cret-from-env")]);
    strangers_get_401_and_the_button_still_lights_the_led(&stack, "s3cret-from-env").await;
}

#[tokio::test]
async fn with_the_token_overlay_strangers_get_401_and_the_button_still_lights_the_led() {
    let dir = std::env::temp_dir().join(format!("qwiic-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("api-token");
    // As the overlay's comment says: readable by the services' group 65532, by nobody else.
    std::fs::write(&token_file, "s3cret-from-a-file\n").unwrap();
    std::os::unix::fs::chown(&token_file, None, Some(65532)).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o440)).unwrap();
    let (stack, _) = Stack::up_with(
        "token",
        &["docker-compose.token.yml"],
        &[("API_TOKEN_HOST_FILE", token_file.to_str().unwrap())],
    );
    strangers_get_401_and_the_button_still_lights_the_led(&stack, "s3cret-from-a-file").await;
    // The token is in no container's environment, where `docker inspect` would show it.
    for service in ["led", "button"] {
        let env = stack.inspect(service, "{{json .Config.Env}}");
        assert!(!env.contains("s3cret"), "{service}: {env}");
    }
    drop(stack);
    std::fs::remove_dir_all(dir).unwrap();
}
