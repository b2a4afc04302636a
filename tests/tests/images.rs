//! The images as a board's Docker runs them. Docker before 20.10.10 (JetPack 4.6 ships 20.10.7)
//! and containerd before 1.4.11/1.5.7 refuse `clone3` with EPERM in their default seccomp
//! profile, and glibc 2.34+ then cannot start a thread: the binaries link musl, which creates
//! threads with `clone`. Here every image starts, answers and stops the same under Docker's
//! default profile and under a profile with that one rule (`fixtures/seccomp-clone3-eperm.json`).
//!
//! The arm64 and armv7 images run under qemu-user through binfmt_misc (`.ci/run` registers it).
//! qemu itself is a glibc program that starts its own threads with clone3, so under the
//! one-rule profile it is the emulator that fails, not the image: for those architectures the
//! binaries are proven never to call clone3 by tracing the emulated program's system calls.
//!
//! Needs the images of `scripts/build-images --arch all` and the binaries in dist/.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{root, run};

/// The three images and how each is seen to answer: the port, a read, and a request that acts.
const SERVICES: [Service; 3] = [
    Service {
        name: "led-service",
        port: 8080,
        act: ("POST", "/true"),
    },
    Service {
        name: "button-service",
        port: 9090,
        act: ("GET", "/metrics"),
    },
    Service {
        name: "simulator",
        port: 8081,
        act: ("POST", "/api/press"),
    },
];

#[derive(Clone, Copy)]
struct Service {
    name: &'static str,
    port: u16,
    act: (&'static str, &'static str),
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        "arm" => "armv7",
        _ => "amd64",
    }
}

