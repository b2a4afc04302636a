//! The Kubernetes manifests applied, not only validated: each overlay of `deploy/kubernetes` is
//! rendered by kustomize (kubectl's own, as `kubectl apply -k` renders it) and played by podman
//! 5.4 (`podman kube play`), which runs the Pods of Deployments and DaemonSets with their
//! securityContext, env, Secret volumes, resources and probe commands. No cluster can run here
//! (k3s and kind download their parts); podman runs inside a container of this machine's Docker
//! engine, from `tests/userland/podman-image`, with the images of `scripts/build-images`.
//!
//! Where podman is not a cluster, the test stands in for the cluster, each in one place below:
//! - **Services**: podman plays none. The Pods a Service selects get its name on the network
//!   (their workload is played with it as an alias), as cluster DNS would resolve it; each
//!   Service port is checked to be its target's container port, so the name alone reaches the
//!   same place.
//! - **fsGroup**: podman ignores it (containers/podman#17583): a Secret's files stay root's, with
//!   no group for the Pod. The played Secret volume lets others read what the manifest lets its
//!   group read; where it is mounted, which key, and read-only stay the manifest's.
//! - **Probes**: podman runs health checks from systemd timers, and the engine has no systemd.
//!   The test runs each container's readiness probe as the kubelet runs an exec probe (the
//!   command, in the container) until it passes, and the liveness probe through the health
//!   check podman made of it.
//! - **The token's Secret** is made by `kubectl create secret generic ... --dry-run=client`, as
//!   deploy/README.md makes it, and played first.
//! - **Addresses**: no NodePort or port-forward; the test's requests start in the engine's
//!   network namespace, where the Pods' addresses are.
//!
//! Not played: the Namespace and the NetworkPolicies (podman enforces neither), node selectors,
//! and the device overlay's device plugin (kube-system; a kubelet component, and its image
//! cannot be pulled here). deploy/README.md says what is applied and what only validated.
//!
//! Needs the images of `scripts/build-images`, root (debootstrap builds the engine's userland)
//! and the Debian mirror.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::{root, run, wait_for, yaml_documents};

const TOKEN: &str = "kube-test-token-0123456789abcdef";
const IMAGES: [&str; 3] = [
    "ghcr.io/qwiic-containers/qwiic-led-service:latest",
    "ghcr.io/qwiic-containers/qwiic-button-service:latest",
    "ghcr.io/qwiic-containers/qwiic-simulator:latest",
];

#[test]
fn the_simulator_overlay_plays_and_a_press_lights_the_led_through_the_pods() {
    let cluster = Cluster::start("simulator");
    cluster.play(render("simulator"));
    for workload in cluster.workloads() {
        cluster.wait_ready(&workload);
    }
    let simulator = cluster.address("qwiic-simulator");
    let led = cluster.address("qwiic");

    // The button lights the LED: simulator -> button-service -> led-service -> simulator, every
    // hop by the names and ports the manifests give.
    for (action, brightness) in [("press", 255), ("release", 0)] {
        let (status, body) = cluster.curl(
            "POST",
            &format!("http://{simulator}:8081/api/{action}"),
            None,
        );
        assert_eq!(status, 200, "{action}: {body}");
        wait_for(
            &format!("the LED at {brightness} after a {action}"),
            Duration::from_secs(10),
            || {
                let (_, body) =
                    cluster.curl("GET", &format!("http://{simulator}:8081/api/led"), None);
                let led: Value = serde_json::from_str(&body).unwrap_or_default();
                if led["led"]["brightness"] == brightness {
                    Ok(())
                } else {
                    Err(format!(
                        "the LED is {body}\n{}",
                        cluster.logs("qwiic-pod-button")
                    ))
                }
            },
        );
    }

    // The LED API takes the token from the mounted Secret, and nothing else.
    let (status, _) = cluster.curl("POST", &format!("http://{led}:8080/true"), None);
    assert_eq!(status, 401, "no token");
    let (status, body) = cluster.curl("POST", &format!("http://{led}:8080/true"), Some(TOKEN));
    assert_eq!(status, 200, "the token from the Secret: {body}");
    // The button's /healthz and /metrics stay inside the Pod (127.0.0.1:9090 there).
    let (status, _) = cluster.curl("GET", &format!("http://{led}:9090/metrics"), None);
    assert_eq!(status, 0, "the button's port answered from outside its Pod");

    // What podman applied, as it reports it: the manifests' securityContext and limits.
    for (container, nano_cpus) in [
        ("qwiic-pod-led", 500_000_000),
        ("qwiic-pod-button", 200_000_000),
        ("qwiic-simulator-pod-simulator", 200_000_000),
    ] {
        let seen = cluster.podman_ok(&[
            "inspect",
            "--format",
            "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}} {{len .EffectiveCaps}} {{.HostConfig.SecurityOpt}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.Privileged}} {{.RestartCount}}",
            container,
        ]);
        assert_eq!(
            seen,
            format!("65532:65532 true 0 [no-new-privileges] 33554432 {nano_cpus} false 0"),
            "{container}: user, read-only root, capabilities, no escalation, memory, CPU, privileged, restarts"
        );
    }
    for container in ["qwiic-pod-led", "qwiic-pod-button"] {
        let mounts = cluster.podman_ok(&[
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Destination}}:{{.RW}} {{end}}",
            container,
        ]);
        assert_eq!(
            mounts, "/run/secrets/qwiic:false",
            "{container}: the Secret, read-only"
        );
    }

    // Torn down as it was played: nothing is left.
    cluster.down();
    for (what, listing) in [("pods", "pod"), ("secrets", "secret")] {
        let left = cluster.podman_ok(&[listing, "ls", "--quiet"]);
        assert_eq!(left, "", "{what} left after kube down");
    }
}

