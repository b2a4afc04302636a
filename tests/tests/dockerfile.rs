//! The from-source path: each image's Dockerfile with every builder a user's command may reach,
//! and its runtime stage the same whichever way the images are built.
//!
//! No registry can be reached here, so each build names a base image on `registry.invalid`
//! (`RUST_IMAGE`): a builder that parsed the Dockerfile and got to the pull fails there, and
//! only there. A Dockerfile a builder cannot parse fails before that, with another message
//! (the classic builder and `FROM --platform=$BUILDPLATFORM` without a default:
//! `failed to parse platform : "" is an invalid component`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use support::{Compose, root, run};

/// Each image and its Dockerfile.
const IMAGES: [(&str, &str); 3] = [
    ("led-service", "Dockerfile.led"),
    ("button-service", "Dockerfile.button"),
    ("simulator", "Dockerfile.simulator"),
];
const UNREACHABLE_BASE: &str = "RUST_IMAGE=registry.invalid/rust:1.95-bookworm";

/// Runs a build that must fail at pulling the unreachable base image; returns its output.
fn build_until_the_pull(what: &str, command: &mut Command) -> String {
    let output = command.current_dir(root()).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{what}: built?\n{text}");
    assert!(
        text.contains("registry.invalid") && text.contains("no such host"),
        "{what}: failed before it reached the pull of the base image:\n{text}"
    );
    text
}

/// `docker build` of one Dockerfile from the unreachable base image; BuildKit on or off.
fn docker_build(buildkit: bool, platform: Option<&str>, dockerfile: &str) -> Command {
    let mut command = Command::new("docker");
    command
        .env("DOCKER_BUILDKIT", if buildkit { "1" } else { "0" })
        .arg("build");
    if let Some(platform) = platform {
        command.args(["--platform", platform]);
    }
    command.args(["-f", dockerfile, "--build-arg", UNREACHABLE_BASE, "."]);
    command
}

/// `build led` of the simulator-mode project, from the unreachable base image.
fn compose_build(compose: Compose) -> Command {
    let mut command = compose.command();
    command
        .env_remove("COMPOSE_FILE")
        .args(["-f", "docker-compose.yml"])
        .args(["-f", "docker-compose.override.yml"])
        .args(["build", "--build-arg", UNREACHABLE_BASE, "led"]);
    command
}

#[test]
fn the_classic_builder_parses_every_dockerfile_and_stops_only_at_the_registry() {
    // Docker 20.10 without BuildKit: JetPack 4.6's Docker, as `docker build` runs it there.
    for (_, dockerfile) in IMAGES {
        let text = build_until_the_pull(
            &format!("classic builder, {dockerfile}"),
            &mut docker_build(false, None, dockerfile),
        );
        assert!(
            text.contains("FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS build"),
            "the classic builder did not reach the build stage's FROM:\n{text}"
        );
    }
}

#[test]
fn compose_v1_builds_with_the_classic_builder_both_ways_and_stops_only_at_the_registry() {
    // docker-compose 1.29 builds through the docker CLI (COMPOSE_DOCKER_CLI_BUILD=1) or
    // through the engine's API (=0); both are the classic builder without DOCKER_BUILDKIT=1.
    for cli_build in ["1", "0"] {
        let mut command = compose_build(Compose::V1);
        command
            .env("DOCKER_BUILDKIT", "0")
            .env("COMPOSE_DOCKER_CLI_BUILD", cli_build);
        build_until_the_pull(
            &format!("docker-compose build, COMPOSE_DOCKER_CLI_BUILD={cli_build}"),
            &mut command,
        );
    }
}

#[test]
fn buildkit_parses_every_dockerfile_for_every_platform_and_stops_only_at_the_registry() {
    for platform in ["linux/amd64", "linux/arm64", "linux/arm/v7"] {
        for (_, dockerfile) in IMAGES {
            let what = format!("BuildKit, {dockerfile} for {platform}");
            let text =
                build_until_the_pull(&what, &mut docker_build(true, Some(platform), dockerfile));
            assert!(
                text.contains("load metadata for registry.invalid/rust"),
                "{what}:\n{text}"
            );
        }
    }
    // Compose v2 builds with BuildKit too.
    build_until_the_pull("docker compose build", &mut compose_build(Compose::V2));
}