/// The image scripts/build-images made for `arch`.
fn image(service: Service, arch: &str) -> String {
    format!(
        "ghcr.io/qwiic-containers/qwiic-{}:latest-{arch}",
        service.name
    )
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// A container removed when the test ends, however it ends.
struct Container {
    id: String,
}

impl Container {
    fn run(image: &str, seccomp: Option<&str>) -> Container {
        let mut command = Command::new("docker");
        command.args(["run", "-d", "--read-only", "--cap-drop", "ALL"]);
        command.args(["-e", "BUS=sim", "-e", "LED_URL=http://127.0.0.1:9"]);
        if let Some(profile) = seccomp {
            command
                .arg("--security-opt")
                .arg(format!("seccomp={}", fixture(profile).display()));
        }
        let output = run(command.arg(image));
        Container {
            id: String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        }
    }

    fn inspect(&self, format: &str) -> String {
        let output = run(Command::new("docker").args(["inspect", "--format", format, &self.id]));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn logs(&self) -> String {
        let output = Command::new("docker")
            .args(["logs", &self.id])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    }

    /// `docker stop` (SIGTERM, SIGKILL after 10 s): the exit code and how long it took.
    fn stop(&self) -> (String, Duration) {
        let started = Instant::now();
        run(Command::new("docker").args(["stop", "-t", "10", &self.id]));
        (self.inspect("{{.State.ExitCode}}"), started.elapsed())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// What a person sees of one run of an image: the statuses of the health check and of the
/// request that acts, the exit code after `docker stop`, and whether the log ends with "bye".
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    health: u16,
    act: u16,
    exit_code: String,
    said_bye: bool,
    panicked: bool,
}

async fn exercise(service: Service, arch: &str, seccomp: Option<&str>) -> Outcome {
    let image = image(service, arch);
    let container = Container::run(&image, seccomp);
    let ip = container.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
    let base = format!("http://{ip}:{}", service.port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // Emulated images take a moment longer to start.
    let until = Instant::now() + Duration::from_secs(30);
    let health = loop {
        match client.get(format!("{base}/healthz")).send().await {
            Ok(response) if response.status().is_success() => break response.status().as_u16(),
            result => {
                assert!(
                    Instant::now() < until,
                    "{image} did not answer /healthz within 30 s ({result:?}):\n{}",
                    container.logs()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (method, path) = service.act;
    let act = client
        .request(method.parse().unwrap(), format!("{base}{path}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    let (exit_code, took) = container.stop();
    let logs = container.logs();
    eprintln!("figure: {image} stopped in {took:?}");
    assert!(
        took < Duration::from_secs(5),
        "{image} took {took:?} to stop:\n{logs}"
    );
    Outcome {
        health,
        act,
        exit_code,
        said_bye: logs.contains("bye"),
        panicked: logs.contains("panicked"),
    }
}

fn expected() -> Outcome {
    Outcome {
        health: 200,
        act: 200,
        exit_code: "0".to_owned(),
        said_bye: true,
        panicked: false,
    }
}

#[tokio::test]
async fn native_images_start_answer_and_stop_alike_under_the_default_and_a_clone3_refusing_profile()
{
    for service in SERVICES {
        let default = exercise(service, host_arch(), None).await;
        let clone3_refused =
            exercise(service, host_arch(), Some("seccomp-clone3-eperm.json")).await;
        assert_eq!(default, expected(), "{} (default profile)", service.name);
        assert_eq!(
            clone3_refused, default,
            "{}: the one-rule profile changed what happens",
            service.name
        );
    }
}

#[tokio::test]
async fn emulated_images_start_answer_and_stop() {
    assert!(
        PathBuf::from("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists()
            && PathBuf::from("/proc/sys/fs/binfmt_misc/qemu-arm").exists(),
        "qemu-user is not registered with binfmt_misc (.ci/run registers it from /usr/lib/binfmt.d)"
    );
    for arch in ["arm64", "armv7"].into_iter().filter(|a| *a != host_arch()) {
        for service in SERVICES {
            assert_eq!(
                exercise(service, arch, None).await,
                expected(),
                "{} for {arch}",
                service.name
            );
        }
    }
}

#[tokio::test]
async fn the_arm_binaries_start_threads_with_clone_and_never_clone3() {
    for (arch, qemu) in [
        ("arm64", "qemu-aarch64-static"),
        ("armv7", "qemu-arm-static"),
    ] {
        let binary = root().join("dist").join(arch).join("led-service");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = listener.local_addr().unwrap();
        drop(listener);
        let trace =
            std::env::temp_dir().join(format!("qwiic-strace-{arch}-{}", std::process::id()));
        let mut child = Command::new(qemu)
            .arg("-strace")
            .arg(&binary)
            .env("BUS", "sim")
            .env("LISTEN_ADDR", listen.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&trace).unwrap())
            .spawn()
            .unwrap();
        // A request makes every thread the service has exist: the runtime's workers and the
        // bus owner.
        let client = reqwest::Client::new();
        let until = Instant::now() + Duration::from_secs(30);
        while client
            .post(format!("http://{listen}/true"))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < until, "{arch} led-service did not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let syscalls = std::fs::read_to_string(&trace).unwrap();
        let _ = std::fs::remove_file(&trace);
        let threads = syscalls.matches(" clone(CLONE_VM").count();
        assert!(threads >= 3, "{arch}: {threads} threads started with clone");
        assert!(
            !syscalls.contains("clone3("),
            "{arch}: the binary calls clone3, which Docker before 20.10.10 refuses"
        );
    }
}

#[tokio::test]
async fn a_refused_thread_ends_in_one_log_line_with_the_cause_and_the_fix() {
    for service in SERVICES {
        let image = image(service, host_arch());
        let container = Container::run(&image, Some("seccomp-no-threads.json"));
        let until = Instant::now() + Duration::from_secs(10);
        while container.inspect("{{.State.Status}}") != "exited" {
            assert!(
                Instant::now() < until,
                "{image} kept running without threads"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(container.inspect("{{.State.ExitCode}}"), "1", "{image}");
        let logs = container.logs();
        let lines: Vec<&str> = logs.lines().filter(|line| line.contains("ERROR")).collect();
        assert_eq!(lines.len(), 1, "{image}:\n{logs}");
        assert!(
            lines[0].contains("cannot start a thread: Resource temporarily unavailable")
                && lines[0].contains("seccomp")
                && lines[0].contains("update Docker"),
            "{image}: {}",
            lines[0]
        );
        assert!(!logs.contains("panicked"), "{image}:\n{logs}");
    }
}

#[test]
fn every_image_is_its_architecture_and_under_the_size_the_readme_states() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains("each image is under 4 MB"),
        "the README's size claim changed: update this test"
    );
    for service in SERVICES {
        for (arch, platform) in [
            ("amd64", "linux/amd64"),
            ("arm64", "linux/arm64"),
            ("armv7", "linux/arm/v7"),
        ] {
            let image = image(service, arch);
            let output = run(Command::new("docker").args([
                "image",
                "inspect",
                "--format",
                "{{.Os}}/{{.Architecture}}{{with .Variant}}/{{.}}{{end}} {{.Size}}",
                &image,
            ]));
            let text = String::from_utf8_lossy(&output.stdout);
            let (actual, size) = text.trim().split_once(' ').unwrap();
            assert_eq!(actual, platform, "{image}");
            let size: u64 = size.parse().unwrap();
            assert!(size < 4_000_000, "{image} is {size} bytes, over 4 MB");
        }
    }
}
