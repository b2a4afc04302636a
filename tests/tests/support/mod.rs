//! What the container tests share: a compose project of the system in simulator mode.

#![allow(dead_code)] // each test file uses its own part

pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A Compose implementation. Users run v2 (`docker compose`); Debian 12 and Raspberry Pi OS
/// bookworm ship v1 (`docker-compose` 1.29), which init_os.sh installs there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compose {
    V1,
    V2,
}

impl Compose {
    pub const BOTH: [Compose; 2] = [Compose::V2, Compose::V1];

    /// The one the container tests run under: `COMPOSE=v1` or `COMPOSE=v2`, v2 by default.
    pub fn chosen() -> Compose {
        match std::env::var("COMPOSE").as_deref() {
            Err(_) | Ok("v2") => Compose::V2,
            Ok("v1") => Compose::V1,
            Ok(other) => panic!("COMPOSE={other}: use v1 or v2"),
        }
    }

    /// Its command, in the project's directory. Fails the test, saying how to install it, where
    /// it is missing.
    pub fn command(self) -> Command {
        let (program, prefix): (&str, &[&str]) = match self {
            Compose::V1 => ("docker-compose", &[]),
            Compose::V2 => ("docker", &["compose"]),
        };
        let installed = Command::new(program)
            .args(prefix)
            .arg("version")
            .output()
            .is_ok_and(|output| output.status.success());
        assert!(
            installed,
            "{self:?} (`{}`) is not installed: scripts/test-deps installs Compose v1 and v2",
            [program]
                .iter()
                .chain(prefix)
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut command = Command::new(program);
        command.args(prefix).current_dir(root());
        command
    }

    /// The merged model `config` prints, as data (v2 prints JSON, v1 YAML), with the services
    /// that would run: v1 lists those of inactive profiles too, and they are left out here as v2
    /// leaves them out.
    pub fn config(self, mut command: Command) -> Value {
        if self == Compose::V2 {
            command.args(["--format", "json"]);
        }
        let active: Vec<String> = command
            .get_envs()
            .find(|(name, _)| *name == "COMPOSE_PROFILES")
            .and_then(|(_, value)| value)
            .map(|value| {
                value
                    .to_string_lossy()
                    .split(',')
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let output = run(&mut command);
        let text = String::from_utf8_lossy(&output.stdout);
        let mut model: Value = match self {
            Compose::V2 => serde_json::from_str(&text).unwrap(),
            Compose::V1 => yaml_documents(&text).swap_remove(0),
        };
        if let Some(services) = model["services"].as_object_mut() {
            services.retain(|_, service| match service["profiles"].as_array() {
                None => true,
                Some(profiles) => profiles
                    .iter()
                    .any(|profile| active.iter().any(|active| profile == active.as_str())),
            });
        }
        model
    }
}

/// Every document of a YAML stream, as JSON values (Compose v1's config, kustomize's output).
pub fn yaml_documents(text: &str) -> Vec<Value> {
    let documents = yaml_rust2::YamlLoader::load_from_str(text).unwrap();
    documents.iter().map(yaml_to_json).collect()
}

fn yaml_to_json(yaml: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match yaml {
        Yaml::Real(text) => text.parse::<f64>().map_or(Value::Null, Value::from),
        Yaml::Integer(number) => Value::from(*number),
        Yaml::String(text) => Value::from(text.as_str()),
        Yaml::Boolean(flag) => Value::from(*flag),
        Yaml::Array(items) => items.iter().map(yaml_to_json).collect(),
        Yaml::Hash(map) => map
            .iter()
            .map(|(key, value)| {
                let key = match key {
                    Yaml::String(text) => text.clone(),
                    other => format!("{other:?}"),
                };
                (key, yaml_to_json(value))
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

/// A service's device mappings as `source:target`, from either form: v1's short strings
/// (`/dev/i2c-1:/dev/i2c-1`) or v2's objects (`source`, `target`, `permissions`).
pub fn devices(service: &Value) -> Vec<String> {
    let Some(devices) = service["devices"].as_array() else {
        return Vec::new();
    };
    devices
        .iter()
        .map(|device| match device.as_str() {
            Some(short) => short.splitn(3, ':').take(2).collect::<Vec<_>>().join(":"),
            None => format!(
                "{}:{}",
                device["source"].as_str().unwrap(),
                device["target"].as_str().unwrap()
            ),
        })
        .collect()
}

pub fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// What `docker inspect --format FORMAT` says of a container or an image, trimmed.
pub fn docker_inspect(object: &str, format: &str) -> String {
    let output = run(Command::new("docker").args(["inspect", "--format", format, object]));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The loopback port where `container` publishes `port` (the engine picks it).
pub fn published_port(container: &str, port: u16) -> u16 {
    let output = run(Command::new("docker").args(["port", container, &format!("{port}/tcp")]));
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.rsplit(':').next()?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{container} publishes no {port}: {text}"))
}

/// Waits until `container`'s health check says `wanted`; fails with `logs()` after `within`.
pub fn wait_container_health(
    container: &str,
    wanted: &str,
    within: Duration,
    logs: impl Fn() -> String,
) {
    wait_for(&format!("{container} to be {wanted}"), within, || {
        let health = docker_inspect(container, "{{.State.Health.Status}}");
        if health == wanted {
            Ok(())
        } else {
            Err(format!("it is {health}\n{}", logs()))
        }
    });
}

/// Checks `check` every 100 ms until it gives `Ok`, for at most `within` ([`test_kit::scaled`]);
/// then fails with `what` and the last `Err`, which says what was seen instead. The one
/// deadline loop of the container tests, which wait on other processes (and so block).
pub fn wait_for<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let within = test_kit::scaled(within);
    let until = Instant::now() + within;
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= until => {
                panic!("timed out after {within:?} waiting for {what}: {seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A position in a container's log: see [`Stack::log_mark`].
#[derive(Default)]
pub struct LogMark {
    stdout: usize,
    stderr: usize,
}

pub struct Stack {
    /// Container ids by service (docker-compose v1 takes ~0.5 s per `ps`).
    containers: std::cell::RefCell<std::collections::HashMap<String, String>>,
    pub compose: Compose,
    /// Compose files beyond docker-compose.yml and docker-compose.override.yml.
    extra_files: Vec<&'static str>,
    /// Variables beyond the ports, as `.env` would hold them.
    variables: Vec<(String, String)>,
    pub project: String,
    /// Host ports by service: compose publishes on ports the engine picks (`LED_PORT=0`), and
    /// picks again at every start of a container; [`Stack::docker`] forgets them.
    ports: std::cell::RefCell<std::collections::HashMap<String, u16>>,
    env_file: PathBuf,
    /// Where compose runs: the repository, or a copy of its compose files.
    dir: PathBuf,
}

impl Stack {
    /// `compose up -d` in simulator mode; returns once every service is healthy, with the time
    /// that took.
    pub fn up(name: &str) -> (Stack, Duration) {
        Stack::up_with(name, &[], &[])
    }

    /// [`Stack::up`] with more compose files (such as docker-compose.token.yml) and variables.
    pub fn up_with(
        name: &str,
        extra_files: &[&'static str],
        variables: &[(&str, &str)],
    ) -> (Stack, Duration) {
        let stack = Stack::attach(
            Compose::chosen(),
            &format!("qwiic-e2e-{name}-{}", std::process::id()),
            &root(),
            extra_files,
            variables,
        );
        let started = Instant::now();
        run(stack.compose().args(["up", "-d", "--no-build"]));
        for service in ["simulator", "led", "button"] {
            stack.wait_health(service, "healthy", Duration::from_secs(30));
        }
        (stack, started.elapsed())
    }

    /// The project `project` in `dir` (up or not): the same helpers, and `down` when dropped.
    pub fn attach(
        compose: Compose,
        project: &str,
        dir: &Path,
        extra_files: &[&'static str],
        variables: &[(&str, &str)],
    ) -> Stack {
        // An empty env file: a developer's .env (device mode) must not leak into the test.
        let env_file = std::env::temp_dir().join(format!("{project}.env"));
        std::fs::write(&env_file, "").unwrap();
        Stack {
            containers: Default::default(),
            compose,
            extra_files: extra_files.to_vec(),
            variables: variables
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            project: project.to_owned(),
            ports: Default::default(),
            env_file,
            dir: dir.to_owned(),
        }
    }

    pub fn compose(&self) -> Command {
        let mut command = self.compose.command();
        command
            .current_dir(&self.dir)
            .env_remove("COMPOSE_FILE")
            .env_remove("API_TOKEN")
            // The engine picks free ports, so that parallel projects never race for one.
            .env("LED_PORT", "0")
            .env("SIMULATOR_PORT", "0")
            .envs(self.variables.iter().map(|(key, value)| (key, value)))
            .arg("--env-file")
            .arg(&self.env_file)
            .args(["-p", &self.project]);
        for file in ["docker-compose.yml", "docker-compose.override.yml"]
            .iter()
            .chain(&self.extra_files)
        {
            command.args(["-f", file]);
        }
        command
    }

    /// The host port where `service` publishes `container_port`.
    fn port(&self, service: &str, container_port: u16) -> u16 {
        if let Some(port) = self.ports.borrow().get(service) {
            return *port;
        }
        let port = published_port(&self.container(service), container_port);
        self.ports.borrow_mut().insert(service.to_owned(), port);
        port
    }

    /// Where the LED API is published on this machine.
    pub fn led_port(&self) -> u16 {
        self.port("led", 8080)
    }

    /// Where the simulator's page and control API are published on this machine.
    pub fn simulator_port(&self) -> u16 {
        self.port("simulator", 8081)
    }

    /// Forgets the published ports (a container started again publishes on new ones).
    pub fn forget_ports(&self) {
        self.ports.borrow_mut().clear();
    }

    /// Forgets the containers and their ports (compose made new ones).
    pub fn forget_containers(&self) {
        self.containers.borrow_mut().clear();
        self.forget_ports();
    }

    pub fn container(&self, service: &str) -> String {
        if let Some(id) = self.containers.borrow().get(service) {
            return id.clone();
        }
        let output = run(self.compose().args(["ps", "-q", service]));
        let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        self.containers
            .borrow_mut()
            .insert(service.to_owned(), id.clone());
        id
    }

    pub fn inspect(&self, service: &str, format: &str) -> String {
        docker_inspect(&self.container(service), format)
    }

    pub fn wait_health(&self, service: &str, wanted: &str, within: Duration) {
        wait_container_health(&self.container(service), wanted, within, || {
            self.logs(service)
        });
    }

    pub fn logs(&self, service: &str) -> String {
        let output = self
            .compose()
            .args(["logs", "--no-color", service])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Where `service`'s container log ends now: [`Stack::logs_after`] returns only what it
    /// logs from here on, so a test counts lines of the event it checks, not of earlier steps.
    pub fn log_mark(&self, service: &str) -> LogMark {
        let (stdout, stderr) = self.container_log(service);
        LogMark {
            stdout: stdout.len(),
            stderr: stderr.len(),
        }
    }

    /// What `service`'s container logged after `mark` (both streams only grow: the log
    /// survives restarts of the container).
    pub fn logs_after(&self, service: &str, mark: &LogMark) -> String {
        let (stdout, stderr) = self.container_log(service);
        let tail = |text: &[u8], from: usize| {
            String::from_utf8_lossy(text.get(from..).unwrap_or_default()).into_owned()
        };
        tail(&stdout, mark.stdout) + &tail(&stderr, mark.stderr)
    }

    /// The container's whole log, stdout and stderr apart (`docker logs` keeps the streams).
    fn container_log(&self, service: &str) -> (Vec<u8>, Vec<u8>) {
        let output = run(Command::new("docker").args(["logs", &self.container(service)]));
        (output.stdout, output.stderr)
    }

    /// Waits until `service`'s container has logged `needle` `count` times in all (its log
    /// survives restarts of the container).
    pub fn wait_log_count(&self, service: &str, needle: &str, count: usize, within: Duration) {
        wait_for(
            &format!("{service} to log {needle:?} {count} times"),
            within,
            || {
                let log = self.logs_after(service, &LogMark::default());
                if log.matches(needle).count() >= count {
                    Ok(())
                } else {
                    Err(format!("it logged:\n{log}"))
                }
            },
        )
    }

    pub fn docker(&self, action: &str, service: &str) {
        run(Command::new("docker").args([action, &self.container(service)]));
        self.forget_ports();
    }

    pub async fn get(&self, port: u16, path: &str) -> Option<Value> {
        let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// A service's address on the project's private network (the host reaches it on Linux).
    pub fn address(&self, service: &str) -> String {
        self.inspect(
            service,
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        )
    }

    /// The value of one metric from a service's /metrics (button-service's is not published).
    pub async fn metric(&self, service: &str, name: &str) -> f64 {
        let (value, text) = self.metric_and_text(service, name).await;
        value.unwrap_or_else(|| panic!("{name} missing from {service}'s metrics:\n{text}"))
    }

    /// Waits until one metric of a service is there and `wanted` holds for it; returns it. For
    /// what is recorded when a request ends: a slow request may still run when the LED shows
    /// its write.
    pub async fn wait_metric(
        &self,
        service: &str,
        name: &str,
        within: Duration,
        wanted: impl Fn(f64) -> bool,
    ) -> f64 {
        let started = Instant::now();
        loop {
            let (value, text) = self.metric_and_text(service, name).await;
            match value {
                Some(value) if wanted(value) => return value,
                _ if started.elapsed() >= within => {
                    panic!("{name} of {service} not as wanted within {within:?}:\n{text}")
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Where a service's `path` is served (button-service's internal port is not published:
    /// its address on the private network).
    fn service_url(&self, service: &str, path: &str) -> String {
        match service {
            "led" => format!("http://127.0.0.1:{}{path}", self.led_port()),
            "button" => format!("http://{}:9090{path}", self.address("button")),
            other => panic!("no API of {other} here"),
        }
    }

    /// Waits until a service's `/healthz` says `status` (`ok`, `degraded`); returns what it
    /// said.
    pub async fn wait_status(&self, service: &str, status: &str, within: Duration) -> Value {
        let until = Instant::now() + within;
        loop {
            let url = self.service_url(service, "/healthz");
            let health: Option<Value> = match reqwest::get(&url).await {
                Ok(response) => response.json().await.ok(),
                Err(_) => None,
            };
            match health {
                Some(health) if health["status"] == status => return health,
                health => assert!(
                    Instant::now() < until,
                    "{service} did not say {status} within {within:?}: {health:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn metric_and_text(&self, service: &str, name: &str) -> (Option<f64>, String) {
        let url = self.service_url(service, "/metrics");
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        let value = text.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        });
        (value, text)
    }

    /// Fails if any service's log shows a panic.
    pub fn assert_no_panic(&self) {
        for service in ["led", "button", "simulator"] {
            let logs = self.logs(service);
            assert!(!logs.contains("panicked"), "{service} panicked:\n{logs}");
        }
    }

    pub async fn faults(&self, faults: Value) {
        let response = reqwest::Client::new()
            .put(format!(
                "http://127.0.0.1:{}/api/faults",
                self.simulator_port()
            ))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{faults}: {}",
            response.status()
        );
    }

    pub async fn simulator(&self, path: &str) {
        let response = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}{path}", self.simulator_port()))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }

    /// The LED brightness as the simulated device holds it.
    pub async fn brightness(&self) -> Option<u64> {
        self.get(self.simulator_port(), "/api/led").await?["led"]["brightness"].as_u64()
    }

    pub async fn wait_brightness(&self, wanted: u64, within: Duration) -> Duration {
        let started = Instant::now();
        while self.brightness().await != Some(wanted) {
            assert!(
                started.elapsed() < within,
                "LED not at {wanted} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self
            .compose()
            .args(["down", "-v", "--remove-orphans", "-t", "2"])
            .output();
        let _ = std::fs::remove_file(&self.env_file);
    }
}
