//! init_os.sh against fake roots with stubbed system commands: what it does on each supported
//! OS, that a second run changes nothing, that --dry-run changes nothing, and its errors.
//! These reach what a real userland in a container cannot: JetPack and Ubuntu, Docker's own
//! apt repository and its key, Raspberry Pi boot settings. `init_os_userland.rs` runs the
//! script for real in Debian bookworm and trixie.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The stubbed commands. Each logs its arguments; the ones that change state change the fake
/// root or the stub state, so a second run sees the first one's work.
const STUBS: &[(&str, &str)] = &[
    (
        "id",
        r#"case "$1" in
  -u) cat "$STATE/uid" 2>/dev/null || echo 0 ;;
  -nG) grep -E "^[^:]*:[^:]*:[^:]*:(.*,)?$2(,|$)" "$ROOT/etc/group" | cut -d: -f1 | tr '\n' ' '; echo ;;
esac"#,
    ),
    (
        "getent",
        r#"case "$1" in group|passwd) grep "^$2:" "$ROOT/etc/$1" ;; *) exit 2 ;; esac"#,
    ),
    (
        "groupadd",
        r#"# A gid of its own for each group made: 990, then 991...
made=$(cat "$STATE/groups-made" 2>/dev/null || echo 0)
echo "${@: -1}:x:$((990 + made)):" >> "$ROOT/etc/group"
echo $((made + 1)) > "$STATE/groups-made""#,
    ),
    (
        "usermod",
        r#"group=$2 user=$3
sed -i -E "/^$group:/{s/:$/:$user/;t;s/$/,$user/}" "$ROOT/etc/group""#,
    ),
    (
        "apt-get",
        r#"if [ "$1" = install ]; then
  for package in "$@"; do
    case "$package" in
      docker.io) cp "$STUBS/.docker" "$STUBS/docker"; chmod +x "$STUBS/docker"; echo "docker:x:995:" >> "$ROOT/etc/group" ;;
      docker-compose-v2|docker-compose-plugin) touch "$STATE/compose-v2" ;;
      docker-compose) touch "$STATE/compose-v1" ;;
      i2c-tools) cp "$STUBS/.i2cget" "$STUBS/i2cget"; chmod +x "$STUBS/i2cget" ;;
    esac
  done
fi"#,
    ),
    (
        "apt-cache",
        r#"case " $* " in *" policy "*) ;; *) exit 0 ;; esac
package=${@: -1}
version=$(sed -n "s/^$package //p" "$STATE/available" 2>/dev/null)
echo "$package:"; echo "  Installed: (none)"; echo "  Candidate: ${version:-(none)}""#,
    ),
    ("dpkg", "echo arm64"),
    ("modprobe", r#"mkdir -p "$ROOT/sys/module/i2c_dev""#),
    (
        "udevadm",
        r#"[ -e "$STATE/udevd-down" ] || exit 0
echo "Failed to send reload request: No such file or directory" >&2; exit 1"#,
    ),
    (
        "gpg",
        r#"echo "pub:-:4096:1:8D81803C0EBFCD88:1487788586:::-:::scESA::::::23::0:"
echo "fpr:::::::::$(cat "$STATE/key-fingerprint" 2>/dev/null || echo 9DC858229FC7DD38854AE2D88D81803C0EBFCD88):""#,
    ),
    (
        "curl",
        r#"while [ $# -gt 0 ]; do [ "$1" = -o ] && { shift; echo KEY > "$1"; }; shift; done"#,
    ),
    (
        "docker-compose",
        r#"[ -e "$STATE/compose-v1" ] || { echo "docker-compose: not found" >&2; exit 127; }
echo "$(cat "$STATE/compose-v1-version" 2>/dev/null || echo 1.29.2)""#,
    ),
    (
        ".docker",
        r#"[ "$1 $2" = "compose version" ] && [ -e "$STATE/compose-v2" ] && { echo "Docker Compose version v2.24.6"; exit 0; }
exit 1"#,
    ),
    (
        ".i2cget",
        r#"# Only the button's address answers (0x6f unless a scenario moved it).
at=$(cat "$STATE/i2c-at" 2>/dev/null || echo 0x6f)
[ "$3" = "$at" ] || { echo "Error: Read failed" >&2; exit 2; }
id=$(cat "$STATE/i2c-id" 2>/dev/null || echo 0x5d)
# A scenario of reads, one per line: each read takes the next.
if [ -s "$STATE/i2c-reads" ]; then
  id=$(head -n1 "$STATE/i2c-reads"); sed -i 1d "$STATE/i2c-reads"
fi
[ "$id" = none ] && { echo "Error: Read failed" >&2; exit 2; }
echo "$id""#,
    ),
];

/// Real tools the script may use; nothing else from the host is on its PATH.
const TOOLS: &[&str] = &[
    "bash",
    "sh",
    "env",
    "cat",
    "sed",
    "grep",
    "cut",
    "tr",
    "mkdir",
    "dirname",
    "printf",
    "chmod",
    "cp",
    "touch",
    "sort",
    "head",
    "tail",
    "uname",
    "mktemp",
    "mv",
    "rm",
    "awk",
    "stat",
    "chown",
    "install",
    "readlink",
    "base64",
    "basename",
    "sha512sum",
];

