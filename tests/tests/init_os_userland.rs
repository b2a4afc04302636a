//! init_os.sh for real, in minimal Debian bookworm and trixie userlands (debootstrap
//! --variant=minbase, then `docker import`: tests/userland/build-image, built once and reused
//! while its recipe is unchanged). apt, dpkg, the packages, users, groups, files and compose are
//! real; only what a container cannot have is a stand-in (tests/userland/stand-ins): loading
//! the kernel module, udevd, and the button answering on the bus. The bus node itself is real
//! (`mknod /dev/i2c-N c 89 N`): without a device behind it, the real i2cget fails as it does
//! on a board with nothing plugged in.
//!
//! The script runs as root with SUDO_USER=pi, a real user of the image, so group membership
//! and the ownership of .env are real. It never runs on the host.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the project is cloned on the device, owned by pi.
const PROJECT: &str = "/home/pi/qwiic-containers";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The image of a Debian release, built by the first test that needs it.
fn image(suite: &'static str) -> &'static str {
    remove_leftover_containers();
    static BOOKWORM: OnceLock<String> = OnceLock::new();
    static TRIXIE: OnceLock<String> = OnceLock::new();
    let cell = match suite {
        "bookworm" => &BOOKWORM,
        "trixie" => &TRIXIE,
        other => panic!("no userland image for {other}"),
    };
    cell.get_or_init(|| {
        let started = Instant::now();
        let output = Command::new(root().join("tests/userland/build-image"))
            .arg(suite)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "building the {suite} userland failed:\n{}",
            text(&output.stderr)
        );
        eprintln!(
            "{suite} userland image ready in {:.1?}: {}",
            started.elapsed(),
            text(&output.stderr).trim()
        );
        text(&output.stdout).trim().to_owned()
    })
}

/// One run of init_os.sh.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "init_os.sh failed:\n{}{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn failed(self) -> Run {
        assert_eq!(
            self.code,
            Some(1),
            "init_os.sh should have failed with exit 1:\n{}{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The changes it made ("doing: ...") or would make ("would: ..."), without the prefix.
    fn changes(&self, prefix: &str) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|line| line.strip_prefix(prefix))
            .map(str::to_owned)
            .collect()
    }

    /// The command from "Start it with: <command>".
    fn start_command(&self) -> String {
        self.stdout
            .lines()
            .find_map(|line| line.split("Start it with: ").nth(1))
            .unwrap_or_else(|| panic!("no start command in:\n{}", self.stdout))
            .to_owned()
    }

    fn assert_nothing_to_change(&self) {
        assert!(
            self.stdout
                .contains("Nothing to change: this device is ready"),
            "{}",
            self.stdout
        );
        assert!(
            self.changes("doing: ").is_empty(),
            "a run that should change nothing did:\n{}",
            self.stdout
        );
    }
}

/// A container of a userland image: a device as far as init_os.sh can tell.
struct Device {
    name: String,
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

/// The label of this suite's containers: the id of the test process that started them.
const LABEL: &str = "qwiic.init-os-userland.pid";

/// Removes the containers of earlier runs that were killed before they could clean up.
fn remove_leftover_containers() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let output = Command::new("docker")
            .args(["ps", "-a", "--filter", &format!("label={LABEL}")])
            .args([
                "--format",
                &format!("{{{{.Names}}}} {{{{.Label \"{LABEL}\"}}}}"),
            ])
            .output()
            .unwrap();
        for line in text(&output.stdout).lines() {
            if let Some((name, pid)) = line.split_once(' ') {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = Command::new("docker").args(["rm", "-f", name]).output();
                }
            }
        }
    });
}

