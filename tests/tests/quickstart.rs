//! The README's quick start, as a newcomer runs it, against a real registry on loopback
//! (Debian's `docker-registry`, the reference "distribution" server): the images are pushed as a
//! release pushes them (`scripts/publish-images`, one manifest list per image for amd64, arm64
//! and arm/v7), then the README's own command lines run, under Compose v2 and v1, in a copy of
//! the compose files with `IMAGE_REPOSITORY` pointing at the registry. What runs must be what
//! was pulled: each container's image is the list's entry for this machine's platform.
//!
//! Then the same lines where nothing can be pulled: the registry refuses connections, and the
//! lines build the images from source with the per-image Dockerfiles, from a stand-in for the
//! Rust image made here (`tests/userland/rust-image`, `RUST_IMAGE`).
//!
//! Needs the images of `scripts/build-images --arch all`, `docker-registry` and jq
//! (`scripts/test-deps` installs both), and for the build, debootstrap and the network.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::registry::{IMAGES, Registry};
use support::{Compose, Stack, docker_inspect, root, run};

const TAG: &str = "quickstart";

#[tokio::test]
async fn the_readme_quick_start_pulls_each_platforms_image_from_a_registry_under_v2_and_v1() {
    let registry = Registry::start();
    let repository = format!("{}/qwiic-containers", registry.address);
    let published = registry.publish(&repository, TAG);
    println!("{published}");
    // What this machine must pull for each image: the list, and in it the amd64 image.
    // Read from the registry once, before either Compose runs.
    let wanted: std::collections::HashMap<&str, (String, String)> = IMAGES
        .iter()
        .map(|(_, name)| {
            let list = published
                .lines()
                .find(|line| line.starts_with(&format!("{repository}/{name}:{TAG} ")))
                .and_then(|line| line.split_whitespace().nth(1))
                .unwrap_or_else(|| panic!("scripts/publish-images printed no digest for {name}"));
            let wanted = (
                format!("{repository}/{name}@{list}"),
                amd64_config(&repository, name),
            );
            (*name, wanted)
        })
        .collect();
    for compose in Compose::BOTH {
        quick_start(compose, "pulled", &repository, &[], |compose, service, name, image, seen| {
            let (list, config) = &wanted[name];
            assert!(
                image == config && seen.starts_with("linux/amd64 ") && seen.contains(list.as_str()),
                "{compose:?}: {service} runs {image} ({seen}), not {config}, the amd64 image of {list}"
            );
        })
        .await;
    }
}

#[tokio::test]
async fn the_readme_quick_start_builds_from_source_where_nothing_can_be_pulled_under_v2_and_v1() {
    // A registry that refuses every connection, and the build stage's image made here.
    let repository = format!("{}/qwiic-containers", test_kit::unused_address());
    let rust_image = run(&mut Command::new(root().join("tests/userland/rust-image")));
    let rust_image = String::from_utf8_lossy(&rust_image.stdout)
        .trim()
        .to_owned();
    for compose in Compose::BOTH {
        quick_start(
            compose,
            "built",
            &repository,
            &[("RUST_IMAGE", &rust_image)],
            |compose, service, name, image, seen| {
                let binary = name.trim_start_matches("qwiic-");
                let title = docker_inspect(
                    image,
                    "{{index .Config.Labels \"org.opencontainers.image.title\"}}",
                );
                // Built here: no registry knows it.
                assert!(
                    seen == "linux/amd64" && title == binary,
                    "{compose:?}: {service} runs {image} ({seen}, title {title:?}), not {binary} built from its Dockerfile"
                );
            },
        )
        .await;
    }
}

/// Runs the README's quick start under `compose` in a copy of the repository, with the images
/// under `repository`, none of them on this machine beforehand: the start line, every service
/// healthy, `check(compose, service, image name, image id, "os/arch repo-digests")` for what
/// each container runs, a press and a release seen on the LED, and the stop line, which must
/// leave no container. Prints how long the start line took (`what`: "pulled", "built").
async fn quick_start(
    compose: Compose,
    what: &str,
    repository: &str,
    more: &[(&str, &str)],
    check: impl Fn(Compose, &str, &str, &str, &str),
) {
    let commands = readme_quick_start();
    forget_local_images(repository);
    let dir = project_copy(compose);
    let project =
        format!("qwiic-quickstart-{what}-{compose:?}-{}", std::process::id()).to_lowercase();
    let mut variables = vec![
        ("IMAGE_REPOSITORY", repository),
        ("IMAGE_TAG", TAG),
        ("LED_PORT", "0"),
        ("SIMULATOR_PORT", "0"),
    ];
    variables.extend_from_slice(more);
    let stack = Stack::attach(compose, &project, &dir, &[], &variables);
    let (up, down) = commands.of(compose);

    let started = Instant::now();
    readme_line(up, &dir, &project, &variables);
    for (service, _) in IMAGES {
        stack.wait_health(service, "healthy", Duration::from_secs(30));
    }
    println!(
        "{compose:?}: `{up}` {what} the images and started in {:?}",
        started.elapsed()
    );
    for (service, name) in IMAGES {
        let image = stack.inspect(service, "{{.Image}}");
        let seen = docker_inspect(
            &image,
            "{{.Os}}/{{.Architecture}} {{join .RepoDigests \" \"}}",
        );
        check(compose, service, name, &image, &seen);
    }
    stack.simulator("/api/press").await;
    stack.wait_brightness(255, Duration::from_secs(5)).await;
    stack.simulator("/api/release").await;
    stack.wait_brightness(0, Duration::from_secs(5)).await;

    readme_line(down, &dir, &project, &variables);
    let left = run(Command::new("docker").args([
        "ps",
        "-aq",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
    ]));
    assert!(
        left.stdout.is_empty(),
        "{compose:?}: `{down}` left containers behind"
    );
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
    forget_local_images(repository);
}

