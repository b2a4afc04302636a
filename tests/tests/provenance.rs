//! Images anyone can verify, against a real registry on loopback (Debian's `docker-registry`):
//! the images are published as a release publishes them (`scripts/publish-images`), signed and
//! given their SBOMs as a release does (`scripts/sign-images`, with a key pair made here instead
//! of the release's keyless identity, and no transparency log: nothing leaves the machine), and
//! checked with the README's "Verify what you run" (`scripts/verify-image`). Then the tag is
//! tampered with: another image under it, then one signed by another key; each must fail.
//!
//! Needs the images of `scripts/build-images --arch all`, `docker-registry`, jq, cosign and
//! cargo-cyclonedx (`scripts/test-deps` installs them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::registry::{IMAGES, Registry};
use support::{docker_inspect, root, run};

const TAG: &str = "provenance";

/// Runs a script of the repository and returns its output, whatever its status.
fn script(name: &str, args: &[&str]) -> Output {
    Command::new(root().join("scripts").join(name))
        .args(args)
        .env("COSIGN_PASSWORD", "")
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A cosign key pair in `dir`: `<dir>/<name>.key` and `<dir>/<name>.pub`.
fn key_pair(dir: &Path, name: &str) -> (String, String) {
    run(Command::new("cosign")
        .args(["generate-key-pair", "--output-key-prefix", name])
        .current_dir(dir)
        .env("COSIGN_PASSWORD", ""));
    let path = |extension: &str| {
        dir.join(format!("{name}.{extension}"))
            .display()
            .to_string()
    };
    (path("key"), path("pub"))
}

/// Each crate of Cargo.lock with its version.
fn locked_crates() -> Vec<(String, String)> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    lock.split("[[package]]")
        .filter_map(|package| {
            let field = |key: &str| {
                package.lines().find_map(|line| {
                    line.strip_prefix(&format!("{key} = \""))
                        .and_then(|rest| rest.strip_suffix('"'))
                        .map(str::to_owned)
                })
            };
            Some((field("name")?, field("version")?))
        })
        .collect()
}