impl Device {
    /// A fresh userland with the project's files in /home/pi/qwiic-containers.
    fn new(suite: &'static str, name: &str) -> Device {
        let image = image(suite);
        let name = format!("qwiic-init-os-{name}-{}", std::process::id());
        let _ = Command::new("docker").args(["rm", "-f", &name]).output();
        let source = format!("{}:/src:ro", root().canonicalize().unwrap().display());
        let output = Command::new("docker")
            .args(["run", "-d", "--name", &name])
            .args(["--label", &format!("{LABEL}={}", std::process::id())])
            // /sys/module of the container's own: what the module stand-in loads shows there.
            .args(["--tmpfs", "/sys/module"])
            // i2c-dev's major number: the test makes bus nodes with mknod.
            .args(["--device-cgroup-rule", "c 89:* rmw"])
            .args(["-v", &source, image])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "docker run {image}: {}",
            text(&output.stderr)
        );
        let device = Device { name };
        device.sh(&format!(
            "mkdir -p {PROJECT} && cd /src && \
             cp init_os.sh docker-compose.yml docker-compose.device.yml \
                docker-compose.override.yml docker-compose.token.yml Dockerfile.* {PROJECT}/ && \
             chown -R pi:pi /home/pi"
        ));
        device
    }

    /// Runs a shell script as root in the container; fails the test if it fails.
    fn sh(&self, script: &str) -> String {
        let output = self.try_sh(script);
        assert!(
            output.status.success(),
            "in {}: {script}\n{}{}",
            self.name,
            text(&output.stdout),
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    fn try_sh(&self, script: &str) -> Output {
        Command::new("docker")
            .args(["exec", &self.name, "bash", "-c", script])
            .output()
            .unwrap()
    }

    /// A script as the user pi, in the project directory.
    fn as_pi(&self, script: &str) -> Output {
        self.try_sh(&format!("cd {PROJECT} && su pi -c {}", shell_quote(script)))
    }

    /// What a booted board has and a container lacks: modprobe that loads a module, and
    /// udevadm that talks to a running udevd.
    fn booted(&self) -> &Device {
        self.sh("cp /opt/qwiic-test/bin/modprobe /opt/qwiic-test/bin/udevadm /usr/local/sbin/");
        self
    }

    /// A real i2c-dev node for bus N, with nothing behind it.
    fn bus(&self, n: u32) -> &Device {
        self.sh(&format!("mknod /dev/i2c-{n} c 89 {n}"));
        self
    }

    /// A Qwiic Button on the bus: the i2cget stand-in answers its ID register.
    fn button(&self) -> &Device {
        self.sh("echo 0x5d > /opt/qwiic-test/button");
        self
    }

    /// `sudo ./init_os.sh ARGS` by pi: root, with SUDO_USER=pi.
    fn init_os(&self, args: &str) -> Run {
        self.init_os_with("./init_os.sh", args)
    }

    fn init_os_with(&self, command: &str, args: &str) -> Run {
        let started = Instant::now();
        let output = self.try_sh(&format!(
            "cd {PROJECT} && SUDO_USER=pi timeout 600 {command} {args}"
        ));
        eprintln!("{}: {command} {args}: {:.1?}", self.name, started.elapsed());
        Run {
            code: output.status.code(),
            stdout: text(&output.stdout),
            stderr: text(&output.stderr),
        }
    }

    /// Runs init_os.sh and fails the test if it changed any file of the system.
    fn init_os_changing_nothing(&self, command: &str, args: &str) -> Run {
        self.sh("touch /tmp/before-run");
        let run = self.init_os_with(command, args);
        let changed = self.sh(
            "find /etc /usr /var /home /boot /opt /sys/module /dev -xdev -newer /tmp/before-run \
             -not -path '/var/tmp*' 2>/dev/null || true",
        );
        assert!(
            changed.trim().is_empty(),
            "{command} {args} changed:\n{changed}\n{}",
            run.stdout
        );
        run
    }

    fn read(&self, path: &str) -> String {
        self.sh(&format!("cat {path}"))
    }

    /// "user group mode" of a file.
    fn stat(&self, path: &str) -> String {
        self.sh(&format!("stat -c '%U %G %a' {path}"))
            .trim()
            .to_owned()
    }

    fn groups_of_pi(&self) -> Vec<String> {
        self.sh("id -nG pi")
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    fn gid(&self, group: &str) -> String {
        self.sh(&format!("getent group {group} | cut -d: -f3"))
            .trim()
            .to_owned()
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The compose command init_os.sh printed, run as pi in the project: `<command> config`.
fn assert_compose_config_works(device: &Device, command: &str) -> String {
    let output = device.as_pi(&format!("{command} config"));
    assert!(
        output.status.success(),
        "`{command} config` failed as pi:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// A bare system made ready, the story a device owner lives on each release:
/// a dry run that plans exactly what the real run then does, the real run, a second run that
/// changes nothing, and the printed start command working.
fn bare_system_is_made_ready(suite: &'static str, compose: &str) {
    let started = Instant::now();
    let device = Device::new(suite, &format!("bare-{suite}"));
    device.booted().bus(1).button();
    assert_eq!(
        device.sh("ls /var/lib/apt/lists").trim(),
        "partial",
        "a bare system has never refreshed its package lists"
    );

    // The dry run changes nothing, even with the bus there and i2c-tools missing.
    let dry = device
        .init_os_changing_nothing("./init_os.sh", "--dry-run")
        .ok();
    assert!(dry.stdout.contains("nothing was changed"), "{}", dry.stdout);
    let planned = dry.changes("would: ");
    for unwanted in ["download.docker.com", "curl", "docker-compose-plugin"] {
        assert!(
            !dry.stdout.contains(unwanted),
            "the distribution's compose is recent enough: no {unwanted}:\n{}",
            dry.stdout
        );
    }

    // The real run does what the dry run said, in that order.
    let real = device.init_os("").ok();
    assert_eq!(
        real.changes("doing: "),
        planned,
        "the dry run planned something else than the real run did:\n{}",
        real.stdout
    );
    // Compose v1 ignores pull_policy and would build missing images on the device.
    let start = match compose {
        "docker-compose" => {
            "(docker-compose pull || docker-compose build) && docker-compose up -d".to_owned()
        }
        v2 => format!("{v2} up -d"),
    };
    assert_eq!(real.start_command(), start, "{}", real.stdout);
    assert!(
        real.stdout
            .contains("log out and in again (or: newgrp docker)"),
        "{}",
        real.stdout
    );
    assert!(
        real.stdout.contains("the docker group is root-equivalent"),
        "{}",
        real.stdout
    );
    let groups = device.groups_of_pi();
    assert!(
        groups.contains(&"docker".to_owned()) && groups.contains(&"i2c".to_owned()),
        "{groups:?}"
    );
    assert_eq!(device.stat("/dev/i2c-1"), "root i2c 660", "the udev rule");
    assert_eq!(device.stat(&format!("{PROJECT}/.env")), "pi pi 600");
    let gid = device.gid("i2c");
    let env = device.read(&format!("{PROJECT}/.env"));
    assert!(
        env.contains(
            "COMPOSE_FILE=docker-compose.yml:docker-compose.device.yml:docker-compose.token.yml\n"
        ) && env.contains("I2C_DEVICE=/dev/i2c-1\n")
            && env.contains(&format!("I2C_GID={gid}\n")),
        "{env}"
    );
    assert!(
        device
            .try_sh("test ! -e /etc/apt/sources.list.d/docker.list")
            .status
            .success(),
        "no Docker repository where the distribution has compose"
    );

    // The printed start command works for pi, and sees the device mode from .env. Compose v1
    // has no `docker compose`: printing that there would send the owner to an error.
    let config = assert_compose_config_works(&device, compose);
    let v2 = device.as_pi("docker compose version").status.success();
    assert_eq!(
        v2,
        compose == "docker compose",
        "`docker compose` works: {v2}"
    );
    assert!(
        config.contains("/dev/i2c-1") && config.contains(&gid),
        "{config}"
    );

    // A second run, started with sh as a README reader might: nothing to change.
    device
        .init_os_changing_nothing("sh", "init_os.sh")
        .ok()
        .assert_nothing_to_change();
    eprintln!(
        "{suite}: bare system made ready in {:.1?}",
        started.elapsed()
    );
}

#[test]
fn bookworm_bare_system_gets_compose_v1_and_the_printed_docker_hyphen_compose_command_works() {
    bare_system_is_made_ready("bookworm", "docker-compose");
}

#[test]
fn trixie_bare_system_gets_its_own_compose_v2_and_the_printed_docker_compose_command_works() {
    bare_system_is_made_ready("trixie", "docker compose");
}

/// Sets up a device on a release; returns it ready (one full real run).
fn ready_device(suite: &'static str, name: &str) -> Device {
    let device = Device::new(suite, name);
    device.booted().bus(1).button();
    device.init_os("").ok();
    device
}

#[test]
fn env_keeps_user_keys_across_runs_and_a_bus_change_and_is_never_written_through_a_symlink() {
    let device = ready_device("trixie", "user-keys");
    // As the README says, as the user, no sudo: .env is the user's.
    let appended = device.as_pi(
        "printf '# my settings\\nAPI_TOKEN=s3cret\\n' >> .env && echo IMAGE_TAG=latest-arm64 >> .env",
    );
    assert!(
        appended.status.success(),
        "pi cannot append to .env: {}",
        text(&appended.stderr)
    );
    let before = device.read(&format!("{PROJECT}/.env"));

    device
        .init_os_changing_nothing("./init_os.sh", "")
        .ok()
        .assert_nothing_to_change();
    assert_eq!(device.read(&format!("{PROJECT}/.env")), before);

    // The button moves to bus 2: only I2C_DEVICE changes, every other line stays.
    device.bus(2);
    let run = device.init_os("--bus 2").ok();
    assert_eq!(run.changes("doing: ").len(), 1, "{}", run.stdout);
    assert_eq!(
        device.read(&format!("{PROJECT}/.env")),
        before.replace("I2C_DEVICE=/dev/i2c-1", "I2C_DEVICE=/dev/i2c-2")
    );
    assert_eq!(device.stat(&format!("{PROJECT}/.env")), "pi pi 600");
    let config = assert_compose_config_works(&device, "docker compose");
    assert!(
        config.contains("s3cret") && config.contains("service:latest-arm64"),
        "{config}"
    );
    // Later runs keep bus 2 (from .env) without being told.
    device
        .init_os_changing_nothing("./init_os.sh", "")
        .ok()
        .assert_nothing_to_change();

    // .env replaced by a link to a file root owns: refused, the target untouched.
    device.sh(&format!(
        "cp /etc/shadow /tmp/shadow && rm {PROJECT}/.env && ln -s /etc/shadow {PROJECT}/.env"
    ));
    let run = device.init_os("").failed();
    assert!(
        run.stderr
            .contains("/home/pi/qwiic-containers/.env is a symbolic link (to /etc/shadow)")
            && run.stderr.contains("make it a plain file"),
        "{}",
        run.stderr
    );
    device.sh(&format!(
        "cmp /etc/shadow /tmp/shadow && test -L {PROJECT}/.env"
    ));
}

/// Raspberry Pi OS's config.txt, ending in a model's section as on the CM5 images.
const PI_CONFIG: &str = "\
# For more options and information see
# http://rptl.io/configtxt

# Uncomment some or all of these to enable the optional hardware interfaces
#dtparam=i2c_arm=on
#dtparam=i2s=on
#dtparam=spi=on

dtparam=audio=on
camera_auto_detect=1
dtoverlay=vc4-kms-v3d
arm_64bit=1

[cm4]
otg_mode=1

[all]

[cm5]
dtoverlay=dwc2,dr_mode=host
";

#[test]
fn raspberry_pi_layout_enables_i2c_for_every_model_then_after_the_reboot_is_ready() {
    let device = Device::new("bookworm", "pi");
    device.booted().button();
    device.sh(&format!(
        "mkdir -p /boot/firmware && printf '%s' {} > /boot/firmware/config.txt",
        shell_quote(PI_CONFIG)
    ));

    let first = device.init_os("").ok();
    assert!(
        first.stdout.contains("platform: raspberrypi"),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains("Reboot to enable I2C (sudo reboot), then run: sudo ./init_os.sh again."),
        "{}",
        first.stdout
    );
    // The commented line of the unconditional part is enabled where it is: not in [cm5].
    let config = device.read("/boot/firmware/config.txt");
    assert_eq!(
        config,
        PI_CONFIG.replace("#dtparam=i2c_arm=on\n", "dtparam=i2c_arm=on\n")
    );
    assert!(
        !device
            .try_sh("test -e /home/pi/qwiic-containers/.env")
            .status
            .success()
    );

    // The reboot: the bus appears.
    device.bus(1);
    let second = device.init_os("").ok();
    assert!(
        second
            .stdout
            .contains("ok: I2C is enabled in /boot/firmware/config.txt")
            && second
                .stdout
                .contains("Qwiic Button found at 0x6f on /dev/i2c-1"),
        "{}",
        second.stdout
    );
    assert!(!second.stdout.contains("Reboot"), "{}", second.stdout);
    device
        .init_os_changing_nothing("./init_os.sh", "")
        .ok()
        .assert_nothing_to_change();

    // The clock-stretching workaround: the bit-banged i2c-gpio overlay, bus 3.
    let gpio = device.init_os("--pi-i2c gpio").ok();
    assert!(
        gpio.stdout.contains("Reboot to enable I2C"),
        "{}",
        gpio.stdout
    );
    let config = device.read("/boot/firmware/config.txt");
    assert!(
        config.contains("\ndtparam=i2c_arm=off\n")
            && config.ends_with(
                "[cm5]\ndtoverlay=dwc2,dr_mode=host\n[all]\n\
                 dtoverlay=i2c-gpio,bus=3,i2c_gpio_sda=2,i2c_gpio_scl=3\n"
            ),
        "{config}"
    );
    device.sh("rm /dev/i2c-1");
    device.bus(3);
    let after = device.init_os("").ok();
    assert!(
        after
            .stdout
            .contains("Qwiic Button found at 0x6f on /dev/i2c-3"),
        "{}",
        after.stdout
    );
    assert!(
        device
            .read(&format!("{PROJECT}/.env"))
            .contains("I2C_DEVICE=/dev/i2c-3\n")
    );
    device
        .init_os_changing_nothing("./init_os.sh", "")
        .ok()
        .assert_nothing_to_change();
}

#[test]
fn a_bus_without_a_device_shows_i2cgets_own_error_and_keeps_the_relogin_note() {
    let device = Device::new("trixie", "no-device");
    device.booted().bus(1); // no button
    let run = device.init_os("").failed();
    assert!(
        run.stderr.contains(
            "no Qwiic Button answers at 0x6f on /dev/i2c-1: i2cget says: \
             Error: Could not open file `/dev/i2c-1': No such device or address"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("sudo i2cdetect -y -r 1"),
        "{}",
        run.stderr
    );
    // pi was added to groups before the failure: the note says so.
    assert!(
        run.stderr.contains("log out and in again"),
        "{}",
        run.stderr
    );
    assert!(
        !device
            .try_sh("test -e /home/pi/qwiic-containers/.env")
            .status
            .success()
    );
}

#[test]
fn a_minimal_userland_gets_kmod_and_udev_and_a_failed_step_is_retried_by_the_next_run() {
    let device = Device::new("bookworm", "minimal");
    device.bus(1).button();
    assert!(
        !device
            .try_sh("command -v modprobe || command -v udevadm")
            .status
            .success()
    );

    // No modprobe: kmod is installed, and modprobe's own failure is reported (no exit 127).
    let run = device.init_os("").failed();
    assert!(
        run.stdout
            .contains("doing: env DEBIAN_FRONTEND=noninteractive apt-get install -y -q kmod"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("could not load the i2c-dev kernel module")
            && run
                .stderr
                .contains("modprobe: FATAL: Module i2c-dev not found")
            && run.stderr.contains("then run: sudo ./init_os.sh again"),
        "{}",
        run.stderr
    );

    // A module that loads, but no udevd: udev is installed, and the real udevadm fails.
    device.sh("cp /opt/qwiic-test/bin/modprobe /usr/local/sbin/");
    let run = device.init_os("").failed();
    assert!(
        run.stdout.contains("apt-get install -y -q udev")
            && run
                .stderr
                .contains("could not apply the udev rule for /dev/i2c-*")
            && run.stderr.contains("systemctl status systemd-udevd"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    assert!(
        !device
            .try_sh("test -e /etc/udev/rules.d/60-qwiic-i2c.rules")
            .status
            .success(),
        "the rule is taken back after a failed reload"
    );

    // udevd runs again: the next run writes the rule and reloads, then all is done.
    device.sh("cp /opt/qwiic-test/bin/udevadm /usr/local/sbin/");
    let run = device.init_os("").ok();
    let changes = run.changes("doing: ");
    assert!(
        changes.contains(&"udevadm control --reload-rules".to_owned())
            && changes.contains(&"write /etc/udev/rules.d/60-qwiic-i2c.rules".to_owned()),
        "{}",
        run.stdout
    );
    assert!(
        device
            .read("/opt/qwiic-test/calls")
            .contains("udevadm trigger --subsystem-match=i2c-dev")
    );
    device
        .init_os_changing_nothing("./init_os.sh", "")
        .ok()
        .assert_nothing_to_change();
}

#[test]
fn the_images_are_reused_while_their_recipe_is_unchanged() {
    let first = image("bookworm");
    let started = Instant::now();
    let output = Command::new(root().join("tests/userland/build-image"))
        .arg("bookworm")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), first);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a cached image took {:.1?}",
        started.elapsed()
    );
}