/// The image id (its config's digest) of the amd64 entry of `name`'s list in the registry,
/// once the list is seen to name amd64, arm64 and arm/v7.
fn amd64_config(repository: &str, name: &str) -> String {
    let inspect = |reference: &str| -> Value {
        let output =
            run(Command::new("docker").args(["manifest", "inspect", "--insecure", reference]));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let list = inspect(&format!("{repository}/{name}:{TAG}"));
    let entries = list["manifests"].as_array().unwrap();
    let platforms: Vec<String> = entries
        .iter()
        .map(|entry| {
            let platform = &entry["platform"];
            let variant = platform["variant"]
                .as_str()
                .filter(|_| platform["architecture"] == "arm");
            format!(
                "{}/{}{}",
                platform["os"].as_str().unwrap(),
                platform["architecture"].as_str().unwrap(),
                variant
                    .map(|variant| format!("/{variant}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    for wanted in ["linux/amd64", "linux/arm64", "linux/arm/v7"] {
        assert!(
            platforms.iter().any(|platform| platform == wanted),
            "{name}'s list names {platforms:?}, without {wanted}"
        );
    }
    let amd64 = entries
        .iter()
        .find(|entry| entry["platform"]["architecture"] == "amd64")
        .and_then(|entry| entry["digest"].as_str())
        .unwrap();
    inspect(&format!("{repository}/{name}@{amd64}"))["config"]["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Removes every local name of the images under `repository` (tags and digests), so that
/// `up` must pull or build them; images that other names still hold stay.
fn forget_local_images(repository: &str) {
    for (_, name) in IMAGES {
        let output = run(Command::new("docker").args([
            "images",
            "--digests",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.Repository}}@{{.Digest}}",
            &format!("{repository}/{name}"),
        ]));
        let names: std::collections::BTreeSet<String> = String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .filter(|reference| !reference.ends_with("<none>"))
            .map(str::to_owned)
            .collect();
        // Untagging the last tag of an image may take its digest names with it: each name is
        // removed on its own, and what is left afterwards is what counts.
        for reference in &names {
            let _ = Command::new("docker").args(["rmi", reference]).output();
        }
        let left = run(Command::new("docker").args([
            "images",
            "--quiet",
            &format!("{repository}/{name}"),
        ]));
        assert!(
            left.stdout.is_empty(),
            "{repository}/{name} is still on this machine: {}",
            String::from_utf8_lossy(&left.stdout)
        );
    }
}

/// A folder holding what a fresh clone holds: every file git knows in the working tree
/// (tracked, and new ones not ignored), as they are now.
fn project_copy(compose: Compose) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "qwiic-quickstart-{compose:?}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let listed = run(Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root()));
    for path in listed
        .stdout
        .split(|byte| *byte == 0)
        .filter(|path| !path.is_empty())
    {
        let path = Path::new(std::str::from_utf8(path).unwrap());
        let from = root().join(path);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = dir.join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    dir
}

/// The quick start's command lines for each Compose, as the README prints them.
struct QuickStart {
    lines: Vec<String>,
}

impl QuickStart {
    /// The line that starts the system and the one that stops it, under `compose`.
    fn of(&self, compose: Compose) -> (&str, &str) {
        let mine = |line: &&String| match compose {
            Compose::V2 => line.starts_with("docker compose "),
            Compose::V1 => line.contains("docker-compose "),
        };
        let find = |what: &str| {
            self.lines
                .iter()
                .filter(mine)
                .find(|line| line.ends_with(what))
                .unwrap_or_else(|| {
                    panic!(
                        "the README's quick start has no {compose:?} line ending in {what:?}: {:?}",
                        self.lines
                    )
                })
                .as_str()
        };
        (find(" up -d"), find(" down"))
    }
}

/// The command lines of the README's "Quick start without hardware", comments taken off.
fn readme_quick_start() -> QuickStart {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|section| section.starts_with("Quick start without hardware"))
        .expect("the README has a section 'Quick start without hardware'");
    let mut lines = Vec::new();
    let mut in_code = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if in_code {
            let command = line.split(" # ").next().unwrap_or_default().trim();
            if !command.is_empty() {
                lines.push(command.to_owned());
            }
        }
    }
    QuickStart { lines }
}

/// Runs one of the README's lines through the shell in `dir`, as a user in a fresh clone with
/// no `.env` would, the project named and the variables set in the environment.
fn readme_line(line: &str, dir: &Path, project: &str, variables: &[(&str, &str)]) {
    let mut command = Command::new("sh");
    command
        .args(["-c", line])
        .current_dir(dir)
        .env_remove("COMPOSE_FILE")
        .env_remove("API_TOKEN")
        .env("COMPOSE_PROJECT_NAME", project)
        .envs(variables.iter().copied());
    run(&mut command);
}