#[test]
fn published_images_are_signed_with_their_sboms_and_a_tampered_tag_fails_verification() {
    let registry = Registry::start();
    let repository = format!("{}/qwiic-containers", registry.address);
    registry.publish(&repository, TAG);
    run(&mut Command::new(root().join("scripts/sbom")));
    let dir = std::env::temp_dir().join(format!("qwiic-provenance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (release_key, release_pub) = key_pair(&dir, "release");
    let (intruder_key, intruder_pub) = key_pair(&dir, "intruder");

    let signed = script(
        "sign-images",
        &[
            "--repository",
            &repository,
            "--tag",
            TAG,
            "--key",
            &release_key,
        ],
    );
    assert!(signed.status.success(), "{}", text(&signed));
    let signed = String::from_utf8_lossy(&signed.stdout).into_owned();

    let locked = locked_crates();
    for (_, name) in IMAGES {
        let reference = format!("{repository}/{name}:{TAG}");
        let digest = signed
            .lines()
            .find(|line| line.starts_with(&format!("{reference} ")))
            .and_then(|line| line.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("scripts/sign-images named no digest for {name}:\n{signed}"));
        // The list, and each platform's image in it, verify against the release's key.
        for reference in [reference.clone(), format!("{reference}-arm64")] {
            let sbom = dir.join(format!("{name}.cdx.json"));
            let verified = script(
                "verify-image",
                &[
                    "--key",
                    &release_pub,
                    "--sbom-out",
                    sbom.to_str().unwrap(),
                    &reference,
                ],
            );
            let said = text(&verified);
            assert!(verified.status.success(), "{reference}: {said}");
            assert!(said.contains("signed by the key"), "{said}");
            if !reference.ends_with("-arm64") {
                // The list's digest is the one signed.
                let verified = format!("verified {repository}/{name}@{digest}: ");
                assert!(said.contains(&verified), "{said}");
            }
            // The SBOM lists the binary's crates at their locked versions.
            let sbom: Value =
                serde_json::from_str(&std::fs::read_to_string(&sbom).unwrap()).unwrap();
            assert_eq!(sbom["bomFormat"], "CycloneDX", "{reference}");
            let components: Vec<(String, String)> = sbom["components"]
                .as_array()
                .unwrap()
                .iter()
                .map(|component| {
                    (
                        component["name"].as_str().unwrap().to_owned(),
                        component["version"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            assert!(
                components.len() > 50,
                "{reference}: {} components",
                components.len()
            );
            for component in &components {
                assert!(
                    locked.contains(component),
                    "{reference}: {component:?} is not in Cargo.lock"
                );
            }
            for (image, crate_) in [
                ("qwiic-led-service", "axum"),
                ("qwiic-button-service", "gpiocdev"),
                ("qwiic-simulator", "qwiic-sim"),
            ] {
                if image == name {
                    assert!(
                        components.iter().any(|(name, _)| name == crate_),
                        "{reference}: {crate_} missing from its SBOM"
                    );
                }
            }
        }
    }

    // Another image pushed under a signed tag: nothing signed it.
    let led = format!("{repository}/qwiic-led-service:{TAG}");
    run(Command::new("docker").args([
        "tag",
        &format!("{repository}/qwiic-button-service:{TAG}-amd64"),
        &led,
    ]));
    run(Command::new("docker").args(["push", "--quiet", &led]));
    let tampered = script("verify-image", &["--key", &release_pub, &led]);
    let said = text(&tampered);
    assert!(!tampered.status.success(), "{said}");
    assert!(
        said.contains(&format!("{led} (sha256:")) && said.contains("is NOT signed by the key"),
        "{said}"
    );

    // Signed, but by another key: still not the release's.
    let pushed = String::from_utf8_lossy(
        &run(Command::new("docker").args([
            "buildx",
            "imagetools",
            "inspect",
            &led,
            "--format",
            "{{json .Manifest.Digest}}",
        ]))
        .stdout,
    )
    .trim()
    .trim_matches('"')
    .to_owned();
    let repository_led = format!("{repository}/qwiic-led-service@{pushed}");
    run(Command::new("cosign")
        .args([
            "sign",
            "--yes",
            "--key",
            &intruder_key,
            "--tlog-upload=false",
            "--allow-http-registry",
            &repository_led,
        ])
        .env("COSIGN_PASSWORD", ""));
    let tampered = script("verify-image", &["--key", &release_pub, &led]);
    let said = text(&tampered);
    assert!(
        !tampered.status.success() && said.contains("is NOT signed by the key"),
        "{said}"
    );
    // The intruder's own key verifies the signature, but no SBOM came with it.
    let partial = script("verify-image", &["--key", &intruder_pub, &led]);
    let said = text(&partial);
    assert!(!partial.status.success(), "{said}");
    assert!(said.contains("has no CycloneDX SBOM attested"), "{said}");

    let _ = std::fs::remove_dir_all(&dir);
}

fn git(args: &[&str]) -> String {
    let output = run(Command::new("git").args(args).current_dir(root()));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

const ARCHES: [(&str, &str); 3] = [
    ("amd64", "linux/amd64"),
    ("arm64", "linux/arm64"),
    ("armv7", "linux/arm/v7"),
];

#[test]
fn every_image_carries_its_commits_time_and_revision_and_no_binary_names_where_it_was_built() {
    let epoch = git(&["log", "-1", "--format=%ct"]);
    let created = String::from_utf8_lossy(
        &run(Command::new("date").args(["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%dT%H:%M:%SZ"]))
            .stdout,
    )
    .trim()
    .to_owned();
    let revision = git(&["rev-parse", "HEAD"]);
    let cargo_home = std::env::var("CARGO_HOME")
        .unwrap_or_else(|_| format!("{}/.cargo", std::env::var("HOME").unwrap()));
    let clone = root().display().to_string();
    for (_, name) in IMAGES {
        for (arch, _) in ARCHES {
            let image = format!("ghcr.io/qwiic-containers/{name}:latest-{arch}");
            let output = run(Command::new("docker").args(["image", "inspect", &image]));
            let inspected: Value = serde_json::from_slice(&output.stdout).unwrap();
            let stale = "(scripts/build-images --arch all builds them from this commit)";
            assert_eq!(inspected[0]["Created"], created.as_str(), "{image} {stale}");
            assert_eq!(
                inspected[0]["Config"]["Labels"]["org.opencontainers.image.revision"],
                revision.as_str(),
                "{image} {stale}"
            );
            let binary_name = name.strip_prefix("qwiic-").unwrap();
            let binary = std::fs::read(root().join("dist").join(arch).join(binary_name)).unwrap();
            for path in [&clone, &cargo_home] {
                assert!(
                    !binary
                        .windows(path.len())
                        .any(|window| window == path.as_bytes()),
                    "dist/{arch}/{binary_name}: names {path}, which --remap-path-prefix maps"
                );
            }
        }
    }
}

#[test]
fn a_published_release_is_compared_with_the_images_built_here_and_a_different_one_is_named() {
    let registry = Registry::start();
    let repository = format!("{}/qwiic-containers", registry.address);
    registry.publish(&repository, "reproduce");
    let args = ["--repository", &repository, "--tag", "reproduce"];
    let same = script("reproduce", &args);
    let said = text(&same);
    assert!(same.status.success(), "{said}");
    let id = |image: &str| docker_inspect(image, "{{.Id}}");
    for (_, name) in IMAGES {
        for (arch, platform) in ARCHES {
            let here = id(&format!("{repository}/{name}:reproduce-{arch}"));
            assert!(
                said.contains(&format!("same       {name} {platform}  {here}\n")),
                "{said}"
            );
        }
    }

    // What was published is not what this machine built: named, with both IDs.
    let led = format!("{repository}/qwiic-led-service:reproduce-arm64");
    let published = id(&led);
    run(Command::new("docker").args([
        "tag",
        &format!("{repository}/qwiic-button-service:reproduce-arm64"),
        &led,
    ]));
    let different = script("reproduce", &args);
    let said = text(&different);
    assert!(!different.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "DIFFERENT  qwiic-led-service linux/arm64  here {}, there {published}\n",
            id(&led)
        )),
        "{said}"
    );
    assert!(said.contains("1 differences."), "{said}");
    // The tag that did not resolve: a list that is not in the registry.
    let missing = script(
        "reproduce",
        &["--repository", &repository, "--tag", "0.0.0"],
    );
    let said = text(&missing);
    assert!(!missing.status.success(), "{said}");
    assert!(
        said.contains("cannot read ") && said.contains("check the name and tag"),
        "{said}"
    );
}

/// An advisory database holding one advisory, against `crate_` at every version.
fn advisory_db(dir: &Path, crate_: &str) {
    let folder = dir.join("crates").join(crate_);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("RUSTSEC-2099-0001.md"),
        format!(
            "```toml\n[advisory]\nid = \"RUSTSEC-2099-0001\"\npackage = \"{crate_}\"\ndate = \"2099-01-01\"\nurl = \"https://example.invalid/advisory\"\n\n[versions]\npatched = []\n```\n\n# A test advisory\n\nEvery version of {crate_}, for the test.\n"
        ),
    )
    .unwrap();
}

#[test]
fn the_image_audit_fails_on_an_advisory_and_on_a_binary_that_embeds_no_dependency_tree() {
    let dir = std::env::temp_dir().join(format!("qwiic-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let image = "ghcr.io/qwiic-containers/qwiic-button-service:latest-arm64";
    // The snapshot finds nothing in it (scripts/test ran the audit on every image already)...
    let clean = script("audit-images", &[image]);
    assert!(clean.status.success(), "{}", text(&clean));
    assert!(
        text(&clean).contains(&format!("{image}: ")),
        "{}",
        text(&clean)
    );
    // ...and a database with an advisory against a crate inside it fails it, by its id.
    advisory_db(&dir.join("db"), "gpiocdev");
    let flagged = Command::new(root().join("scripts/audit-images"))
        .arg(image)
        .env("ADVISORY_DB", dir.join("db"))
        .output()
        .unwrap();
    let said = text(&flagged);
    assert!(!flagged.status.success(), "{said}");
    assert!(
        said.contains(&format!("{image}: ")) && said.contains("RUSTSEC-2099-0001"),
        "{said}"
    );

    // A binary built without cargo-auditable: refused, not guessed at from panic messages.
    let plain = "qwiic-containers/no-dependency-tree:test";
    std::fs::copy("/bin/true", dir.join("true")).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY true /true\nENTRYPOINT [\"/true\"]\n",
    )
    .unwrap();
    run(Command::new("docker")
        .args(["build", "--quiet", "-t", plain])
        .arg(&dir)
        .env("DOCKER_BUILDKIT", "0"));
    let refused = script("audit-images", &[plain]);
    let said = text(&refused);
    let _ = Command::new("docker").args(["rmi", plain]).output();
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("embeds no dependency tree"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