/// The runtime stage `name` of `dockerfile`: its instructions, one per logical line.
fn runtime_stage(dockerfile: &str, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(dockerfile)).unwrap();
    let stage = text
        .split("\nFROM ")
        .find(|stage| stage.starts_with(&format!("scratch AS {name}\n")))
        .unwrap_or_else(|| panic!("no stage 'FROM scratch AS {name}' in {dockerfile}"));
    stage
        .replace("\\\n", " ")
        .lines()
        .skip(1)
        .take_while(|line| !line.is_empty())
        .filter(|line| !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The value of `instruction` in a stage (the rest of its line).
fn instruction<'a>(stage: &'a [String], instruction: &str) -> &'a str {
    stage
        .iter()
        .find_map(|line| line.strip_prefix(&format!("{instruction} ")))
        .unwrap_or_else(|| panic!("no {instruction} in {stage:?}"))
}

#[test]
fn the_images_from_binaries_are_the_dockerfiles_runtime_stages() {
    // scripts/build-images builds each runtime stage with its COPY from dist/<arch>/ instead of
    // the build stage; the result must carry the same user, entry point, ports, health check
    // and labels as the from-source path would.
    for (name, dockerfile) in IMAGES {
        let stage = runtime_stage(dockerfile, name);
        assert_eq!(
            stage[0],
            format!("COPY --from=build /out/{name} /{name}"),
            "{name}: the stage must start with its binary's COPY, which build-images replaces"
        );
        let image = format!("ghcr.io/qwiic-containers/qwiic-{name}:latest");
        let output = run(Command::new("docker").args(["image", "inspect", &image]));
        let inspected: Value = serde_json::from_slice(&output.stdout).unwrap();
        let config = &inspected[0]["Config"];
        assert_eq!(config["User"], instruction(&stage, "USER"), "{name}");
        let entrypoint: Value = serde_json::from_str(instruction(&stage, "ENTRYPOINT")).unwrap();
        assert_eq!(config["Entrypoint"], entrypoint, "{name}");
        let ports: Vec<String> = instruction(&stage, "EXPOSE")
            .split_whitespace()
            .map(|port| format!("{port}/tcp"))
            .collect();
        let exposed: Vec<&String> = config["ExposedPorts"].as_object().unwrap().keys().collect();
        assert_eq!(exposed, ports.iter().collect::<Vec<_>>(), "{name}");
        let health = instruction(&stage, "HEALTHCHECK");
        let mut test = vec!["CMD".to_owned()];
        test.extend(
            serde_json::from_str::<Vec<String>>(health.split(" CMD ").nth(1).unwrap()).unwrap(),
        );
        assert_eq!(
            config["Healthcheck"]["Test"],
            serde_json::json!(test),
            "{name}"
        );
        let labels: BTreeMap<String, String> =
            serde_json::from_value(config["Labels"].clone()).unwrap();
        let declared = instruction(&stage, "LABEL");
        for key in ["title", "description", "licenses", "source"] {
            let key = format!("org.opencontainers.image.{key}");
            let value = &labels[&key];
            assert!(
                declared.contains(&format!("{key}=\"{value}\"")),
                "{name}: {key}={value:?} is not what the Dockerfile says: {declared}"
            );
        }
        assert_eq!(
            labels["org.opencontainers.image.version"],
            env!("CARGO_PKG_VERSION")
        );
    }
}

#[test]
fn every_build_path_compiles_with_scripts_build_static() {
    // Each Dockerfile's build stage and scripts/build-images compile with the one script CI
    // tests (scripts/test-cross builds the same way; deploy/test_deploy.py checks the release
    // workflow uses it too, in the Dockerfiles' build image), each Dockerfile its own binary.
    let read = |path: &str| std::fs::read_to_string(root().join(path)).unwrap();
    for (name, dockerfile) in IMAGES {
        let text = read(dockerfile);
        let build_stage = text
            .split("\nFROM ")
            .find(|stage| stage.contains("AS build\n"))
            .unwrap();
        let runs: Vec<&str> = build_stage
            .lines()
            .filter(|line| line.starts_with("RUN "))
            .collect();
        assert_eq!(
            runs,
            [
                "RUN scripts/build-static --install-toolchain \"${TARGETARCH}${TARGETVARIANT}\""
                    .to_owned(),
                format!(
                    "RUN scripts/build-static --out /out \"${{TARGETARCH}}${{TARGETVARIANT}}\" {name}"
                ),
            ],
            "{dockerfile}"
        );
        // The runtime stage is the file's last: a plain `docker build -f` makes the image.
        assert!(
            text.trim_end()
                .rsplit("\nFROM ")
                .next()
                .unwrap()
                .starts_with(&format!("scratch AS {name}\n")),
            "{dockerfile}: the last stage must be {name}'s runtime stage"
        );
    }
    assert!(read("scripts/build-images").contains("scripts/build-static \"$arch\""));
}
