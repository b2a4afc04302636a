//! The whole system in real containers, simulator mode, as `docker compose up` runs it:
//! images from scripts/build-images, the project's compose files, the Docker engine.
//! Every test brings up its own project on its own ports and removes it when done.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Stack, compose_command, root, run};

#[tokio::test]
async fn up_press_release_hardening_and_down() {
    let (stack, up) = Stack::up("basic");
    eprintln!("figure: up and healthy in {up:?}");
    assert!(up < Duration::from_secs(10), "up and healthy took {up:?}");

    stack.simulator("/api/press").await;
    stack.wait_brightness(255, Duration::from_secs(2)).await;
    let led = stack.get(stack.led_port, "/led").await.unwrap();
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

    let started = Instant::now();
    run(stack.compose().args(["down", "-t", "10"]));
    let down = started.elapsed();
    eprintln!("figure: down in {down:?}");
    assert!(down < Duration::from_secs(2), "compose down took {down:?}");
}

#[tokio::test]
async fn the_button_rides_out_a_crashed_and_a_killed_led_container() {
    let (stack, _) = Stack::up("led-faults");
    stack.simulator("/api/press").await;
    stack.wait_brightness(255, Duration::from_secs(2)).await;

    // The LED process exits under the engine's feet (SIGTERM from outside, not `docker stop`):
    // it switches the LED off on its way out, the restart policy brings the container back,
    // and the button service lights the LED again.
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
    assert!(
        stack.logs("led").contains("LED switched off"),
        "{}",
        stack.logs("led")
    );
    stack.wait_brightness(255, Duration::from_secs(5)).await;
    let lit = restarted.elapsed();
    eprintln!("figure: LED lit again {lit:?} after the restart");
    assert!(lit < Duration::from_secs(2), "{lit:?}");

    // `docker kill` (SIGKILL): the engine counts it as a manual stop, so nothing restarts it.
    // The button is released during the outage; the button service keeps polling, logs ONE
    // outage, and delivers the latest state (off) as soon as the LED service is back.
    run(Command::new("docker").args(["kill", &stack.container("led")]));
    stack.simulator("/api/release").await;
    let until = Instant::now() + Duration::from_secs(10);
    while !stack
        .logs("button")
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
    let logs = stack.logs("button");
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
    let logs = stack.logs("button");
    assert_eq!(
        logs.matches("the LED service answers again").count(),
        1,
        "{logs}"
    );
    assert!(!logs.contains("panicked") && !stack.logs("led").contains("panicked"));
}

#[tokio::test]
async fn both_services_turn_unhealthy_without_the_simulator_and_recover() {
    let (stack, _) = Stack::up("sim-down");
    stack.docker("stop", "simulator");
    stack.wait_health("led", "unhealthy", Duration::from_secs(20));
    stack.wait_health("button", "unhealthy", Duration::from_secs(20));
    let health = stack.get(stack.led_port, "/healthz").await.unwrap();
    assert!(
        health["error"]
            .as_str()
            .unwrap()
            .contains("tcp://simulator:7070"),
        "{health}"
    );
    assert_eq!(
        stack.inspect("led", "{{.State.Status}}"),
        "running",
        "unhealthy, not dead"
    );

    stack.docker("start", "simulator");
    stack.wait_health("simulator", "healthy", Duration::from_secs(20));
    stack.wait_health("led", "healthy", Duration::from_secs(20));
    stack.wait_health("button", "healthy", Duration::from_secs(20));
    stack.simulator("/api/press").await;
    stack.wait_brightness(255, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn with_the_button_service_stopped_curl_lights_the_led() {
    let (stack, _) = Stack::up("manual");
    stack.docker("stop", "button");
    let output = run(Command::new("curl").args([
        "-s",
        "-X",
        "POST",
        &format!("localhost:{}/true", stack.led_port),
    ]));
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(body["on"], true, "{body}");
    stack.wait_brightness(255, Duration::from_secs(2)).await;
}

fn empty_env_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("qwiic-empty-{}.env", std::process::id()));
    std::fs::write(&path, "").unwrap();
    path
}

#[test]
fn device_mode_without_init_os_says_to_run_it() {
    let parts = compose_command();
    let output = Command::new(parts[0])
        .args(&parts[1..])
        .current_dir(root())
        .env_remove("I2C_DEVICE")
        .env_remove("I2C_GID")
        .env(
            "COMPOSE_FILE",
            "docker-compose.yml:docker-compose.device.yml",
        )
        .arg("--env-file")
        .arg(empty_env_file())
        .arg("config")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("run sudo ./init_os.sh"), "{message}");
}

#[test]
fn device_mode_maps_only_the_bus_and_adds_the_group_by_number() {
    let parts = compose_command();
    let output = run(Command::new(parts[0])
        .args(&parts[1..])
        .current_dir(root())
        .env(
            "COMPOSE_FILE",
            "docker-compose.yml:docker-compose.device.yml",
        )
        .env("I2C_DEVICE", "/dev/i2c-1")
        .env("I2C_GID", "108")
        .arg("--env-file")
        .arg(empty_env_file())
        .arg("config"));
    let config = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "/dev/i2c-1:/dev/i2c-1",
        "BUS: /dev/i2c-1",
        "'108'",
        "read_only: true",
        "no-new-privileges:true",
    ] {
        assert!(
            config.contains(expected),
            "missing {expected:?} in\n{config}"
        );
    }
    assert!(!config.contains("privileged"), "{config}");
    assert!(
        !config.contains("simulator"),
        "device mode runs no simulator:\n{config}"
    );
}