struct Device {
    _dir: TempDir,
    root: PathBuf,
    stubs: PathBuf,
    state: PathBuf,
    log: PathBuf,
    env_file: PathBuf,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

impl Device {
    fn new(name: &str, os_release: &str) -> Device {
        let dir = std::env::temp_dir().join(format!("init-os-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (root, stubs, state) = (dir.join("root"), dir.join("bin"), dir.join("state"));
        fs::create_dir_all(&stubs).unwrap();
        fs::create_dir_all(&state).unwrap();
        write(&root.join("etc/os-release"), os_release);
        write(
            &root.join("etc/group"),
            "root:x:0:\nsudo:x:27:pi\npi:x:1000:\n",
        );
        // The user who runs sudo: this test's own uid and gid, so that the script's real
        // chown works without root.
        let me = fs::metadata(&dir).unwrap();
        write(
            &root.join("etc/passwd"),
            &format!(
                "root:x:0:0::/root:/bin/bash\npi:x:{}:{}::/home/pi:/bin/bash\n",
                me.uid(),
                me.gid()
            ),
        );
        fs::create_dir_all(root.join("home/pi/qwiic-containers")).unwrap();
        fs::create_dir_all(root.join("sys/module")).unwrap();
        for (name, body) in STUBS {
            let path = stubs.join(name);
            write(
                &path,
                &format!("#!/bin/bash\necho \"{name} $*\" >> \"$STUB_LOG\"\n{body}\n"),
            );
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        for tool in TOOLS {
            let real = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists())
                .unwrap();
            std::os::unix::fs::symlink(real, stubs.join(tool)).unwrap();
        }
        let device = Device {
            env_file: root.join("home/pi/qwiic-containers/.env"),
            log: dir.join("commands.log"),
            root,
            stubs,
            state,
            _dir: TempDir(dir),
        };
        device.install("i2cget");
        device
    }

    /// Makes a stubbed command present, as if its package were installed.
    fn install(&self, command: &str) {
        fs::copy(
            self.stubs.join(format!(".{command}")),
            self.stubs.join(command),
        )
        .unwrap();
    }

    fn state(&self, name: &str, content: &str) {
        write(&self.state.join(name), content);
    }

    fn file(&self, path: &str, content: &str) {
        write(&self.root.join(path), content);
    }

    /// A symbolic link under the fake root to `target`, relative as sysfs's are.
    fn link(&self, path: &str, target: &str) {
        let path = self.root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
    }

    /// A GPIO chip as the kernel shows it: /dev/gpiochip{number} (mode 0660, this test's
    /// group), its character device's directory under /sys/devices/{parent}, linked from
    /// /sys/bus/gpio/devices, and beside it the legacy sysfs class's gpiochip{base} with its
    /// label and a `device` link to the parent, linked from /sys/class/gpio.
    fn gpio_chip(&self, number: u32, base: u32, parent: &str, label: &str) {
        fs::create_dir_all(
            self.root
                .join(format!("sys/devices/{parent}/gpiochip{number}")),
        )
        .unwrap();
        let legacy = format!("devices/{parent}/gpio/gpiochip{base}");
        self.file(&format!("sys/{legacy}/label"), &format!("{label}\n"));
        let parent_name = parent.rsplit('/').next().unwrap();
        self.link(
            &format!("sys/{legacy}/device"),
            &format!("../../../{parent_name}"),
        );
        self.link(
            &format!("sys/class/gpio/gpiochip{base}"),
            &format!("../../{legacy}"),
        );
        self.link(
            &format!("sys/bus/gpio/devices/gpiochip{number}"),
            &format!("../../../devices/{parent}/gpiochip{number}"),
        );
        let node = self.root.join(format!("dev/gpiochip{number}"));
        write(&node, "");
        fs::set_permissions(&node, fs::Permissions::from_mode(0o660)).unwrap();
    }

    /// The board's model, as /proc/device-tree/model has it (ending in a NUL).
    fn model(&self, model: &str) {
        self.file("proc/device-tree/model", &format!("{model}\0"));
    }

    /// The value of `key` in .env.
    fn env(&self, key: &str) -> Option<String> {
        let env = fs::read_to_string(&self.env_file).unwrap_or_default();
        env.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")).map(str::to_owned))
    }

    fn run(&self, args: &[&str]) -> Output {
        let _ = fs::remove_file(&self.log);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../init_os.sh");
        Command::new(self.stubs.join("bash"))
            .arg(script)
            .args(args)
            .env_clear()
            .env("PATH", &self.stubs)
            .env("INIT_OS_ROOT", &self.root)
            .env("INIT_OS_ENV_FILE", &self.env_file)
            // The secrets' groups: this test's own, so that the real chown works without root.
            .env("INIT_OS_SERVICE_GID", self.gid().to_string())
            .env("INIT_OS_MOSQUITTO_GID", self.gid().to_string())
            .env("SUDO_USER", "pi")
            .env("ROOT", &self.root)
            .env("STUBS", &self.stubs)
            .env("STATE", &self.state)
            .env("STUB_LOG", &self.log)
            .output()
            .unwrap()
    }

    fn gid(&self) -> u32 {
        fs::metadata(&self.root).unwrap().gid()
    }

    fn commands(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn read(&self, path: &str) -> String {
        fs::read_to_string(self.root.join(path)).unwrap_or_default()
    }

    /// Every file under the fake root and the stub state, with its content (a link's: its
    /// target).
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, into: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let path = entry.path();
                let kind = entry.file_type().unwrap();
                if kind.is_symlink() {
                    let target = fs::read_link(&path).unwrap();
                    into.insert(path, target.as_os_str().as_bytes().to_vec());
                } else if kind.is_dir() {
                    walk(&path, into);
                } else {
                    into.insert(path.clone(), fs::read(&path).unwrap_or_default());
                }
            }
        }
        let mut files = BTreeMap::new();
        walk(&self.root, &mut files);
        walk(&self.state, &mut files);
        walk(&self.stubs, &mut files);
        files
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\n{}{}",
        output.status,
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

const DEBIAN: &str =
    "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n";
const JETPACK: &str = "NAME=\"Ubuntu\"\nVERSION=\"18.04.6 LTS (Bionic Beaver)\"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=bionic\nUBUNTU_CODENAME=bionic\n";
const UBUNTU: &str = "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=jammy\n";

fn assert_second_run_changes_nothing(device: &Device) {
    let before = device.snapshot();
    let output = device.run(&[]);
    let text = assert_ok(&output);
    assert!(text.contains("Nothing to change"), "{text}");
    assert!(
        !device.commands().lines().any(|c| {
            [
                "apt-get", "groupadd", "usermod", "modprobe", "udevadm", "curl",
            ]
            .iter()
            .any(|m| c.starts_with(m))
        }),
        "a second run ran:\n{}",
        device.commands()
    );
    assert_eq!(device.snapshot(), before, "a second run changed files");
}

#[test]
fn raspberry_pi_os_enables_i2c_then_after_the_reboot_finds_the_button() {
    let device = Device::new("pi", DEBIAN);
    device.file("boot/firmware/config.txt", "[all]\narm_64bit=1\n");
    device.state("available", "docker.io 20.10.24\ndocker-compose 1.29.2-3\n");

    let first = assert_ok(&device.run(&[]));
    assert!(first.contains("platform: raspberrypi"), "{first}");
    assert!(
        device
            .read("boot/firmware/config.txt")
            .ends_with("dtparam=i2c_arm=on\n")
    );
    assert_eq!(device.read("etc/modules-load.d/i2c-dev.conf"), "i2c-dev\n");
    assert!(
        device
            .read("etc/udev/rules.d/60-qwiic-i2c.rules")
            .contains("GROUP=\"i2c\"")
    );
    let groups = device.read("etc/group");
    assert!(groups.contains("i2c:x:990:pi"), "{groups}");
    let commands = device.commands();
    assert!(
        commands.contains("apt-get install -y -q docker.io"),
        "{commands}"
    );
    assert!(
        commands.contains("apt-get install -y -q docker-compose"),
        "{commands}"
    );
    assert!(
        commands.contains("usermod -aG docker pi") && commands.contains("usermod -aG i2c pi"),
        "{commands}"
    );
    assert!(first.contains("Reboot to enable I2C"), "{first}");
    assert!(!device.env_file.exists(), "no bus yet, so no .env");

    // After the reboot the bus exists.
    device.file("dev/i2c-1", "");
    let second = assert_ok(&device.run(&[]));
    assert!(
        second.contains("Qwiic Button found at 0x6f on /dev/i2c-1"),
        "{second}"
    );
    // Compose v1 ignores pull_policy: without the pull it would build the images here.
    assert!(
        second.contains(
            "Start it with: (docker-compose pull || docker-compose build) && docker-compose up -d"
        ),
        "{second}"
    );
    let env = fs::read_to_string(&device.env_file).unwrap();
    assert!(
        env.contains("COMPOSE_FILE=docker-compose.yml:docker-compose.device.yml"),
        "{env}"
    );
    assert!(
        env.contains("I2C_DEVICE=/dev/i2c-1") && env.contains("I2C_GID=990"),
        "{env}"
    );

    assert_second_run_changes_nothing(&device);
}

#[test]
fn jetson_nano_gets_compose_from_dockers_repository_when_its_own_is_too_old() {
    let device = Device::new("jetson", JETPACK);
    device.file("etc/nv_tegra_release", "# R32 (release), REVISION: 7.1\n");
    device.file("dev/i2c-1", "");
    device.install("docker"); // JetPack ships Docker
    device.state("available", "docker-compose 1.17.1-2\n");
    device.file(
        "etc/group",
        "root:x:0:\ndocker:x:995:\ni2c:x:108:\npi:x:1000:\n",
    );

    let output = assert_ok(&device.run(&[]));
    assert!(output.contains("platform: jetson"), "{output}");
    let commands = device.commands();
    assert!(
        !commands.contains("install -y -q docker.io"),
        "docker was already there:\n{commands}"
    );
    assert!(commands.contains("curl -fsSL -o"), "{commands}");
    assert!(
        device
            .read("etc/apt/sources.list.d/docker.list")
            .contains("https://download.docker.com/linux/ubuntu bionic stable")
    );
    assert!(
        commands.contains("apt-get install -y -q docker-compose-plugin"),
        "{commands}"
    );
    assert!(!device.read("etc/modules-load.d/i2c-dev.conf").is_empty());
    assert!(
        !commands.contains("groupadd"),
        "the i2c group existed:\n{commands}"
    );
    assert!(
        fs::read_to_string(&device.env_file)
            .unwrap()
            .contains("I2C_GID=108")
    );
    assert!(
        device.read("boot/firmware/config.txt").is_empty(),
        "no Raspberry Pi settings on a Jetson"
    );

    assert_second_run_changes_nothing(&device);
}

#[test]
fn plain_debian_and_ubuntu_use_their_own_packages() {
    for (name, os, packages, expected) in [
        (
            "debian",
            DEBIAN,
            "docker.io 20.10.24\ndocker-compose 1.29.2-3\n",
            "install -y -q docker-compose",
        ),
        (
            "ubuntu",
            UBUNTU,
            "docker.io 24.0.7\ndocker-compose-v2 2.24.6\n",
            "install -y -q docker-compose-v2",
        ),
    ] {
        let device = Device::new(name, os);
        device.file("dev/i2c-1", "");
        device.state("available", packages);
        let output = assert_ok(&device.run(&[]));
        assert!(output.contains(&format!("platform: {name}")), "{output}");
        assert!(
            device.commands().contains(expected),
            "{name}:\n{}",
            device.commands()
        );
        assert!(!device.commands().contains("download.docker.com"));
        assert!(device.env_file.exists());
        assert_second_run_changes_nothing(&device);
    }
}

#[test]
fn dry_run_changes_nothing_and_says_what_it_would_do() {
    let device = Device::new("dry", DEBIAN);
    device.file("dev/i2c-1", "");
    device.state("available", "docker.io 20.10.24\ndocker-compose 1.29.2-3\n");
    let before = device.snapshot();
    let output = assert_ok(&device.run(&["--dry-run"]));
    assert_eq!(device.snapshot(), before, "--dry-run changed files");
    assert!(
        !device.commands().lines().any(|c| {
            [
                "apt-get", "groupadd", "usermod", "modprobe", "udevadm", "curl",
            ]
            .iter()
            .any(|m| c.starts_with(m))
                // fresh package lists into a temporary directory, not the system's
                && !(c.starts_with("apt-get -q -o Dir::State::Lists=/") && c.ends_with(" update"))
        }),
        "--dry-run ran:\n{}",
        device.commands()
    );
    assert!(
        output
            .contains("would: env DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io"),
        "{output}"
    );
    assert!(output.contains("would: groupadd --system i2c"), "{output}");
    assert!(
        output.contains("Dry run:") && output.contains("nothing was changed"),
        "{output}"
    );
}

#[test]
fn an_unsupported_os_is_refused_with_what_is_supported() {
    let device = Device::new("fedora", "ID=fedora\nVERSION_ID=40\n");
    let output = device.run(&[]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("unsupported OS 'fedora'") && message.contains("Raspberry Pi OS"),
        "{message}"
    );
    assert!(device.commands().is_empty() || !device.commands().contains("apt-get"));
}

#[test]
fn it_must_run_as_root() {
    let device = Device::new("user", DEBIAN);
    device.state("uid", "1000");
    let output = device.run(&[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("run it with sudo"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn no_button_says_what_to_check() {
    let device = Device::new("nobutton", DEBIAN);
    device.file("dev/i2c-1", "");
    device.install("docker");
    device.state("compose-v2", "");
    device.state("i2c-id", "none");
    let output = device.run(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains(
            "no Qwiic Button answers at 0x6f on /dev/i2c-1 (nor as a Qwiic Button at any other address): i2cget says: Error: Read failed (exit 2)"
        ),
        "{message}"
    );
    assert!(
        message.contains("sudo i2cdetect -y -r 1") && message.contains("SDA to pin 3"),
        "{message}"
    );
    assert!(!device.env_file.exists());
}

/// A device with Docker, Compose v2 and a bus, ready to look for the button.
fn ready_for_the_button(name: &str) -> Device {
    let device = Device::new(name, DEBIAN);
    device.file("dev/i2c-1", "");
    device.install("docker");
    device.state("compose-v2", "");
    device
}

#[test]
fn reads_that_disagree_now_and_then_find_the_button_and_name_the_clock_stretching_bug() {
    let device = ready_for_the_button("disagree");
    device.state("i2c-reads", "0x5d\n0x2e\n0x5d\n0x5d\n0x5d\n");
    let text = assert_ok(&device.run(&[]));
    assert!(
        text.contains("ok: Qwiic Button found at 0x6f on /dev/i2c-1"),
        "{text}"
    );
    assert!(
        text.contains("note: 1 of 5 reads of its ID register disagreed (0x5d 0x2e 0x5d 0x5d 0x5d)")
            && text.contains("clock-stretching bug")
            && text.contains("--pi-i2c gpio"),
        "{text}"
    );
    assert_eq!(
        device.commands().matches("i2cget ").count(),
        5,
        "{}",
        device.commands()
    );
    // Reads that all agree say nothing of it.
    let text = assert_ok(&device.run(&[]));
    assert!(!text.contains("disagreed"), "{text}");
}

#[test]
fn reads_without_a_majority_are_refused_with_what_to_do() {
    let device = ready_for_the_button("nomajority");
    device.state("i2c-reads", "0x5d\n0x2e\nnone\n0x2e\n0x5d\n");
    let output = device.run(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains(
            "the reads of the ID register at 0x6f on /dev/i2c-1 disagree: 0x5d 0x2e error 0x2e 0x5d"
        ) && message.contains("--pi-i2c gpio"),
        "{message}"
    );
    assert!(!device.env_file.exists());

    // Most reads failing is a missing button, whatever one read said.
    device.state("i2c-reads", "none\n0x5d\nnone\nnone\nnone\n");
    let message = stderr(&device.run(&[]));
    assert!(
        message.contains("no Qwiic Button answers at 0x6f on /dev/i2c-1"),
        "{message}"
    );
}

#[test]
fn a_button_at_another_address_is_found_and_its_address_goes_to_env() {
    let device = ready_for_the_button("moved");
    device.state("i2c-at", "0x42");
    let text = assert_ok(&device.run(&[]));
    assert!(
        text.contains("note: nothing answers at 0x6f, but a Qwiic Button does at 0x42")
            && text.contains("ok: Qwiic Button found at 0x42 on /dev/i2c-1"),
        "{text}"
    );
    let env = fs::read_to_string(&device.env_file).unwrap();
    assert!(env.contains("\nI2C_ADDRESS=0x42\n"), "{env}");
    // The next run looks there first, and finds nothing to change.
    assert_second_run_changes_nothing(&device);
}

#[test]
fn an_address_given_is_where_the_button_must_answer() {
    let device = ready_for_the_button("address");
    device.state("i2c-at", "0x5b");
    let text = assert_ok(&device.run(&["--address", "0x5B"]));
    assert!(
        text.contains("ok: Qwiic Button found at 0x5b on /dev/i2c-1"),
        "{text}"
    );
    assert!(
        fs::read_to_string(&device.env_file)
            .unwrap()
            .contains("\nI2C_ADDRESS=0x5b\n")
    );
    // Given, it is not looked for elsewhere.
    let output = device.run(&["--address", "0x60"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains("no Qwiic Button answers at 0x60 on /dev/i2c-1: i2cget says"),
        "{message}"
    );
    assert_eq!(
        device.commands().matches("i2cget ").count(),
        5,
        "{}",
        device.commands()
    );
    for bad in ["0x78", "0x07", "bus", "300"] {
        let output = device.run(&["--address", bad]);
        assert_eq!(output.status.code(), Some(1), "{bad}");
        assert!(
            stderr(&output).contains("--address takes an I2C address from 0x08 to 0x77"),
            "{bad}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn nvidia_as_dockers_default_runtime_is_named_and_left_to_other_containers() {
    let device = ready_for_the_button("nvidia");
    device.file(
        "etc/docker/daemon.json",
        "{\n    \"runtimes\": {\"nvidia\": {\"path\": \"nvidia-container-runtime\", \"runtimeArgs\": []}},\n    \"default-runtime\": \"nvidia\"\n}\n",
    );
    let text = assert_ok(&device.run(&[]));
    assert!(
        text.contains("note: Docker's default runtime here is nvidia (/etc/docker/daemon.json)")
            && text.contains("runtime: runc"),
        "{text}"
    );
    assert_eq!(
        device
            .read("etc/docker/daemon.json")
            .matches("nvidia")
            .count(),
        3,
        "daemon.json is left as it is"
    );
    device.file(
        "etc/docker/daemon.json",
        "{\"runtimes\": {\"nvidia\": {\"path\": \"nvidia-container-runtime\"}}}\n",
    );
    assert!(!assert_ok(&device.run(&[])).contains("default runtime"));
}

#[test]
fn a_kernel_without_the_memory_cgroup_is_told_what_that_means_for_the_limits() {
    let device = ready_for_the_button("nomemcg");
    // cgroup v2 (Raspberry Pi OS bookworm) without the memory controller.
    device.file("sys/fs/cgroup/cgroup.controllers", "cpuset cpu io pids\n");
    let text = assert_ok(&device.run(&[]));
    assert!(
        text.contains("note: this kernel has no memory cgroup")
            && text.contains("32 MiB")
            && text.contains("cgroup_enable=memory cgroup_memory=1"),
        "{text}"
    );
    device.file(
        "sys/fs/cgroup/cgroup.controllers",
        "cpuset cpu io memory hugetlb pids\n",
    );
    assert!(!assert_ok(&device.run(&[])).contains("memory cgroup"));

    // cgroup v1 (JetPack 4.6): /proc/cgroups says whether it is enabled.
    let device = ready_for_the_button("nomemcg-v1");
    device.file(
        "proc/cgroups",
        "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t2\t60\t1\nmemory\t0\t60\t0\n",
    );
    assert!(assert_ok(&device.run(&[])).contains("no memory cgroup"));
    device.file(
        "proc/cgroups",
        "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t2\t60\t1\nmemory\t5\t60\t1\n",
    );
    assert!(!assert_ok(&device.run(&[])).contains("memory cgroup"));
}

#[test]
fn a_missing_bus_names_the_buses_there_are() {
    let device = Device::new("nobus", DEBIAN);
    device.file("dev/i2c-1", "");
    device.file("dev/i2c-7", "");
    device.install("docker");
    device.state("compose-v2", "");
    let output = device.run(&["--bus", "3"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("no I2C bus /dev/i2c-3") && message.contains("i2c-1 i2c-7"),
        "{message}"
    );
    let output = device.run(&["--bus", "x"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("--bus needs a bus number"));
    let output = device.run(&["--frobnicate"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("unknown option '--frobnicate'"));
}

#[test]
fn help_explains_the_options() {
    let device = Device::new("help", DEBIAN);
    let text = assert_ok(&device.run(&["--help"]));
    for option in [
        "--bus N",
        "--int-pin PIN",
        "--int-pin none",
        "--dry-run",
        "--help",
    ] {
        assert!(text.contains(option), "{text}");
    }
}

#[test]
fn dockers_apt_key_is_installed_only_with_its_known_fingerprint() {
    let device = Device::new("badkey", JETPACK);
    device.file("etc/nv_tegra_release", "# R32 (release), REVISION: 7.1\n");
    device.file("dev/i2c-1", "");
    device.install("docker");
    device.state("available", "docker-compose 1.17.1-2\n");
    device.state(
        "key-fingerprint",
        "0123456789ABCDEF0123456789ABCDEF01234567",
    );
    let output = device.run(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains(
            "the key downloaded from https://download.docker.com/linux/ubuntu/gpg is not Docker's"
        ) && message.contains("its fingerprint: 0123456789ABCDEF0123456789ABCDEF01234567")
            && message.contains("expected: 9DC858229FC7DD38854AE2D88D81803C0EBFCD88"),
        "{message}"
    );
    assert!(device.read("etc/apt/keyrings/docker.asc").is_empty());
    assert!(device.read("etc/apt/sources.list.d/docker.list").is_empty());
    assert!(
        !device
            .commands()
            .contains("install -y -q docker-compose-plugin"),
        "{}",
        device.commands()
    );
}

#[test]
fn jetson_messages_say_i2cdetect_with_read_probes() {
    let device = Device::new("jetson-nobutton", JETPACK);
    device.file("etc/nv_tegra_release", "# R32 (release), REVISION: 7.1\n");
    device.file("dev/i2c-1", "");
    device.install("docker");
    device.state("compose-v2", "");
    device.state("i2c-id", "none");
    let output = device.run(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(message.contains("sudo i2cdetect -y -r 1"), "{message}");
    assert!(!message.contains("i2cdetect -y 1"), "{message}");
}

#[test]
fn a_built_in_i2c_dev_needs_no_modprobe() {
    let device = Device::new("builtin", UBUNTU);
    device.file("dev/i2c-1", "");
    device.file("sys/module/i2c_dev/parameters/.keep", ""); // built in: not in /proc/modules
    device.install("docker");
    device.state("compose-v2", "");
    let output = assert_ok(&device.run(&[]));
    assert!(
        output.contains("ok: the i2c-dev module is loaded"),
        "{output}"
    );
    assert!(
        !device.commands().contains("modprobe"),
        "{}",
        device.commands()
    );
}

#[test]
fn ubuntu_with_compose_v2_says_docker_compose_up() {
    let device = Device::new("ubuntu-v2", UBUNTU);
    device.file("dev/i2c-1", "");
    device.state("available", "docker.io 24.0.7\ndocker-compose-v2 2.24.6\n");
    let output = assert_ok(&device.run(&[]));
    assert!(
        output.contains("Start it with: docker compose up -d"),
        "{output}"
    );
    let again = assert_ok(&device.run(&[]));
    assert!(
        again.contains(
            "Nothing to change: this device is ready. Start it with: docker compose up -d"
        ),
        "{again}"
    );
}

#[test]
fn no_bus_at_all_says_there_is_none() {
    let device = Device::new("nobuses", DEBIAN);
    device.install("docker");
    device.state("compose-v2", "");
    let output = device.run(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains("no I2C bus /dev/i2c-1")
            && message.contains("(there is no /dev/i2c-* at all)")
            && !message.contains("found:"),
        "{message}"
    );
}

#[test]
fn a_root_owned_env_from_an_older_version_becomes_the_users_and_keeps_its_keys() {
    let device = Device::new("oldenv", DEBIAN);
    device.file("dev/i2c-1", "");
    device.install("docker");
    device.state("compose-v2", "");
    fs::write(
        &device.env_file,
        "# Written by init_os.sh\nCOMPOSE_FILE=docker-compose.yml:docker-compose.device.yml\nI2C_DEVICE=/dev/i2c-1\nI2C_GID=1\nAPI_TOKEN=abc\n",
    )
    .unwrap();
    fs::set_permissions(&device.env_file, fs::Permissions::from_mode(0o644)).unwrap();
    let output = assert_ok(&device.run(&[]));
    assert!(
        output.contains("doing: set COMPOSE_FILE, I2C_DEVICE and I2C_GID in"),
        "{output}"
    );
    let env = fs::read_to_string(&device.env_file).unwrap();
    // API_TOKEN set: no token file, no token overlay; the broker's user and password added.
    assert!(
        env.starts_with(
            "# Written by init_os.sh\nCOMPOSE_FILE=docker-compose.yml:docker-compose.device.yml\nI2C_DEVICE=/dev/i2c-1\nI2C_GID=990\nAPI_TOKEN=abc\nMQTT_USERNAME=qwiic\nMQTT_PASSWORD="
        ),
        "{env}"
    );
    let mode = fs::metadata(&device.env_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_second_run_changes_nothing(&device);
}

#[test]
fn an_env_symlink_is_refused() {
    let device = Device::new("envlink", DEBIAN);
    device.file("dev/i2c-1", "");
    device.install("docker");
    device.state("compose-v2", "");
    device.file("etc/target", "precious\n");
    std::os::unix::fs::symlink(device.root.join("etc/target"), &device.env_file).unwrap();
    let output = device.run(&[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(".env is a symbolic link (to "),
        "{}",
        stderr(&output)
    );
    assert_eq!(device.read("etc/target"), "precious\n");
}

fn raspberry_pi(name: &str, config: &str) -> Device {
    let device = Device::new(name, DEBIAN);
    device.file("boot/firmware/config.txt", config);
    device.install("docker");
    device.state("compose-v2", "");
    device
}

#[test]
fn pi_i2c_gpio_moves_the_button_to_bus_3_and_later_runs_keep_it() {
    let device = raspberry_pi(
        "pi-gpio",
        "dtparam=audio=on\ndtparam=i2c_arm=on\n[cm5]\ndtoverlay=dwc2\n",
    );
    device.file("dev/i2c-1", "");
    let output = assert_ok(&device.run(&["--pi-i2c", "gpio"]));
    assert!(
        output.contains(
            "doing: set dtoverlay=i2c-gpio,bus=3,i2c_gpio_sda=2,i2c_gpio_scl=3 (i2c_arm off) in /boot/firmware/config.txt"
        ) && output.contains("Reboot to enable I2C"),
        "{output}"
    );
    assert_eq!(
        device.read("boot/firmware/config.txt"),
        "dtparam=audio=on\ndtparam=i2c_arm=off\n[cm5]\ndtoverlay=dwc2\n[all]\ndtoverlay=i2c-gpio,bus=3,i2c_gpio_sda=2,i2c_gpio_scl=3\n"
    );
    // After the reboot: bus 3, written to .env; runs without options keep it.
    fs::remove_file(device.root.join("dev/i2c-1")).unwrap();
    device.file("dev/i2c-3", "");
    let output = assert_ok(&device.run(&[]));
    assert!(
        output.contains("Qwiic Button found at 0x6f on /dev/i2c-3"),
        "{output}"
    );
    assert!(
        fs::read_to_string(&device.env_file)
            .unwrap()
            .contains("I2C_DEVICE=/dev/i2c-3\n")
    );
    assert_second_run_changes_nothing(&device);

    // And back to the hardware controller.
    device.file("dev/i2c-1", "");
    let output = assert_ok(&device.run(&["--pi-i2c", "arm"]));
    assert!(output.contains("Reboot to enable I2C"), "{output}");
    assert_eq!(
        device.read("boot/firmware/config.txt"),
        "dtparam=audio=on\ndtparam=i2c_arm=on\n[cm5]\ndtoverlay=dwc2\n[all]\n"
    );
}

#[test]
fn pi_baudrate_sets_the_bus_speed_in_place_and_keeps_bus_1() {
    let device = raspberry_pi(
        "pi-baud",
        "#dtparam=i2c_arm=on\ndtparam=i2c_arm_baudrate=400000\n[pi4]\ndtparam=i2c_arm_baudrate=1000\n",
    );
    device.file("dev/i2c-1", "");
    let output = assert_ok(&device.run(&["--pi-baudrate", "50000"]));
    assert!(
        output.contains("doing: set dtparam=i2c_arm=on and dtparam=i2c_arm_baudrate=50000 in /boot/firmware/config.txt"),
        "{output}"
    );
    assert_eq!(
        device.read("boot/firmware/config.txt"),
        "dtparam=i2c_arm=on\ndtparam=i2c_arm_baudrate=50000\n[pi4]\ndtparam=i2c_arm_baudrate=1000\n"
    );
    device.file("dev/i2c-1", "");
    let output = assert_ok(&device.run(&["--pi-baudrate", "50000"]));
    assert!(
        output.contains("ok: I2C is enabled in /boot/firmware/config.txt (i2c_arm_baudrate=50000)")
            && output.contains("Qwiic Button found at 0x6f on /dev/i2c-1"),
        "{output}"
    );
    assert!(
        fs::read_to_string(&device.env_file)
            .unwrap()
            .contains("I2C_DEVICE=/dev/i2c-1\n")
    );
    assert_second_run_changes_nothing(&device);
}

#[test]
fn pi_options_are_checked_with_what_is_accepted() {
    let device = raspberry_pi("pi-bad", "dtparam=i2c_arm=on\n");
    for (args, expected) in [
        (
            &["--pi-i2c", "fast"][..],
            "--pi-i2c takes 'arm' or 'gpio' (got 'fast')",
        ),
        (
            &["--pi-baudrate", "5"][..],
            "--pi-baudrate takes a bus speed in Hz from 10000 to 400000, such as --pi-baudrate 50000 (got '5')",
        ),
        (&["--pi-baudrate", "fast"][..], "(got 'fast')"),
        (
            &["--pi-i2c", "gpio", "--pi-baudrate", "50000"][..],
            "--pi-baudrate sets the hardware controller's speed, which --pi-i2c gpio turns off",
        ),
    ] {
        let output = device.run(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let ubuntu = Device::new("pi-on-ubuntu", UBUNTU);
    let output = ubuntu.run(&["--pi-i2c", "gpio"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output)
            .contains("--pi-i2c and --pi-baudrate are for a Raspberry Pi; this is ubuntu"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_failed_udev_reload_takes_the_rule_back_so_the_next_run_retries() {
    let device = Device::new("udev", DEBIAN);
    device.file("dev/i2c-1", "");
    device.install("docker");
    device.state("compose-v2", "");
    device.state("udevd-down", "");
    let output = device.run(&[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("could not apply the udev rule for /dev/i2c-*"),
        "{}",
        stderr(&output)
    );
    assert!(
        device
            .read("etc/udev/rules.d/60-qwiic-i2c.rules")
            .is_empty()
    );
    fs::remove_file(device.state.join("udevd-down")).unwrap();
    assert_ok(&device.run(&[]));
    assert!(device.commands().contains("udevadm control --reload-rules"));
    assert_second_run_changes_nothing(&device);
}

#[test]
fn sh_runs_it_with_bash() {
    let device = Device::new("sh", DEBIAN);
    let output = Command::new("/bin/sh")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../init_os.sh"))
        .arg("--help")
        .env("PATH", &device.stubs)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("--pi-i2c gpio"));
}

#[test]
fn i2c_is_enabled_for_every_model_when_config_txt_ends_in_a_models_section() {
    // As an older init_os.sh left it: its line went into [cm5], which other models skip.
    let config = "dtparam=audio=on\n[cm4]\notg_mode=1\n[cm5]\ndtoverlay=dwc2\ndtparam=i2c_arm=on\n";
    let device = raspberry_pi("pi-cm5", config);
    let output = assert_ok(&device.run(&[]));
    assert!(output.contains("Reboot to enable I2C"), "{output}");
    assert_eq!(
        device.read("boot/firmware/config.txt"),
        format!("{config}[all]\ndtparam=i2c_arm=on\n")
    );
    // After the reboot it is enabled, and no further reboot is asked for.
    device.file("dev/i2c-1", "");
    let output = assert_ok(&device.run(&[]));
    assert!(
        output.contains("ok: I2C is enabled in /boot/firmware/config.txt")
            && !output.contains("Reboot"),
        "{output}"
    );
    assert_second_run_changes_nothing(&device);
}

#[test]
fn authentication_is_on_by_default_with_a_token_and_a_broker_password_made_once() {
    let device = Device::new("secrets", DEBIAN);
    device.file("dev/i2c-1", "");
    device.file("etc/hostname", "Jetson\n");
    device.install("docker");
    device.state("compose-v2", "");
    assert_ok(&device.run(&[]));
    let secrets = device.env_file.parent().unwrap().join("secrets");
    let token = fs::read_to_string(secrets.join("api-token")).unwrap();
    assert_eq!(token.trim_end().len(), 32, "{token:?}");
    assert!(token.trim_end().chars().all(|c| c.is_ascii_alphanumeric()));
    for name in ["api-token", "mosquitto-passwd"] {
        let mode = fs::metadata(secrets.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o440, "{name}");
    }
    let hashed = fs::read_to_string(secrets.join("mosquitto-passwd")).unwrap();
    assert!(hashed.starts_with("qwiic:$6$"), "{hashed}");
    let env = fs::read_to_string(&device.env_file).unwrap();
    for line in [
        "COMPOSE_FILE=docker-compose.yml:docker-compose.device.yml:docker-compose.token.yml",
        "ALLOWED_HOSTS=jetson,jetson.local",
        "MQTT_TOPIC_PREFIX=qwiic/jetson",
        "MQTT_USERNAME=qwiic",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing:\n{env}");
    }
    let password = env
        .lines()
        .find_map(|line| line.strip_prefix("MQTT_PASSWORD="))
        .unwrap();
    assert_eq!(password.len(), 32, "{env}");
    assert_second_run_changes_nothing(&device);
    assert_eq!(
        fs::read_to_string(secrets.join("api-token")).unwrap(),
        token,
        "the token is kept"
    );
}

#[test]
fn later_runs_keep_every_compose_file_and_setting_the_user_added() {
    let device = Device::new("overlays", DEBIAN);
    device.file("dev/i2c-1", "");
    device.install("docker");
    device.state("compose-v2", "");
    fs::write(
        &device.env_file,
        "COMPOSE_FILE=docker-compose.yml:docker-compose.device.yml:my-overlay.yml\nALLOWED_HOSTS=garage.lan\nMQTT_TOPIC_PREFIX=qwiic/garage\n",
    )
    .unwrap();
    assert_ok(&device.run(&[]));
    let env = fs::read_to_string(&device.env_file).unwrap();
    for line in [
        "COMPOSE_FILE=docker-compose.yml:docker-compose.device.yml:docker-compose.token.yml:my-overlay.yml",
        "ALLOWED_HOSTS=garage.lan",
        "MQTT_TOPIC_PREFIX=qwiic/garage",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} missing:\n{env}");
    }
    assert_second_run_changes_nothing(&device);
}

#[test]
fn a_link_where_a_secret_goes_is_refused_and_its_target_untouched() {
    let device = Device::new("secretlink", DEBIAN);
    device.file("dev/i2c-1", "");
    device.install("docker");
    device.state("compose-v2", "");
    device.file("etc/target", "precious\n");
    let secrets = device.env_file.parent().unwrap().join("secrets");
    fs::create_dir_all(&secrets).unwrap();
    std::os::unix::fs::symlink(device.root.join("etc/target"), secrets.join("api-token")).unwrap();
    let output = device.run(&[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("api-token is a symbolic link"),
        "{}",
        stderr(&output)
    );
    assert_eq!(device.read("etc/target"), "precious\n");
}

/// A Raspberry Pi of `model` with I2C on and the button on bus 1, the GPIO chips of Raspberry Pi
/// OS's 6.x kernel (`label` for the header's, as /dev/gpiochip0 with base 512, and the firmware's
/// expander), and group gpio owning them as Raspberry Pi OS's udev rules make it (this test's
/// group, as the nodes are).
fn raspberry_pi_with_gpio(name: &str, model: &str, label: &str) -> Device {
    let device = raspberry_pi(name, "dtparam=i2c_arm=on\n");
    device.file("dev/i2c-1", "");
    device.model(model);
    device.file(
        "etc/group",
        &format!(
            "root:x:0:\nsudo:x:27:pi\npi:x:1000:\ngpio:x:{}:pi\n",
            device.gid()
        ),
    );
    device.gpio_chip(0, 512, "platform/soc/fe200000.gpio", label);
    device.gpio_chip(
        1,
        570,
        "platform/soc/soc:firmware/soc:firmware:gpio",
        "raspberrypi-exp-gpio",
    );
    device
}

const PI_4: &str = "Raspberry Pi 4 Model B Rev 1.4";
const NANO: &str = "NVIDIA Jetson Nano Developer Kit";

/// A Jetson Nano (JetPack 4.6) with Docker, Compose v2, the button on bus 1 and group i2c, and
/// its GPIO chips: tegra-gpio and the PMIC's, as /dev/gpiochip{tegra} and /dev/gpiochip{pmic}.
fn jetson_nano(name: &str, tegra: u32, pmic: u32) -> Device {
    let device = Device::new(name, JETPACK);
    device.file("etc/nv_tegra_release", "# R32 (release), REVISION: 7.1\n");
    device.file("dev/i2c-1", "");
    device.install("docker");
    device.state("compose-v2", "");
    device.file(
        "etc/group",
        "root:x:0:\ndocker:x:995:pi\ni2c:x:108:pi\npi:x:1000:\n",
    );
    device.model(NANO);
    nano_gpio_chips(&device, tegra, pmic);
    device
}

fn nano_gpio_chips(device: &Device, tegra: u32, pmic: u32) {
    device.gpio_chip(tegra, 0, "6000d000.gpio", "tegra-gpio");
    device.gpio_chip(
        pmic,
        504,
        "7000d000.i2c/i2c-4/4-003c/max77620-gpio",
        "max77620-gpio",
    );
}

#[test]
fn int_pin_18_on_a_raspberry_pi_4_is_line_24_of_pinctrl_bcm2711_in_env_and_later_runs_keep_it() {
    let device = raspberry_pi_with_gpio("int-pi4", PI_4, "pinctrl-bcm2711");
    let output = assert_ok(&device.run(&["--int-pin", "18"]));
    assert!(
        output
            .contains("ok: INT (header pin 18) is line 24 of pinctrl-bcm2711, /dev/gpiochip0 here"),
        "{output}"
    );
    assert_eq!(
        device.env("INT_GPIO").as_deref(),
        Some("pinctrl-bcm2711:24")
    );
    assert_eq!(device.env("INT_CHIP").as_deref(), Some("/dev/gpiochip0"));
    assert_eq!(device.env("GPIO_GID"), Some(device.gid().to_string()));
    assert_eq!(
        device.env("COMPOSE_FILE").as_deref(),
        Some(
            "docker-compose.yml:docker-compose.device.yml:docker-compose.int.yml:docker-compose.token.yml"
        )
    );
    // Raspberry Pi OS's own udev rules make the chips root:gpio 0660 already.
    assert!(
        output.contains("ok: /dev/gpiochip0 belongs to group gpio, which may read and write it (the system's udev rules)"),
        "{output}"
    );
    assert!(
        device
            .read("etc/udev/rules.d/60-qwiic-gpio.rules")
            .is_empty()
    );
    let commands = device.commands();
    assert!(
        !commands.contains("groupadd --system gpio") && !commands.contains("usermod -aG gpio"),
        "{commands}"
    );
    assert_second_run_changes_nothing(&device);
    let again = assert_ok(&device.run(&["--int-pin=18"]));
    assert!(again.contains("Nothing to change"), "{again}");
}

#[test]
fn int_pin_on_a_jetson_nano_is_a_line_of_tegra_gpio_whose_chip_gets_group_gpio_by_a_udev_rule() {
    let device = jetson_nano("int-nano", 0, 1);
    let output = assert_ok(&device.run(&["--int-pin", "18"]));
    assert!(
        output.contains("ok: INT (header pin 18) is line 15 of tegra-gpio, /dev/gpiochip0 here"),
        "{output}"
    );
    let commands = device.commands();
    assert!(
        commands.contains("groupadd --system gpio")
            && commands.contains("udevadm trigger --subsystem-match=gpio")
            && commands.contains("usermod -aG gpio pi"),
        "{commands}"
    );
    assert_eq!(
        device.read("etc/udev/rules.d/60-qwiic-gpio.rules"),
        "SUBSYSTEM==\"gpio\", KERNEL==\"gpiochip*\", GROUP=\"gpio\", MODE=\"0660\"\n"
    );
    assert_eq!(device.env("INT_GPIO").as_deref(), Some("tegra-gpio:15"));
    assert_eq!(device.env("INT_CHIP").as_deref(), Some("/dev/gpiochip0"));
    assert_eq!(device.env("GPIO_GID").as_deref(), Some("990"));
    assert_eq!(device.env("I2C_GID").as_deref(), Some("108"));
    assert_second_run_changes_nothing(&device);

    let output = assert_ok(&device.run(&["--int-pin", "7"]));
    assert!(output.contains("is line 216 of tegra-gpio"), "{output}");
    assert_eq!(device.env("INT_GPIO").as_deref(), Some("tegra-gpio:216"));
}

#[test]
fn the_int_chip_is_found_by_its_label_whatever_its_number_and_again_at_every_run() {
    let device = jetson_nano("int-label", 1, 0);
    assert_ok(&device.run(&["--int-pin", "18"]));
    assert_eq!(device.env("INT_CHIP").as_deref(), Some("/dev/gpiochip1"));
    // A kernel that numbers the chips the other way round.
    for gone in ["sys", "dev/gpiochip0", "dev/gpiochip1"] {
        let path = device.root.join(gone);
        if path.is_dir() {
            fs::remove_dir_all(path).unwrap();
        } else {
            fs::remove_file(path).unwrap();
        }
    }
    fs::create_dir_all(device.root.join("sys/module")).unwrap();
    nano_gpio_chips(&device, 0, 1);
    let output = assert_ok(&device.run(&[]));
    assert!(
        output.contains(
            "ok: INT (INT_GPIO=tegra-gpio:15 in .env) is line 15 of tegra-gpio, /dev/gpiochip0 here"
        ),
        "{output}"
    );
    assert_eq!(device.env("INT_GPIO").as_deref(), Some("tegra-gpio:15"));
    assert_eq!(device.env("INT_CHIP").as_deref(), Some("/dev/gpiochip0"));
    assert_second_run_changes_nothing(&device);
}

#[test]
fn the_int_chips_label_follows_the_raspberry_pi_model() {
    for (model, label) in [
        ("Raspberry Pi 400 Rev 1.0", "pinctrl-bcm2711"),
        ("Raspberry Pi Compute Module 4 Rev 1.0", "pinctrl-bcm2711"),
        ("Raspberry Pi 5 Model B Rev 1.0", "pinctrl-rp1"),
        ("Raspberry Pi 500 Rev 1.0", "pinctrl-rp1"),
        ("Raspberry Pi Compute Module 5 Rev 1.0", "pinctrl-rp1"),
        ("Raspberry Pi 3 Model B Plus Rev 1.3", "pinctrl-bcm2835"),
        ("Raspberry Pi Zero 2 W Rev 1.0", "pinctrl-bcm2835"),
    ] {
        let device = raspberry_pi_with_gpio("int-models", model, label);
        let output = assert_ok(&device.run(&["--int-pin", "40"]));
        assert_eq!(
            device.env("INT_GPIO"),
            Some(format!("{label}:21")),
            "{model}: {output}"
        );
    }
}

#[test]
fn a_raspberry_pi_5_with_an_older_kernel_has_pinctrl_rp1_at_gpiochip4() {
    let device = raspberry_pi("int-pi5", "dtparam=i2c_arm=on\n");
    device.file("dev/i2c-1", "");
    device.model("Raspberry Pi 5 Model B Rev 1.0");
    // Two controllers of two banks each: which label is whose is not told, and neither is INT's.
    for (number, parent, bank) in [
        (0, "107d508500.gpio", "107d508500"),
        (1, "107d508500.gpio", "107d508520"),
        (2, "107d517c00.gpio", "107d517c00"),
        (3, "107d517c00.gpio", "107d517c20"),
    ] {
        device.gpio_chip(
            number,
            512 + 32 * number,
            &format!("platform/soc/{parent}"),
            &format!("gpio-brcmstb@{bank}"),
        );
    }
    device.gpio_chip(
        4,
        571,
        "platform/axi/1000120000.pcie/1f000d0000.gpio",
        "pinctrl-rp1",
    );
    let output = assert_ok(&device.run(&["--int-pin", "18"]));
    assert!(
        output.contains("ok: INT (header pin 18) is line 24 of pinctrl-rp1, /dev/gpiochip4 here"),
        "{output}"
    );
    assert_eq!(device.env("INT_CHIP").as_deref(), Some("/dev/gpiochip4"));
    // No group gpio here: it is made, and the chip gets it by a rule of ours.
    assert!(device.commands().contains("groupadd --system gpio"));
    assert_eq!(device.env("GPIO_GID").as_deref(), Some("991"));
    assert!(
        !device
            .read("etc/udev/rules.d/60-qwiic-gpio.rules")
            .is_empty()
    );
    assert_second_run_changes_nothing(&device);
}

#[test]
fn int_pin_none_removes_the_int_line_and_its_overlay_and_the_button_is_polled() {
    let device = raspberry_pi_with_gpio("int-none", PI_4, "pinctrl-bcm2711");
    assert_ok(&device.run(&["--int-pin", "18"]));
    let output = assert_ok(&device.run(&["--int-pin", "none"]));
    assert!(
        output.contains("without INT_GPIO, INT_CHIP and GPIO_GID and docker-compose.int.yml: the button is polled"),
        "{output}"
    );
    for key in ["INT_GPIO", "INT_CHIP", "GPIO_GID"] {
        assert_eq!(device.env(key), None, "{key}");
    }
    assert_eq!(
        device.env("COMPOSE_FILE").as_deref(),
        Some("docker-compose.yml:docker-compose.device.yml:docker-compose.token.yml")
    );
    assert_second_run_changes_nothing(&device);
    let again = assert_ok(&device.run(&["--int-pin", "none"]));
    assert!(again.contains("Nothing to change"), "{again}");
}

#[test]
fn int_pins_that_are_no_free_gpio_are_refused_with_the_pins_it_takes() {
    let device = raspberry_pi_with_gpio("int-bad", PI_4, "pinctrl-bcm2711");
    for (pin, expected) in [
        (
            "3",
            "--int-pin 3: header pin 3 is I2C SDA, the button's own bus, not a GPIO for INT",
        ),
        ("5", "header pin 5 is I2C SCL, the button's own bus"),
        (
            "1",
            "--int-pin 1: header pin 1 is 3.3V power, not a GPIO for INT",
        ),
        ("2", "header pin 2 is 5V power"),
        ("39", "header pin 39 is ground"),
        ("8", "header pin 8 is the UART (serial console)"),
        ("24", "header pin 24 is SPI"),
        (
            "41",
            "--int-pin takes the number of the header pin the button's INT is wired to, 1 to 40, such as --int-pin 18, or none (got '41')",
        ),
        ("0", "(got '0')"),
        ("GPIO24", "(got 'GPIO24')"),
        ("", "(got '')"),
    ] {
        let output = device.run(&["--int-pin", pin]);
        assert_eq!(output.status.code(), Some(1), "{pin}");
        let message = stderr(&output);
        assert!(
            message.contains(expected)
                && message.contains(
                    "the pins it takes: 7, 11, 12, 13, 15, 16, 18, 22, 29, 31, 32, 33, 35, 36, 37, 38 and 40"
                ),
            "{pin}: {message}"
        );
        assert!(device.commands().is_empty(), "{pin}: {}", device.commands());
    }
    assert!(!device.env_file.exists());
}

#[test]
fn int_pin_on_another_board_says_what_it_knows_and_how_to_set_int_by_hand() {
    let xavier = jetson_nano("int-xavier", 0, 1);
    xavier.model("NVIDIA Jetson Xavier NX Developer Kit");
    let debian = ready_for_the_button("int-debian");
    for (device, board) in [
        (&xavier, "this is NVIDIA Jetson Xavier NX Developer Kit"),
        (
            &debian,
            "this is a debian system (no /proc/device-tree/model)",
        ),
    ] {
        let output = device.run(&["--int-pin", "18"]);
        assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
        let message = stderr(&output);
        assert!(
            message.contains("--int-pin knows the header of a Raspberry Pi and of the Jetson Nano")
                && message.contains(board)
                && message.contains("set INT_GPIO=<GPIO chip label>:<line> in .env by hand")
                && message.contains("sets INT_CHIP, GPIO_GID and docker-compose.int.yml"),
            "{message}"
        );
        assert!(
            !device.commands().contains("apt-get"),
            "{}",
            device.commands()
        );
    }
    assert!(
        stderr(&xavier.run(&["--int-pin", "18"]))
            .contains("Jetson Xavier and Orin have other GPIO chips")
    );
}

#[test]
fn an_int_chip_not_found_lists_the_chips_there_are() {
    // The label an older kernel gave the Pi 4's chip.
    let device = raspberry_pi_with_gpio("int-nolabel", PI_4, "pinctrl-bcm2835");
    let output = device.run(&["--int-pin", "18"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains("no GPIO chip labelled pinctrl-bcm2711 here, for header pin 18")
            && message
                .contains("found: gpiochip0 (pinctrl-bcm2835), gpiochip1 (raspberrypi-exp-gpio)")
            && message.contains("cat /sys/class/gpio/gpiochip*/label"),
        "{message}"
    );
    assert!(
        !device.commands().contains("apt-get"),
        "{}",
        device.commands()
    );

    // No GPIO chip in sysfs at all.
    fs::remove_dir_all(device.root.join("sys/bus")).unwrap();
    let message = stderr(&device.run(&["--int-pin", "18"]));
    assert!(
        message.contains("found: none (no gpiochip in /sys/bus/gpio/devices)")
            && message.contains("CONFIG_GPIO_SYSFS"),
        "{message}"
    );

    // The chip without its node.
    let device = raspberry_pi_with_gpio("int-nonode", PI_4, "pinctrl-bcm2711");
    fs::remove_file(device.root.join("dev/gpiochip0")).unwrap();
    let message = stderr(&device.run(&["--int-pin", "18"]));
    assert!(
        message.contains(
            "the GPIO chip pinctrl-bcm2711 is gpiochip0 in /sys, but there is no /dev/gpiochip0"
        ) && message.contains("ls -l /dev/gpiochip*"),
        "{message}"
    );
}

#[test]
fn dry_run_with_int_pin_changes_nothing_and_says_what_it_would_do() {
    let device = jetson_nano("int-dry", 0, 1);
    let before = device.snapshot();
    let output = assert_ok(&device.run(&["--dry-run", "--int-pin", "18"]));
    assert_eq!(device.snapshot(), before, "--dry-run changed files");
    for line in [
        "ok: INT (header pin 18) is line 15 of tegra-gpio, /dev/gpiochip0 here",
        "would: groupadd --system gpio",
        "would: write /etc/udev/rules.d/60-qwiic-gpio.rules",
        "would: udevadm trigger --subsystem-match=gpio",
        "would: usermod -aG gpio pi",
        "would: set COMPOSE_FILE, I2C_DEVICE, I2C_GID, INT_GPIO, INT_CHIP and GPIO_GID in /home/pi/qwiic-containers/.env (I2C_DEVICE=/dev/i2c-1, INT_GPIO=tegra-gpio:15 on /dev/gpiochip0;",
    ] {
        assert!(output.contains(line), "{line}:\n{output}");
    }
    assert!(
        !device
            .commands()
            .lines()
            .any(|c| ["groupadd", "usermod", "udevadm"]
                .iter()
                .any(|m| c.starts_with(m))),
        "{}",
        device.commands()
    );
}

#[test]
fn a_reboot_for_i2c_names_the_int_pin_in_the_command_to_run_after_it() {
    let device = raspberry_pi_with_gpio("int-reboot", PI_4, "pinctrl-bcm2711");
    device.file("boot/firmware/config.txt", "[all]\n");
    let output = assert_ok(&device.run(&["--int-pin", "18"]));
    assert!(
        output.contains(
            "Reboot to enable I2C (sudo reboot), then run: sudo ./init_os.sh --int-pin 18 again."
        ),
        "{output}"
    );
}

#[test]
fn an_int_gpio_set_by_hand_with_the_chips_node_is_that_node_at_every_run() {
    let device = raspberry_pi_with_gpio("int-node", PI_4, "pinctrl-bcm2711");
    fs::write(&device.env_file, "INT_GPIO=gpiochip0:24\n").unwrap();
    let output = assert_ok(&device.run(&[]));
    assert!(
        output.contains(
            "ok: INT (INT_GPIO=gpiochip0:24 in .env) is line 24 of /dev/gpiochip0 (by its node"
        ),
        "{output}"
    );
    assert_eq!(device.env("INT_GPIO").as_deref(), Some("gpiochip0:24"));
    assert_eq!(device.env("INT_CHIP").as_deref(), Some("/dev/gpiochip0"));
    assert_second_run_changes_nothing(&device);
    // A node that is not there is named.
    fs::write(&device.env_file, "INT_GPIO=/dev/gpiochip7:24\n").unwrap();
    let output = device.run(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stderr(&output).contains(
            "INT_GPIO=/dev/gpiochip7:24 in .env names /dev/gpiochip7, which does not exist"
        ),
        "{}",
        stderr(&output)
    );
}

#[test]
fn int_settings_made_by_hand_where_sysfs_shows_no_such_label_are_kept() {
    // As on a kernel whose sysfs shows no labels, or a chip whose label is not the one given.
    let device = raspberry_pi_with_gpio("int-byhand", PI_4, "pinctrl-bcm2711");
    fs::write(
        &device.env_file,
        format!(
            "INT_GPIO=my-expander:3\nINT_CHIP=/dev/gpiochip1\nGPIO_GID={}\n",
            device.gid()
        ),
    )
    .unwrap();
    let output = assert_ok(&device.run(&[]));
    assert!(
        output.contains("note: no GPIO chip in /sys is labelled my-expander, for INT_GPIO=my-expander:3 in .env: keeping INT_CHIP=/dev/gpiochip1 from .env as it is"),
        "{output}"
    );
    assert_eq!(device.env("INT_GPIO").as_deref(), Some("my-expander:3"));
    assert_eq!(device.env("INT_CHIP").as_deref(), Some("/dev/gpiochip1"));
    assert_second_run_changes_nothing(&device);
}

#[test]
fn an_int_gpio_in_env_that_is_no_chip_label_and_line_is_refused() {
    let device = raspberry_pi_with_gpio("int-badenv", PI_4, "pinctrl-bcm2711");
    fs::write(&device.env_file, "INT_GPIO=gpio24\n").unwrap();
    let output = device.run(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stderr(&output).contains(".env sets INT_GPIO=gpio24, which is not <GPIO chip label>:<line>, such as pinctrl-bcm2711:24")
            && stderr(&output).contains("--int-pin 18"),
        "{}",
        stderr(&output)
    );
}