#[test]
fn the_device_overlay_plays_and_its_pods_say_the_bus_is_missing() {
    let cluster = Cluster::start("device");
    let documents = render("device");
    let plugin: Vec<&Value> = documents
        .iter()
        .filter(|document| document["metadata"]["namespace"] == "kube-system")
        .collect();
    assert_eq!(
        plugin.len(),
        1,
        "the device plugin, and nothing else, in kube-system"
    );
    assert_eq!(plugin[0]["metadata"]["name"], "qwiic-i2c-device-plugin");
    cluster.play(
        documents
            .into_iter()
            .filter(|document| document["metadata"]["namespace"] == "qwiic")
            .collect(),
    );

    // No device plugin hands out /dev/i2c-1 here: each service says so, and what to do.
    for container in ["qwiic-pod-led", "qwiic-pod-button"] {
        wait_for(
            &format!("{container} to report the missing bus"),
            Duration::from_secs(20),
            || {
                let logs = cluster.logs(container);
                if logs.contains("/dev/i2c-1 does not exist")
                    && logs.contains("the device plugin of deploy/kubernetes/overlays/device")
                {
                    Ok(())
                } else {
                    Err(format!("it logged:\n{logs}"))
                }
            },
        );
        // The node's i2c group by number, for the device the plugin would hand over.
        let groups =
            cluster.podman_ok(&["inspect", "--format", "{{.HostConfig.GroupAdd}}", container]);
        assert_eq!(groups, "[108]", "{container}: supplementalGroups");
    }
}

/// kustomize's rendering of an overlay, as `kubectl apply -k` would send it.
fn render(overlay: &str) -> Vec<Value> {
    let overlay = root().join("deploy/kubernetes/overlays").join(overlay);
    let output = run(Command::new("kubectl").arg("kustomize").arg(&overlay));
    yaml_documents(&String::from_utf8_lossy(&output.stdout))
}

/// A podman engine in a container, standing in for one node of a cluster (module docs); the
/// container, its storage and all it runs are removed when dropped.
struct Cluster {
    engine: String,
    /// What was played, in order, for `kube down` and for the workloads' names.
    played: std::cell::RefCell<Vec<Vec<Value>>>,
}

