//! The whole system in real containers, simulator mode, as `docker compose up` runs it:
//! images from scripts/build-images, the project's compose files, the Docker engine.
//! Every test brings up its own project on its own ports and removes it when done.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `docker compose` (v2) when present, else `docker-compose` (v1, 1.27+).
fn compose_command() -> Vec<&'static str> {
    let v2 = Command::new("docker").args(["compose", "version"]).output();
    if v2.is_ok_and(|output| output.status.success()) {
        vec!["docker", "compose"]
    } else {
        vec!["docker-compose"]
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

struct Stack {
    /// Container ids by service (docker-compose v1 takes ~0.5 s per `ps`).
    containers: std::cell::RefCell<std::collections::HashMap<String, String>>,
    project: String,
    led_port: u16,
    simulator_port: u16,
    env_file: PathBuf,
}

impl Stack {
    /// `compose up -d` in simulator mode; returns once every service is healthy, with the time
    /// that took.
    fn up(name: &str) -> (Stack, Duration) {
        let project = format!("qwiic-e2e-{name}-{}", std::process::id());
        // An empty env file: a developer's .env (device mode) must not leak into the test.
        let env_file = std::env::temp_dir().join(format!("{project}.env"));
        std::fs::write(&env_file, "").unwrap();
        let stack = Stack {
            containers: Default::default(),
            project,
            led_port: free_port(),
            simulator_port: free_port(),
            env_file,
        };
        let started = Instant::now();
        run(stack.compose().args(["up", "-d", "--no-build"]));
        for service in ["simulator", "led", "button"] {
            stack.wait_health(service, "healthy", Duration::from_secs(30));
        }
        (stack, started.elapsed())
    }

    fn compose(&self) -> Command {
        let parts = compose_command();
        let mut command = Command::new(parts[0]);
        command
            .args(&parts[1..])
            .current_dir(root())
            .env_remove("COMPOSE_FILE")
            .env("LED_PORT", self.led_port.to_string())
            .env("SIMULATOR_PORT", self.simulator_port.to_string())
            .arg("--env-file")
            .arg(&self.env_file)
            .args(["-p", &self.project, "-f", "docker-compose.yml", "-f", "docker-compose.override.yml"]);
        command
    }

    fn container(&self, service: &str) -> String {
        if let Some(id) = self.containers.borrow().get(service) {
            return id.clone();
        }
        let output = run(self.compose().args(["ps", "-q", service]));
        let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        self.containers.borrow_mut().insert(service.to_owned(), id.clone());
        id
    }

    fn inspect(&self, service: &str, format: &str) -> String {
        let output = run(Command::new("docker").args(["inspect", "--format", format, &self.container(service)]));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn wait_health(&self, service: &str, wanted: &str, within: Duration) {
        let until = Instant::now() + within;
        loop {
            let health = self.inspect(service, "{{.State.Health.Status}}");
            if health == wanted {
                return;
            }
            assert!(Instant::now() < until, "{service} is {health}, not {wanted}, after {within:?}\n{}", self.logs(service));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self, service: &str) -> String {
        let output = self.compose().args(["logs", "--no-color", service]).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn docker(&self, action: &str, service: &str) {
        run(Command::new("docker").args([action, &self.container(service)]));
    }

    async fn get(&self, port: u16, path: &str) -> Option<Value> {
        let response = reqwest::get(format!("http://127.0.0.1:{port}{path}")).await.ok()?;
        response.json().await.ok()
    }

    async fn simulator(&self, path: &str) {
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}{path}", self.simulator_port))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{path}: {}", response.status());
    }

    /// The LED brightness as the simulated device holds it.
    async fn brightness(&self) -> Option<u64> {
        self.get(self.simulator_port, "/api/led").await?["led"]["brightness"].as_u64()
    }

    async fn wait_brightness(&self, wanted: u64, within: Duration) -> Duration {
        let started = Instant::now();
        while self.brightness().await != Some(wanted) {
            assert!(started.elapsed() < within, "LED not at {wanted} within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.compose().args(["down", "-v", "--remove-orphans", "-t", "2"]).output();
        let _ = std::fs::remove_file(&self.env_file);
    }
}

#[tokio::test]
async fn up_press_release_hardening_and_down() {
    let (stack, up) = Stack::up("basic");
    eprintln!("figure: up and healthy in {up:?}");
    assert!(up < Duration::from_secs(10), "up and healthy took {up:?}");

    stack.simulator("/api/press").await;
    stack.wait_brightness(255, Duration::from_secs(2)).await;
    let led = stack.get(stack.led_port, "/led").await.unwrap();
    assert_eq!(led["on"], true);
    assert!(led["changed_by"].as_str().unwrap().contains("button-service"), "{led}");
    stack.simulator("/api/release").await;
    stack.wait_brightness(0, Duration::from_secs(2)).await;

    for service in ["led", "button", "simulator"] {
        assert_eq!(stack.inspect(service, "{{.Config.User}}"), "65532:65532", "{service}");
        assert_eq!(stack.inspect(service, "{{.HostConfig.ReadonlyRootfs}}"), "true", "{service}");
        assert_eq!(stack.inspect(service, "{{.HostConfig.Privileged}}"), "false", "{service}");
        assert_eq!(stack.inspect(service, "{{.HostConfig.CapDrop}}"), "[ALL]", "{service}");
        assert_eq!(stack.inspect(service, "{{.HostConfig.SecurityOpt}}"), "[no-new-privileges:true]", "{service}");
        // The process itself runs as 65532, as the kernel sees it.
        let pid = stack.inspect(service, "{{.State.Pid}}");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid = status.lines().find(|line| line.starts_with("Uid:")).unwrap();
        assert!(uid.split_whitespace().skip(1).all(|id| id == "65532"), "{service}: {uid}");
    }
    // Only the LED API and the simulator page are published; the button has no host port.
    assert_eq!(stack.inspect("button", "{{len .NetworkSettings.Ports}}"), "1");
    assert_eq!(stack.inspect("button", "{{range $p, $b := .NetworkSettings.Ports}}{{$b}}{{end}}"), "[]");

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
    while stack.inspect("led", "{{.RestartCount}}") != "1" || stack.inspect("led", "{{.State.Status}}") != "running" {
        assert!(Instant::now() < until, "the restart policy did not restart the led container");
        std::thread::sleep(Duration::from_millis(20));
    }
    let restarted = Instant::now();
    assert!(stack.logs("led").contains("LED switched off"), "{}", stack.logs("led"));
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
    while !stack.logs("button").contains("the LED service is not answering") {
        assert!(Instant::now() < until, "no outage logged:\n{}", stack.logs("button"));
        std::thread::sleep(Duration::from_millis(50));
    }
    tokio::time::sleep(Duration::from_secs(3)).await; // a few seconds of outage: still one line
    let logs = stack.logs("button");
    assert_eq!(logs.matches("the LED service is not answering").count(), 1, "{logs}");
    assert_eq!(stack.inspect("button", "{{.State.Status}}"), "running");
    assert_eq!(stack.inspect("button", "{{.RestartCount}}"), "0", "the button never died");
    assert_eq!(stack.brightness().await, Some(255), "nobody could switch it off yet");

    stack.docker("start", "led");
    let healed = stack.wait_brightness(0, Duration::from_secs(10)).await;
    eprintln!("figure: latest state delivered {healed:?} after docker start");
    let logs = stack.logs("button");
    assert_eq!(logs.matches("the LED service answers again").count(), 1, "{logs}");
    assert!(!logs.contains("panicked") && !stack.logs("led").contains("panicked"));
}

#[tokio::test]
async fn both_services_turn_unhealthy_without_the_simulator_and_recover() {
    let (stack, _) = Stack::up("sim-down");
    stack.docker("stop", "simulator");
    stack.wait_health("led", "unhealthy", Duration::from_secs(20));
    stack.wait_health("button", "unhealthy", Duration::from_secs(20));
    let health = stack.get(stack.led_port, "/healthz").await.unwrap();
    assert!(health["error"].as_str().unwrap().contains("tcp://simulator:7070"), "{health}");
    assert_eq!(stack.inspect("led", "{{.State.Status}}"), "running", "unhealthy, not dead");

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
        .env("COMPOSE_FILE", "docker-compose.yml:docker-compose.device.yml")
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
        .env("COMPOSE_FILE", "docker-compose.yml:docker-compose.device.yml")
        .env("I2C_DEVICE", "/dev/i2c-1")
        .env("I2C_GID", "108")
        .arg("--env-file")
        .arg(empty_env_file())
        .arg("config"));
    let config = String::from_utf8_lossy(&output.stdout);
    for expected in ["/dev/i2c-1:/dev/i2c-1", "BUS: /dev/i2c-1", "'108'", "read_only: true", "no-new-privileges:true"] {
        assert!(config.contains(expected), "missing {expected:?} in\n{config}");
    }
    assert!(!config.contains("privileged"), "{config}");
    assert!(!config.contains("simulator"), "device mode runs no simulator:\n{config}");
}
