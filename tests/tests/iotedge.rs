//! The Azure IoT Edge template applied, not only validated: each module of
//! `deploy/iotedge/deployment.template.json` is created as the edge agent creates it, through
//! the Docker Engine API (`POST /containers/create` with the module's `createOptions` as they
//! are, its image and its `env`), on a network of its own, and started in its startup order.
//! The registry credentials and the system modules (edgeAgent, edgeHub) are left out: no
//! engine here can pull them.
//!
//! The template maps a real bus; this machine has none. The test gives `I2C_DEVICE` a device
//! node that exists (`/dev/null`, mapped where the template says) and points `BUS` at a
//! simulator on the same network: the press-to-LED path is the simulator's, everything else
//! (user, read-only root, capabilities, the token's bind mount, the limits, the published port)
//! is the template's. The agent names each container after its module; here each gets that name
//! as its network alias instead, so that two runs on one engine cannot collide.
//!
//! Needs the images of `scripts/build-images` and root (the token file is owned by group 65532,
//! as deploy/README.md says to make it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{docker_inspect, published_port, root, run, wait_container_health};

const TOKEN: &str = "edge-test-token-0123456789abcdef";

#[tokio::test]
async fn the_iot_edge_modules_run_from_their_create_options_and_the_button_lights_the_led() {
    let edge = Edge::new();
    let simulator = edge.simulator();
    let modules = edge.modules();
    for name in ["led", "button"] {
        assert!(
            modules.contains_key(name),
            "the template has no module {name}"
        );
    }
    let mut order: Vec<(&String, &Value)> = modules.iter().collect();
    order.sort_by_key(|(_, module)| module["startupOrder"].as_u64().unwrap_or(u64::MAX));
    for (name, module) in order {
        edge.create_and_start(name, module);
    }
    for name in ["led", "button"] {
        edge.wait_healthy(name);
    }

    // The button lights the LED through the simulator.
    let simulator = format!("http://127.0.0.1:{}", published_port(&simulator, 8081));
    let client = reqwest::Client::new();
    for (action, brightness) in [("press", 255), ("release", 0)] {
        let response = client
            .post(format!("{simulator}/api/{action}"))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{action}: {response:?}");
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let led: Value = client
                .get(format!("{simulator}/api/led"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if led["led"]["brightness"] == brightness {
                break;
            }
            assert!(
                Instant::now() < until,
                "after a {action}, the LED is {led}, not at {brightness}\n{}",
                edge.logs("button")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The LED API, published where the template says, takes the token from the mounted file.
    let led = format!(
        "http://127.0.0.1:{}",
        published_port(&edge.container("led"), 8080)
    );
    let stranger = client.post(format!("{led}/true")).send().await.unwrap();
    assert_eq!(stranger.status(), 401, "no token");
    let owner = client
        .post(format!("{led}/true"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(owner.status(), 200, "the token from the mounted file");

    // What Docker applied, as it reports it.
    for name in ["led", "button"] {
        let seen = edge.inspect(
            name,
            "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.PidsLimit}} {{.HostConfig.Privileged}} {{.HostConfig.Runtime}}",
        );
        assert_eq!(
            seen, "65532:65532 true [ALL] 33554432 33554432 64 false runc",
            "{name}: user, read-only, capabilities, memory, swap, pids, privileged, runtime"
        );
        let mounts = edge.inspect(
            name,
            "{{range .Mounts}}{{.Source}}:{{.Destination}}:{{.RW}} {{end}}",
        );
        assert_eq!(
            mounts.trim(),
            format!("{}:/run/secrets/qwiic/token:false", edge.token.display()),
            "{name}: the token's bind mount, read-only"
        );
        let devices = edge.inspect(
            name,
            "{{range .HostConfig.Devices}}{{.PathOnHost}}:{{.PathInContainer}}:{{.CgroupPermissions}} {{end}}",
        );
        assert_eq!(devices.trim(), "/dev/null:/dev/i2c-1:rw", "{name}: devices");
    }
}

/// One run's network, token file and containers; all removed when dropped.
struct Edge {
    prefix: String,
    network: String,
    token: PathBuf,
    containers: std::cell::RefCell<Vec<String>>,
}

impl Edge {
    fn new() -> Edge {
        let prefix = format!("qwiic-edge-{}", std::process::id());
        let network = prefix.clone();
        run(Command::new("docker").args(["network", "create", &network]));
        // As deploy/README.md says to make it: root, group 65532, mode 0440.
        let token = std::env::temp_dir().join(format!("{prefix}-token"));
        std::fs::write(&token, TOKEN).unwrap();
        run(Command::new("chown").args(["0:65532", token.to_str().unwrap()]));
        run(Command::new("chmod").args(["0440", token.to_str().unwrap()]));
        Edge {
            prefix,
            network,
            token,
            containers: Default::default(),
        }
    }

    /// The template's modules with its parameters filled in as `.env` would.
    fn modules(&self) -> serde_json::Map<String, Value> {
        let mut text =
            std::fs::read_to_string(root().join("deploy/iotedge/deployment.template.json"))
                .unwrap();
        let token = self.token.display().to_string();
        for (name, value) in [
            (
                "LED_IMAGE",
                "ghcr.io/qwiic-containers/qwiic-led-service:latest",
            ),
            (
                "BUTTON_IMAGE",
                "ghcr.io/qwiic-containers/qwiic-button-service:latest",
            ),
            ("I2C_DEVICE", "/dev/null"),
            ("I2C_GID", "998"),
            ("API_TOKEN_HOST_FILE", token.as_str()),
            ("ALLOWED_HOSTS", ""),
            ("LED_BIND", "127.0.0.1"),
            ("LED_PORT", ""), // the engine picks one
        ] {
            text = text.replace(&format!("${{{name}}}"), value);
        }
        assert!(
            !text.contains("${"),
            "a parameter of the template is not filled in here: {}",
            &text[text.find("${").unwrap()..][..40]
        );
        let template: Value = serde_json::from_str(&text).unwrap();
        template["modulesContent"]["$edgeAgent"]["properties.desired"]["modules"]
            .as_object()
            .unwrap()
            .clone()
    }

    /// Creates `name` as the edge agent does: its createOptions, its image, its env (with `BUS`
    /// at the simulator), on the network under its module name; then starts it.
    fn create_and_start(&self, name: &str, module: &Value) {
        let mut body: Value =
            serde_json::from_str(module["settings"]["createOptions"].as_str().unwrap()).unwrap();
        body["Image"] = module["settings"]["image"].clone();
        let mut env: Vec<String> = module["env"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(key, _)| *key != "BUS")
            .map(|(key, value)| format!("{key}={}", value["value"].as_str().unwrap()))
            .collect();
        env.push("BUS=tcp://simulator:7070".to_owned());
        body["Env"] = json!(env);
        body["HostConfig"]["NetworkMode"] = json!(self.network);
        body["NetworkingConfig"] = json!({
            "EndpointsConfig": {self.network.clone(): {"Aliases": [name]}}
        });
        let container = format!("{}-{name}", self.prefix);
        let created = self.engine(
            "POST",
            &format!("/containers/create?name={container}"),
            &body,
        );
        assert!(
            created["Id"].is_string(),
            "the engine refused {name}'s createOptions: {created}"
        );
        self.containers.borrow_mut().push(container.clone());
        self.engine(
            "POST",
            &format!("/containers/{container}/start"),
            &json!({}),
        );
    }

    /// The simulator, on the network as `simulator`, its page published on loopback.
    fn simulator(&self) -> String {
        let container = format!("{}-simulator", self.prefix);
        run(Command::new("docker").args([
            "run",
            "-d",
            "--name",
            &container,
            "--network",
            &self.network,
            "--network-alias",
            "simulator",
            "-p",
            "127.0.0.1::8081",
            "ghcr.io/qwiic-containers/qwiic-simulator:latest",
        ]));
        self.containers.borrow_mut().push(container.clone());
        container
    }

    fn container(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// One call to the Docker Engine API on its socket; the answer as JSON (null when empty).
    fn engine(&self, method: &str, path: &str, body: &Value) -> Value {
        let output = run(Command::new("curl").args([
            "--silent",
            "--show-error",
            "--unix-socket",
            "/var/run/docker.sock",
            "-X",
            method,
            "-H",
            "Content-Type: application/json",
            "--data",
            &body.to_string(),
            &format!("http://localhost/v1.41{path}"),
        ]));
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        docker_inspect(&self.container(name), format)
    }

    fn logs(&self, name: &str) -> String {
        let output = Command::new("docker")
            .args(["logs", &self.container(name)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    }

    fn wait_healthy(&self, name: &str) {
        wait_container_health(
            &self.container(name),
            "healthy",
            Duration::from_secs(30),
            || self.logs(name),
        );
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        for container in self.containers.borrow().iter() {
            let _ = Command::new("docker")
                .args(["rm", "-f", container])
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
        let _ = std::fs::remove_file(&self.token);
    }
}