impl Cluster {
    /// Starts the engine, loads the images and makes the Pods' network (with names, as cluster
    /// DNS has).
    fn start(name: &str) -> Cluster {
        let output = run(&mut Command::new(
            root().join("tests/userland/podman-image"),
        ));
        let image = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let engine = format!("qwiic-podman-{}-{name}", std::process::id());
        // Not --privileged: this machine's engine cannot grant every capability. What podman
        // needs: namespaces and mounts (SYS_ADMIN), the Pods' bridge and its nftables rules
        // (NET_ADMIN), device nodes in each container (MKNOD), entering a running container for
        // the probes (SYS_PTRACE), writable /proc/sys (netavark's sysctls) and cgroups (each
        // Pod's limits), and its storage on a volume rather than on the engine's own overlay.
        run(Command::new("docker").args([
            "run",
            "--detach",
            "--name",
            &engine,
            "--cap-add",
            "SYS_ADMIN",
            "--cap-add",
            "NET_ADMIN",
            "--cap-add",
            "MKNOD",
            "--cap-add",
            "SYS_CHROOT",
            "--cap-add",
            "SETFCAP",
            "--cap-add",
            "SYS_PTRACE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--security-opt",
            "systempaths=unconfined",
            "--volume",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--volume",
            "/var/lib/containers",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/tmp",
            &image,
        ]));
        let cluster = Cluster {
            engine,
            played: Default::default(),
        };
        let mut save = Command::new("docker")
            .arg("save")
            .args(IMAGES)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let load = Command::new("docker")
            .args(["exec", "-i", &cluster.engine, "podman", "load", "--quiet"])
            .stdin(save.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(
            save.wait().unwrap().success(),
            "docker save {IMAGES:?}: did scripts/build-images run?"
        );
        assert!(
            load.status.success(),
            "podman load: {}",
            String::from_utf8_lossy(&load.stderr)
        );
        cluster.podman_ok(&["network", "create", "qwiic"]);
        cluster
    }

    /// Plays rendered documents as a cluster would run them: the token's Secret first, then
    /// each workload with the names of the Services that select it. Secret volumes are made
    /// readable without fsGroup (module docs).
    fn play(&self, documents: Vec<Value>) {
        let services: Vec<&Value> = documents
            .iter()
            .filter(|d| d["kind"] == "Service")
            .collect();
        self.play_one(vec![token_secret(&self.engine)], &[]);
        for mut workload in documents
            .iter()
            .filter(|d| matches!(d["kind"].as_str(), Some("Deployment" | "DaemonSet")))
            .cloned()
        {
            let aliases: Vec<String> = services
                .iter()
                .filter(|service| selects(service, &workload))
                .map(|service| service["metadata"]["name"].as_str().unwrap().to_owned())
                .collect();
            without_fs_group(&mut workload);
            self.play_one(vec![workload], &aliases);
        }
    }

    fn play_one(&self, documents: Vec<Value>, aliases: &[String]) {
        let mut network = "qwiic".to_owned();
        for (i, alias) in aliases.iter().enumerate() {
            network.push(if i == 0 { ':' } else { ',' });
            network.push_str(&format!("alias={alias}"));
        }
        let stream = yaml_stream(&documents);
        let output = self.podman_with_input(&["kube", "play", "--network", &network, "-"], &stream);
        assert!(
            output.status.success(),
            "podman kube play refused:\n{stream}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.played.borrow_mut().push(documents);
    }

    /// Removes what was played, last first, as `podman kube down` does.
    fn down(&self) {
        for documents in self.played.borrow().iter().rev() {
            let output = self.podman_with_input(&["kube", "down", "-"], &yaml_stream(documents));
            assert!(
                output.status.success(),
                "kube down: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// The workloads played (Deployments and DaemonSets).
    fn workloads(&self) -> Vec<Value> {
        self.played
            .borrow()
            .iter()
            .flatten()
            .filter(|d| d["kind"] != "Secret")
            .cloned()
            .collect()
    }

    /// Waits until every container of `workload`'s Pod passes its readiness probe, run as the
    /// kubelet runs an exec probe, and then its liveness probe, as podman's health check.
    fn wait_ready(&self, workload: &Value) {
        let pod = pod_name(workload);
        for container in workload["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
        {
            let name = format!("{pod}-{}", container["name"].as_str().unwrap());
            let probe: Vec<&str> = container["readinessProbe"]["exec"]["command"]
                .as_array()
                .unwrap_or_else(|| panic!("{name} has no exec readiness probe"))
                .iter()
                .map(|word| word.as_str().unwrap())
                .collect();
            wait_for(
                &format!("{name} to be ready"),
                Duration::from_secs(30),
                || {
                    let output = self.podman(&[&["exec", name.as_str()][..], &probe].concat());
                    if output.status.success() {
                        Ok(())
                    } else {
                        Err(format!(
                            "{probe:?} says {}\n{}",
                            String::from_utf8_lossy(&output.stderr),
                            self.logs(&name)
                        ))
                    }
                },
            );
            let health = self.podman(&["healthcheck", "run", &name]);
            assert!(
                health.status.success(),
                "{name}'s liveness probe, as podman's health check: {}{}",
                String::from_utf8_lossy(&health.stdout),
                String::from_utf8_lossy(&health.stderr)
            );
        }
    }

    /// The address of the Pod of the workload `name`, on the Pods' network.
    fn address(&self, name: &str) -> String {
        let infra = self.podman_ok(&[
            "pod",
            "inspect",
            "--format",
            "{{.InfraContainerID}}",
            &format!("{name}-pod"),
        ]);
        self.podman_ok(&[
            "inspect",
            "--format",
            "{{(index .NetworkSettings.Networks \"qwiic\").IPAddress}}",
            &infra,
        ])
    }

    /// An HTTP request from the engine's network namespace: the status (0 when nothing
    /// answered) and the body.
    fn curl(&self, method: &str, url: &str, token: Option<&str>) -> (u16, String) {
        let mut command = Command::new("docker");
        command.args([
            "exec",
            &self.engine,
            "curl",
            "--silent",
            "--max-time",
            "5",
            "-X",
            method,
            "--write-out",
            "\n%{http_code}",
        ]);
        if let Some(token) = token {
            command.args(["--header", &format!("Authorization: Bearer {token}")]);
        }
        let output = command.arg(url).output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        (status.trim().parse().unwrap_or(0), body.to_owned())
    }

    fn logs(&self, container: &str) -> String {
        let output = self.podman(&["logs", container]);
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    }

    fn podman(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["exec", &self.engine, "podman"])
            .args(args)
            .output()
            .unwrap()
    }

    /// `podman ARGS`, which must succeed; its output, trimmed.
    fn podman_ok(&self, args: &[&str]) -> String {
        let output = self.podman(args);
        assert!(
            output.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn podman_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = Command::new("docker")
            .args(["exec", "-i", &self.engine, "podman"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "--force", "--volumes", &self.engine])
            .output();
    }
}

/// The API token's Secret, made as deploy/README.md makes it (from a file, key `token`).
fn token_secret(engine: &str) -> Value {
    let file = std::env::temp_dir().join(format!("{engine}-token"));
    std::fs::write(&file, TOKEN).unwrap();
    let output = run(Command::new("kubectl").args([
        "--namespace",
        "qwiic",
        "create",
        "secret",
        "generic",
        "qwiic-api-token",
        &format!("--from-file=token={}", file.display()),
        "--dry-run=client",
        "--output",
        "json",
    ]));
    let _ = std::fs::remove_file(&file);
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Whether `service` selects `workload`'s Pods; if it does, each of its ports must be the
/// container port it targets, so that the Service's name alone reaches the same place.
fn selects(service: &Value, workload: &Value) -> bool {
    let labels = &workload["spec"]["template"]["metadata"]["labels"];
    let selector = service["spec"]["selector"].as_object().unwrap();
    if !selector.iter().all(|(key, value)| &labels[key] == value) {
        return false;
    }
    let containers = workload["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    for port in service["spec"]["ports"].as_array().unwrap() {
        let target = &port["targetPort"];
        let container_port = containers
            .iter()
            .flat_map(|container| container["ports"].as_array().into_iter().flatten())
            .find(|p| &p["name"] == target || &p["containerPort"] == target)
            .unwrap_or_else(|| {
                panic!(
                    "{} targets {target}, which no container of {} has",
                    service["metadata"]["name"], workload["metadata"]["name"]
                )
            });
        assert_eq!(
            port["port"], container_port["containerPort"],
            "{}: a Service port that differs from its target cannot be stood in for by a name",
            service["metadata"]["name"]
        );
    }
    true
}

/// Lets others read what a Secret volume lets its group read, where the Pod sets fsGroup:
/// podman does not give the Pod that group (module docs).
fn without_fs_group(workload: &mut Value) {
    let spec = &mut workload["spec"]["template"]["spec"];
    if spec["securityContext"]["fsGroup"].is_null() {
        return;
    }
    for volume in spec["volumes"].as_array_mut().into_iter().flatten() {
        if let Some(mode) = volume["secret"]["defaultMode"].as_u64() {
            volume["secret"]["defaultMode"] = json!(mode | (mode & 0o040) >> 3);
        }
    }
}

/// The name podman gives a Deployment's or DaemonSet's Pod.
fn pod_name(workload: &Value) -> String {
    format!("{}-pod", workload["metadata"]["name"].as_str().unwrap())
}

/// Documents as one YAML stream (JSON is YAML).
fn yaml_stream(documents: &[Value]) -> String {
    documents.iter().map(|d| format!("---\n{d}\n")).collect()
}
