#!/usr/bin/env bash
# Prepares a fresh device for qwiic-containers, once, with sudo:
#   Docker and Compose, I2C enabled at boot, /dev/i2c-* owned by group i2c, the user in the
#   docker and i2c groups, the Qwiic Button found, and .env written for compose device mode;
#   with --int-pin, the button's INT line on the GPIO chip of a header pin (group gpio).
# Runs on Jetson Nano (JetPack 4.6 / Ubuntu 18.04 and newer), Raspberry Pi OS (bookworm and
# trixie, 64-bit) and plain Debian/Ubuntu. Safe to run again: a second run changes nothing.

# `sh init_os.sh` runs this with dash: these first lines are POSIX, the rest needs bash.
if [ -z "${BASH_VERSION:-}" ]; then
  if command -v bash >/dev/null 2>&1; then
    exec bash "$0" "$@"
  fi
  echo "init_os.sh: this script needs bash; run it as: sudo ./init_os.sh" >&2
  exit 1
fi

set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo ./init_os.sh [--bus N] [--address ADDR] [--pi-i2c arm|gpio] [--pi-baudrate HZ]
                        [--int-pin PIN|none] [--dry-run] [--help]

Prepares this device to run qwiic-containers with the real Qwiic Button:
  - installs Docker and Docker Compose if missing (distribution packages, or Docker's apt
    repository with its key's fingerprint checked; never a downloaded script);
  - enables I2C at every boot (Raspberry Pi: config.txt; the i2c-dev module everywhere);
  - makes /dev/i2c-* group-owned by 'i2c' (udev rule) and adds you to the docker and i2c
    groups (the docker group is root-equivalent: add only trusted accounts);
  - checks that a Qwiic Button answers (ID 0x5D at address 0x6F, or --address) on the chosen
    bus, and looks for it at every other address when nothing answers there;
  - makes an API token (secrets/api-token) unless it exists or .env sets API_TOKEN, and a
    password for the bundled MQTT broker (MQTT_PASSWORD in .env, hashed for Mosquitto in
    secrets/mosquitto-passwd): authentication is on by default;
  - sets COMPOSE_FILE, I2C_DEVICE and I2C_GID in .env (owned by you, mode 0600) so that
    compose drives the real button with the token, and, when missing, ALLOWED_HOSTS (this
    device's names), MQTT_TOPIC_PREFIX (qwiic/<host name>), MQTT_USERNAME and MQTT_PASSWORD;
    every other line of .env is kept, and so is every other compose file in COMPOSE_FILE;
  - with --int-pin: finds the GPIO chip of the pin the button's INT is wired to, makes
    /dev/gpiochip* group-owned by 'gpio' (unless the system's udev rules do) and adds you to
    it, and sets INT_GPIO, INT_CHIP and GPIO_GID in .env with docker-compose.int.yml in
    COMPOSE_FILE, so that the button service waits for INT instead of polling.

Options:
  --bus N           the I2C bus the button is on (default: the one in .env, else 1: header
                    pins 3/5 on Jetson Nano and Raspberry Pi)
  --address ADDR    the button's I2C address, 0x08 to 0x77 (default: I2C_ADDRESS in .env,
                    else 0x6F); written to .env as I2C_ADDRESS when not 0x6F
  --pi-i2c arm      Raspberry Pi: the hardware I2C controller (dtparam=i2c_arm=on), bus 1.
                    The default.
  --pi-i2c gpio     Raspberry Pi: the bit-banged i2c-gpio overlay on the same pins 3/5
                    (GPIO 2/3) instead. It handles the clock stretching the button uses,
                    which the hardware controller of the Pi 4 and older mishandles (silently
                    corrupted reads). Adds dtoverlay=i2c-gpio,bus=3,i2c_gpio_sda=2,i2c_gpio_scl=3,
                    turns i2c_arm off (both use GPIO 2/3), and the bus becomes /dev/i2c-3
                    (or --bus N): that is the I2C_DEVICE written to .env. Needs a reboot.
  --pi-baudrate HZ  Raspberry Pi, hardware controller: the bus speed, 10000 to 400000 Hz
                    (dtparam=i2c_arm_baudrate=HZ; the Pi's default is 100000). A lower speed,
                    such as 50000, makes the clock-stretching bug rarer; the bus stays
                    /dev/i2c-1. Needs a reboot.
  --int-pin PIN     the header pin (1-40) the button's INT pad is wired to, such as 18: one
                    of 7, 11, 12, 13, 15, 16, 18, 22, 29, 31, 32, 33, 35, 36, 37, 38, 40 (plain
                    GPIOs by default; keep a second SPI or PCM off on the pin you
                    choose). Raspberry Pi (any model with the 40-pin header) and
                    Jetson Nano; elsewhere set INT_GPIO in .env by hand (README). Later runs
                    keep it, finding the chip again by its label.
  --int-pin none    INT is not wired: removes INT_GPIO, INT_CHIP, GPIO_GID and
                    docker-compose.int.yml from .env; the button is polled.
  --dry-run         say what would change, change nothing
  --help            this text

Run it again at any time: it only changes what is not already in place, and later runs keep
the --pi-i2c choice already in config.txt and the INT pin already in .env.
EOF
}

# Every path is under $ROOT: tests run the script against a fake root with stubbed commands.
ROOT=${INIT_OS_ROOT:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ENV_FILE=${INIT_OS_ENV_FILE:-$HERE/.env}
DEFAULT_ADDRESS=0x6f
BUTTON_ID=0x5d
# Reads of the button's ID register; the answer most of them give decides.
ID_READS=5
# Docker's apt key (https://docs.docker.com/engine/install/debian/).
DOCKER_KEY_FINGERPRINT=9DC858229FC7DD38854AE2D88D81803C0EBFCD88
UDEV_RULE='SUBSYSTEM=="i2c-dev", GROUP="i2c", MODE="0660"'
GPIO_UDEV_RULE='SUBSYSTEM=="gpio", KERNEL=="gpiochip*", GROUP="gpio", MODE="0660"'
# The keys of .env this script sets; those of the INT line only with one (--int-pin).
ENV_KEYS=(COMPOSE_FILE I2C_DEVICE I2C_GID)
INT_ENV_KEYS=(INT_GPIO INT_CHIP GPIO_GID)
SECRETS=$(dirname "$ENV_FILE")/secrets
# The compose files device mode needs, in order; others the user added are kept after them.
DEVICE_COMPOSE_FILES=(docker-compose.yml docker-compose.device.yml)
TOKEN_COMPOSE_FILE=docker-compose.token.yml
INT_COMPOSE_FILE=docker-compose.int.yml
# The header pins --int-pin takes, as pin:line on the board's GPIO chip: the 40-pin header's
# pins that are plain GPIOs by default (not I2C, the UART, the first SPI or the ID EEPROM's;
# some double as a second SPI or PCM when an overlay turns those on), the same pins on a
# Raspberry Pi and a Jetson Nano. Raspberry Pi: the BCM GPIO number, the line on every model's chip.
PI_INT_PINS="7:4 11:17 12:18 13:27 15:22 16:23 18:24 22:25 29:5 31:6 32:12 33:13 35:19 36:16 37:26 38:20 40:21"
# Jetson Nano: the line on tegra-gpio, from NVIDIA's Jetson.GPIO (JETSON_NANO_PIN_DEFS in
# lib/python/Jetson/GPIO/gpio_pin_data.py, github.com/NVIDIA/jetson-gpio).
NANO_INT_PINS="7:216 11:50 12:79 13:14 15:194 16:232 18:15 22:13 29:149 31:200 32:168 33:38 35:76 36:51 37:12 38:77 40:78"
# The groups of the services' user and of the bundled broker's (compose), which read the
# secrets (tests that run without root name their own).
SERVICE_GID=${INIT_OS_SERVICE_GID:-65532}
MOSQUITTO_GID=${INIT_OS_MOSQUITTO_GID:-1883}
MQTT_USER=qwiic

bus=""
bus_given=0
address=""
address_given=0
dry_run=0
pi_i2c=""
pi_baudrate=""
int_pin=""
changes=0
reboot_needed=0
relogin_needed=0
temp_paths=()

cleanup() {
  if [ ${#temp_paths[@]} -gt 0 ]; then rm -rf "${temp_paths[@]}"; fi
}
trap cleanup EXIT

say() { printf '%s\n' "$*"; }
# Its arguments as words: "a", "a and b", "a, b and c".
listed() {
  local words=$1
  shift
  while [ $# -gt 1 ]; do words+=", $1"; shift; done
  [ $# = 0 ] || words+=" and $1"
  printf '%s' "$words"
}
# The command that runs this again with what it cannot keep before .env is written.
rerun() { printf 'sudo ./init_os.sh%s' "${int_pin:+ --int-pin $int_pin}"; }
shown() { printf '%s' "${1#"$ROOT"}"; }
# What a person must do after this run, whether it succeeded or not.
print_notes() {
  [ "$reboot_needed" = 0 ] || [ "$dry_run" = 1 ] ||
    say "Reboot to enable I2C (sudo reboot), then run: $(rerun) again."
  [ "$relogin_needed" = 0 ] || [ "$dry_run" = 1 ] ||
    say "You were added to new groups: log out and in again (or: newgrp docker) to use them."
}
fail() {
  printf 'init_os.sh: %s\n' "$1" >&2
  shift
  local line
  for line in "$@"; do printf '  %s\n' "$line" >&2; done
  print_notes >&2
  exit 1
}
# A step of the real run failed: say so, and that running again redoes only what is missing.
step_failed() {
  fail "$@" "then run: $(rerun) again (it redoes only what is not in place)"
}
# Runs a command that changes the system (or says it would); returns the command's status.
attempt() {
  changes=$((changes + 1))
  if [ "$dry_run" = 1 ]; then
    say "would: $*"
    return 0
  fi
  say "doing: $*"
  "$@"
}
# Runs a command that changes the system (or says it would); stops the run if it fails.
change() {
  local status=0
  attempt "$@" || status=$?
  [ "$status" = 0 ] || step_failed "'$*' failed (exit $status); its own message is above"
}
# Counts and announces a change that the caller then makes itself unless this is a dry run.
announce() {
  changes=$((changes + 1))
  if [ "$dry_run" = 1 ]; then say "would: $*"; else say "doing: $*"; fi
}
# Sets $temp to a new directory, removed when the script exits.
new_temp_dir() {
  temp=$(mktemp -d)
  temp_paths+=("$temp")
}
# Replaces a file with new content in one rename, keeping its mode (0644 for a new file).
replace_file() {
  local file=$1 content=$2 temp mode=644
  [ ! -e "$file" ] || mode=$(stat -c %a "$file")
  mkdir -p "$(dirname "$file")"
  temp=$(mktemp "$file.XXXXXX")
  temp_paths+=("$temp")
  printf '%s\n' "$content" >"$temp"
  chmod "$mode" "$temp"
  mv -f "$temp" "$file"
}
# Writes a whole file if its content differs, or says it would.
write_file() {
  local file=$1 content=$2
  if [ -f "$file" ] && [ "$(cat "$file")" = "$content" ]; then
    return 0
  fi
  announce "write $(shown "$file")"
  [ "$dry_run" = 1 ] || replace_file "$file" "$content"
}

# An I2C address (hex 0x.. or decimal) as 0xNN in lower case, if it is 0x08-0x77.
normal_address() {
  local value
  if [[ $1 =~ ^0[xX][0-9a-fA-F]{1,2}$ ]]; then value=$((16#${1:2}))
  elif [[ $1 =~ ^[0-9]{1,3}$ ]]; then value=$((10#$1))
  else return 1
  fi
  [ "$value" -ge 8 ] && [ "$value" -le 119 ] || return 1
  printf '0x%02x' "$value"
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --bus | --bus=*)
        if [ "$1" = --bus ]; then shift; bus=${1:-}; else bus=${1#--bus=}; fi
        [[ $bus =~ ^[0-9]+$ ]] || fail "--bus needs a bus number, such as --bus 1 (got '$bus')" \
          "list the buses with: ls /dev/i2c-*"
        bus_given=1
        ;;
      --pi-i2c | --pi-i2c=*)
        if [ "$1" = --pi-i2c ]; then shift; pi_i2c=${1:-}; else pi_i2c=${1#--pi-i2c=}; fi
        [[ $pi_i2c =~ ^(arm|gpio)$ ]] || fail "--pi-i2c takes 'arm' or 'gpio' (got '$pi_i2c')" \
          "arm: the hardware controller, /dev/i2c-1 (the default)" \
          "gpio: the bit-banged i2c-gpio overlay, which handles clock stretching; /dev/i2c-3" \
          "see: ./init_os.sh --help"
        ;;
      --pi-baudrate | --pi-baudrate=*)
        if [ "$1" = --pi-baudrate ]; then shift; pi_baudrate=${1:-}; else pi_baudrate=${1#--pi-baudrate=}; fi
        if ! [[ $pi_baudrate =~ ^[0-9]{1,6}$ ]] || [ "$pi_baudrate" -lt 10000 ] || [ "$pi_baudrate" -gt 400000 ]; then
          fail "--pi-baudrate takes a bus speed in Hz from 10000 to 400000, such as --pi-baudrate 50000 (got '$pi_baudrate')"
        fi
        ;;
      --address | --address=*)
        if [ "$1" = --address ]; then shift; address=${1:-}; else address=${1#--address=}; fi
        address=$(normal_address "$address") || fail "--address takes an I2C address from 0x08 to 0x77, such as --address 0x6f (got '${1#--address=}')"
        address_given=1
        ;;
      --int-pin | --int-pin=*)
        if [ "$1" = --int-pin ]; then shift; int_pin=${1:-}; else int_pin=${1#--int-pin=}; fi
        check_int_pin
        ;;
      --dry-run) dry_run=1 ;;
      -h | --help) usage; exit 0 ;;
      *) fail "unknown option '$1'" "see: ./init_os.sh --help" ;;
    esac
    shift
  done
  if [ "$pi_i2c" = gpio ] && [ -n "$pi_baudrate" ]; then
    fail "--pi-baudrate sets the hardware controller's speed, which --pi-i2c gpio turns off" \
      "use one of them: --pi-i2c gpio (handles clock stretching) or --pi-baudrate HZ"
  fi
}

# The header pins --int-pin takes, as words.
int_pins() {
  local pair pins=()
  for pair in $PI_INT_PINS; do pins+=("${pair%%:*}"); done
  listed "${pins[@]}"
}

# What header pin $1 is when it is not one --int-pin takes (the same on a Raspberry Pi and a
# Jetson Nano).
header_pin_use() {
  case $1 in
    1 | 17) printf '3.3V power' ;;
    2 | 4) printf '5V power' ;;
    6 | 9 | 14 | 20 | 25 | 30 | 34 | 39) printf 'ground' ;;
    3) printf "I2C SDA, the button's own bus" ;;
    5) printf "I2C SCL, the button's own bus" ;;
    8 | 10) printf 'the UART (serial console)' ;;
    19 | 21 | 23 | 24 | 26) printf 'SPI' ;;
    27 | 28) printf "another I2C bus (a Raspberry Pi HAT's ID EEPROM)" ;;
  esac
}

# The line of header pin $1 in a list of pin:line ($2), if it has one.
pin_line() {
  local pair
  for pair in $2; do
    [ "${pair%%:*}" != "$1" ] || { printf '%s' "${pair#*:}"; return 0; }
  done
  return 1
}

# Checks --int-pin's value: none, or a header pin it takes (as a plain number in $int_pin).
check_int_pin() {
  [ "$int_pin" != none ] || return 0
  if ! [[ $int_pin =~ ^[0-9]{1,2}$ ]] || [ "$((10#$int_pin))" -lt 1 ] || [ "$((10#$int_pin))" -gt 40 ]; then
    fail "--int-pin takes the number of the header pin the button's INT is wired to, 1 to 40, such as --int-pin 18, or none (got '$int_pin')" \
      "the pins it takes: $(int_pins)" \
      "none: INT is not wired, and the button is polled" \
      "see: ./init_os.sh --help"
  fi
  int_pin=$((10#$int_pin))
  pin_line "$int_pin" "$PI_INT_PINS" >/dev/null && return 0
  fail "--int-pin $int_pin: header pin $int_pin is $(header_pin_use "$int_pin"), not a GPIO for INT" \
    "the pins it takes: $(int_pins)" \
    "wire INT to one of them, such as pin 18, and give its number (pin 1 has the square pad; pinout.xyz shows the Raspberry Pi's)"
}

# Sets $platform (jetson, raspberrypi, debian, ubuntu) and $codename, or fails.
detect_platform() {
  local os_release=$ROOT/etc/os-release id="" id_like="" version_codename="" ubuntu_codename=""
  [ -r "$os_release" ] || fail "cannot read /etc/os-release: unsupported OS" \
    "supported: Jetson Nano (JetPack 4.6+), Raspberry Pi OS bookworm or newer, Debian, Ubuntu"
  # shellcheck disable=SC1090
  id=$(. "$os_release"; printf '%s' "${ID:-}")
  # shellcheck disable=SC1090
  id_like=$(. "$os_release"; printf '%s' "${ID_LIKE:-}")
  # shellcheck disable=SC1090
  version_codename=$(. "$os_release"; printf '%s' "${VERSION_CODENAME:-}")
  # shellcheck disable=SC1090
  ubuntu_codename=$(. "$os_release"; printf '%s' "${UBUNTU_CODENAME:-}")
  codename=${version_codename:-$ubuntu_codename}
  if [ -e "$ROOT/etc/nv_tegra_release" ]; then
    platform=jetson
  elif [ -e "$ROOT/boot/firmware/config.txt" ] || [ -e "$ROOT/boot/config.txt" ] || [ "$id" = raspbian ]; then
    platform=raspberrypi
  elif [ "$id" = debian ] || [[ " $id_like " == *" debian "* && "$id" != ubuntu ]]; then
    platform=debian
  elif [ "$id" = ubuntu ] || [[ " $id_like " == *" ubuntu "* ]]; then
    platform=ubuntu
  else
    fail "unsupported OS '${id:-unknown}'" \
      "supported: Jetson Nano (JetPack 4.6+), Raspberry Pi OS bookworm or newer, Debian, Ubuntu" \
      "on another distribution, install Docker and Compose, enable I2C and write .env by hand (README)"
  fi
  say "platform: $platform ($id ${codename:-unknown})"
  if [ "$platform" != raspberrypi ] && { [ -n "$pi_i2c" ] || [ -n "$pi_baudrate" ]; }; then
    fail "--pi-i2c and --pi-baudrate are for a Raspberry Pi; this is $platform" \
      "a Raspberry Pi is recognised by /boot/firmware/config.txt (or /boot/config.txt)"
  fi
}

# --- Packages --------------------------------------------------------------------------------

# The package lists are refreshed once, before the first decision that reads them. A dry run
# reads fresh lists from a temporary directory and leaves the system's own alone, so that it
# plans what the real run does.
lists_fresh=0
apt_lists=()
refresh_lists() {
  [ "$lists_fresh" = 0 ] || return 0
  lists_fresh=1
  change apt-get update -q
  if [ "$dry_run" = 1 ]; then
    local temp
    new_temp_dir
    chmod 755 "$temp"
    apt_lists=(-o "Dir::State::Lists=$temp" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
    say "reading: fresh package lists into a temporary directory (the system's own stay as they are)"
    apt-get -q "${apt_lists[@]}" update >/dev/null ||
      fail "apt-get update failed (its message is above): cannot see which packages are available" \
        "check the network and /etc/apt/sources.list, then run this again"
  fi
}

# Sets $candidate to the version of a package apt would install, or to nothing. (Not for a
# command substitution: the lists are refreshed here, once, in this shell.)
find_candidate() {
  refresh_lists
  candidate=$(apt-cache "${apt_lists[@]}" policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '^(none)$' || true)
}

# version_at_least 2.26.1-4 1.27: Debian versions (an epoch is ignored).
version_at_least() {
  local version=${1#*:}
  [ "$(printf '%s\n%s\n' "$2" "$version" | sort -V | head -n1)" = "$2" ]
}

apt_install() {
  refresh_lists
  change env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

# Makes sure a command exists, installing its package if needed. In a dry run, returns 1 when
# the command would be installed (and so cannot be run yet).
need_command() {
  local command=$1 package=$2
  command -v "$command" >/dev/null && return 0
  apt_install "$package"
  [ "$dry_run" = 0 ] || return 1
  command -v "$command" >/dev/null ||
    step_failed "'$command' is still missing after installing $package"
}

# Sets $compose to the compose command that works here ("docker compose" or "docker-compose"),
# or fails (returns 1) when none does or it is older than 1.27.
compose_found() {
  if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
    compose="docker compose"
    return 0
  fi
  command -v docker-compose >/dev/null || return 1
  # docker-compose 1.27+ reads the project's compose files (no `version:`, depends_on conditions).
  local version
  version=$(docker-compose version --short 2>/dev/null || true)
  [ -n "$version" ] && version_at_least "$version" 1.27 || return 1
  compose=docker-compose
}

docker_apt_repository() {
  # Docker's own apt repository, for distributions whose compose is too old (Ubuntu 18.04).
  local distro=ubuntu arch key=$ROOT/etc/apt/keyrings/docker.asc list=$ROOT/etc/apt/sources.list.d/docker.list
  if [ "$platform" = debian ] || [ "$platform" = raspberrypi ]; then
    distro=debian
  fi
  arch=$(dpkg --print-architecture)
  if [ ! -s "$key" ]; then
    local tools=1
    need_command curl curl || tools=0
    need_command gpg gnupg || tools=0
    announce "download Docker's apt key to /etc/apt/keyrings/docker.asc, checking its fingerprint is $DOCKER_KEY_FINGERPRINT"
    if [ "$dry_run" = 0 ] && [ "$tools" = 1 ]; then
      local temp dir fingerprints
      new_temp_dir
      dir=$temp
      curl -fsSL -o "$dir/docker.asc" "https://download.docker.com/linux/$distro/gpg" ||
        step_failed "could not download Docker's apt key from https://download.docker.com/linux/$distro/gpg (curl's message is above)" \
          "check the network"
      fingerprints=$(GNUPGHOME=$dir gpg --batch --with-colons --import-options show-only --import "$dir/docker.asc" 2>/dev/null |
        awk -F: '$1 == "fpr" { print $10 }')
      if ! grep -qx "$DOCKER_KEY_FINGERPRINT" <<<"$fingerprints"; then
        fail "the key downloaded from https://download.docker.com/linux/$distro/gpg is not Docker's" \
          "its fingerprint: $(tr '\n' ' ' <<<"${fingerprints:-none (not an OpenPGP key)}")" \
          "expected: $DOCKER_KEY_FINGERPRINT" \
          "it was not installed and no Docker repository was added; check for a proxy or a captive" \
          "portal rewriting downloads, and Docker's install page for a changed key"
      fi
      mkdir -p "$(dirname "$key")"
      install -m 0644 "$dir/docker.asc" "$key"
    fi
  fi
  write_file "$list" "deb [arch=$arch signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/$distro $codename stable"
  lists_fresh=0
}

install_docker() {
  local candidate
  if command -v docker >/dev/null; then
    say "ok: docker is installed"
  else
    find_candidate docker-cli # Debian 13+: the client is its own package
    apt_install docker.io ${candidate:+docker-cli}
  fi
  if compose_found; then
    say "ok: compose is installed ($compose)"
    return
  fi
  # Ubuntu's v2, Docker's plugin when its repository is set up, then the distribution's
  # docker-compose (1.29 on Debian 12: v1, `docker-compose`; 2.26 on Debian 13: both commands).
  local package
  for package in docker-compose-v2 docker-compose-plugin docker-compose; do
    find_candidate "$package"
    if [ -n "$candidate" ] && version_at_least "$candidate" 1.27; then
      apt_install "$package"
      if [ "$package" = docker-compose ] && ! version_at_least "$candidate" 2; then
        compose=docker-compose
      else
        compose="docker compose"
      fi
      [ "$dry_run" = 1 ] || compose_found ||
        step_failed "compose does not run after installing $package: neither 'docker compose version' nor 'docker-compose version' works"
      return
    fi
  done
  docker_apt_repository
  apt_install docker-compose-plugin
  compose="docker compose"
  [ "$dry_run" = 1 ] || compose_found ||
    step_failed "'docker compose version' does not work after installing docker-compose-plugin"
}

# --- I2C ---------------------------------------------------------------------------------------

# Raspberry Pi config.txt. Settings count only where every board reads them: before the first
# [section] or under [all]; [pi4], [cm5] and the like apply to one model only.
pi_config=""
pi_config_facts() {
  awk '
    BEGIN { all = 1; arm = "unset"; baud = "-"; gpio = 0; gpio_bus = "-" }
    /^[[:space:]]*\[/ { s = $0; gsub(/[][[:space:]]/, "", s); all = (s == "all"); next }
    all && /^[[:space:]]*dtparam=/ {
      n = split(substr($0, index($0, "=") + 1), p, ",")
      for (i = 1; i <= n; i++) {
        if (p[i] ~ /^i2c_arm(=|$)/) arm = (p[i] ~ /^i2c_arm(=(on|true|yes|1))?$/) ? "on" : "off"
        if (p[i] ~ /^i2c_arm_baudrate=/) { baud = p[i]; sub(/^[^=]*=/, "", baud) }
      }
    }
    all && /^[[:space:]]*dtoverlay=i2c-gpio,/ && /i2c_gpio_sda=2(,|$)/ {
      gpio = 1; b = $0; gpio_bus = 0
      if (b ~ /bus=[0-9]+/) { sub(/.*bus=/, "", b); sub(/[^0-9].*/, "", b); gpio_bus = b }
    }
    END { print arm, baud, gpio, gpio_bus }
  ' "$pi_config"
}

# Prints config.txt with I2C set as wanted: arm (on|off), baud (a speed or empty: leave it),
# gpio_line (the i2c-gpio overlay line, or empty: none on GPIO 2/3). Edits lines in place where
# they are (an unconditional `#dtparam=i2c_arm=on` is uncommented, as raspi-config does);
# appends what is missing, after an [all] line when the file ends in a conditional section.
pi_config_edited() {
  awk -v arm="$1" -v baud="$2" -v gpio_line="$3" '
    function section(line) { s = line; gsub(/[][[:space:]]/, "", s); return s }
    function is_header(line) { return line ~ /^[[:space:]]*\[/ }
    function is_gpio(line) { return line ~ /^[[:space:]]*dtoverlay=i2c-gpio,/ && line ~ /i2c_gpio_sda=2(,|$)/ }
    function has_param(line, name,    n, p, i) {
      if (line !~ /^[[:space:]]*dtparam=/) return 0
      n = split(substr(line, index(line, "=") + 1), p, ",")
      for (i = 1; i <= n; i++) if (p[i] ~ ("^" name "(=|$)")) return 1
      return 0
    }
    function set_param(line, name, value,    n, p, i, out) {
      n = split(substr(line, index(line, "=") + 1), p, ",")
      out = substr(line, 1, index(line, "="))
      for (i = 1; i <= n; i++) {
        if (p[i] ~ ("^" name "(=|$)")) p[i] = name "=" value
        out = out (i > 1 ? "," : "") p[i]
      }
      return out
    }
    BEGIN { all = 1 }
    # First pass: which settings already have an unconditional line.
    FNR == NR {
      if (is_header($0)) { all = (section($0) == "all"); next }
      if (FNR == 1) all = 1
      if (all && has_param($0, "i2c_arm")) has_arm = 1
      if (all && has_param($0, "i2c_arm_baudrate")) has_baud = 1
      if (all && $0 ~ /^#[[:space:]]*dtparam=i2c_arm=on[[:space:]]*$/ && !commented) commented = FNR
      next
    }
    FNR == 1 { all = 1 }
    is_header($0) { all = (section($0) == "all"); print; next }
    all && has_param($0, "i2c_arm") { $0 = set_param($0, "i2c_arm", arm) }
    all && baud != "" && has_param($0, "i2c_arm_baudrate") { $0 = set_param($0, "i2c_arm_baudrate", baud) }
    all && is_gpio($0) {
      if (gpio_line != "" && !gpio_done) { print gpio_line; gpio_done = 1 }
      next
    }
    all && FNR == commented && !has_arm && arm == "on" { print "dtparam=i2c_arm=on"; has_arm = 1; next }
    { print }
    END {
      if (!has_arm && arm == "on") add[++adds] = "dtparam=i2c_arm=on"
      if (!has_baud && baud != "") add[++adds] = "dtparam=i2c_arm_baudrate=" baud
      if (gpio_line != "" && !gpio_done) add[++adds] = gpio_line
      if (adds && !all) print "[all]"
      for (i = 1; i <= adds; i++) print add[i]
    }
  ' "$pi_config" "$pi_config"
}

configure_pi_i2c() {
  pi_config=$ROOT/boot/firmware/config.txt
  [ -e "$pi_config" ] || pi_config=$ROOT/boot/config.txt
  [ -e "$pi_config" ] || fail "no config.txt in /boot/firmware or /boot: cannot enable I2C on this Raspberry Pi" \
    "is the boot partition mounted? (mount | grep boot)"
  local facts baud gpio gpio_bus mode wanted_gpio="" wanted_arm=on
  facts=$(pi_config_facts)
  read -r _ baud gpio gpio_bus <<<"$facts"
  [ "$baud" != - ] || baud=""
  [ "$gpio_bus" != - ] || gpio_bus=""
  mode=${pi_i2c:-arm}
  if [ -z "$pi_i2c" ] && [ "$gpio" = 1 ]; then
    mode=gpio # keep the choice an earlier --pi-i2c gpio made
    if [ -n "$pi_baudrate" ]; then
      fail "--pi-baudrate sets the hardware controller's speed, but this Pi uses the i2c-gpio overlay" \
        "switch back with: sudo ./init_os.sh --pi-i2c arm --pi-baudrate $pi_baudrate"
    fi
  fi
  if [ "$mode" = gpio ]; then
    [ "$bus_given" = 1 ] || bus=${gpio_bus:-3}
    [ "$bus" != 0 ] || bus=3
    wanted_arm=off
    wanted_gpio="dtoverlay=i2c-gpio,bus=$bus,i2c_gpio_sda=2,i2c_gpio_scl=3"
  elif [ -n "$pi_i2c" ] && [ "$bus_given" = 0 ]; then
    bus=1 # back from i2c-gpio: the hardware controller's bus
  fi
  local edited current
  edited=$(pi_config_edited "$wanted_arm" "$pi_baudrate" "$wanted_gpio")
  current=$(cat "$pi_config")
  if [ "$edited" = "$current" ]; then
    if [ "$mode" = gpio ]; then
      say "ok: I2C on GPIO 2/3 is the i2c-gpio overlay, bus $bus, in $(shown "$pi_config")"
    else
      say "ok: I2C is enabled in $(shown "$pi_config")${baud:+ (i2c_arm_baudrate=$baud)}"
    fi
    return
  fi
  local what
  if [ "$mode" = gpio ]; then
    what="$wanted_gpio (i2c_arm off)"
  else
    what="dtparam=i2c_arm=on${pi_baudrate:+ and dtparam=i2c_arm_baudrate=$pi_baudrate}"
    [ "$gpio" = 0 ] || what="$what, without the i2c-gpio overlay on GPIO 2/3"
  fi
  announce "set $what in $(shown "$pi_config") (for every board model)"
  [ "$dry_run" = 1 ] || replace_file "$pi_config" "$edited"
  reboot_needed=1
}

enable_i2c() {
  [ "$platform" != raspberrypi ] || configure_pi_i2c
  local modules=$ROOT/etc/modules-load.d/i2c-dev.conf
  if grep -qsx 'i2c-dev' "$modules"; then
    say "ok: the i2c-dev module loads at boot"
  else
    write_file "$modules" "i2c-dev"
  fi
  # /sys/module/i2c_dev: loaded, or built into the kernel (then /proc/modules lacks it).
  if [ -e "$ROOT/sys/module/i2c_dev" ]; then
    say "ok: the i2c-dev module is loaded"
  elif need_command modprobe kmod; then
    attempt modprobe i2c-dev ||
      step_failed "could not load the i2c-dev kernel module (modprobe's message is above)" \
        "the kernels of Raspberry Pi OS, JetPack, Debian and Ubuntu have it; a custom kernel needs CONFIG_I2C_CHARDEV"
  else
    announce "modprobe i2c-dev"
  fi
}

group_gid() { getent group "$1" | cut -d: -f3; }

# Makes sure group $1 exists.
ensure_group() {
  if getent group "$1" >/dev/null; then
    say "ok: group $1 exists (gid $(group_gid "$1"))"
  else
    change groupadd --system "$1"
  fi
}

# Makes the device nodes $4 (such as /dev/i2c-*) belong to group $5 with a udev rule: file $1
# in /etc/udev/rules.d, holding rule $2, applied now to the udev subsystem $3.
ensure_udev_rule() {
  local rules=$ROOT/etc/udev/rules.d/$1 rule=$2 subsystem=$3 nodes=$4 group=$5
  if [ -f "$rules" ] && [ "$(cat "$rules")" = "$rule" ]; then
    say "ok: $nodes belong to group $group (udev rule)"
    return
  fi
  local udevadm=1 previous=""
  need_command udevadm udev || udevadm=0
  [ ! -f "$rules" ] || previous=$(cat "$rules")
  write_file "$rules" "$rule"
  if [ "$udevadm" = 0 ]; then
    announce "udevadm control --reload-rules"
    announce "udevadm trigger --subsystem-match=$subsystem"
  elif ! attempt udevadm control --reload-rules || ! attempt udevadm trigger --subsystem-match="$subsystem"; then
    # Take the rule back, so that the next run sees it missing and tries again.
    if [ "$dry_run" = 0 ]; then
      if [ -n "$previous" ]; then replace_file "$rules" "$previous"; else rm -f "$rules"; fi
    fi
    step_failed "could not apply the udev rule for $nodes (udevadm's message is above)" \
      "is udev running? check: systemctl status systemd-udevd"
  fi
}

# Adds the user who ran sudo to the groups given (those that exist, or would in a dry run).
add_user_to_groups() {
  local user=${SUDO_USER:-} group
  if [ -z "$user" ] || [ "$user" = root ]; then
    local groups=groups
    [ $# -gt 1 ] || groups=group
    say "note: run with sudo from your own account to be added to the $(listed "$@") $groups"
    return
  fi
  for group in "$@"; do
    if id -nG "$user" 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then
      say "ok: $user is in group $group"
    elif getent group "$group" >/dev/null || [ "$dry_run" = 1 ]; then
      change usermod -aG "$group" "$user"
      relogin_needed=1
      [ "$group" != docker ] ||
        say "note: the docker group is root-equivalent: its members can start containers that control the whole device; add only accounts you trust with root"
    fi
  done
}

set_up_groups() {
  local groups=(docker i2c)
  ensure_group i2c
  ensure_udev_rule 60-qwiic-i2c.rules "$UDEV_RULE" i2c-dev "/dev/i2c-*" i2c
  if [ -n "$int_chip" ]; then
    ensure_group gpio
    int_chip_group
    groups+=(gpio)
  fi
  add_user_to_groups "${groups[@]}"
}

find_button() {
  local device=$ROOT/dev/i2c-$bus
  if [ ! -e "$device" ]; then
    if [ "$dry_run" = 1 ] || [ "$reboot_needed" = 1 ]; then
      say "note: /dev/i2c-$bus appears once I2C is enabled (after the reboot, if one is asked for); .env is written by the run after that"
      return 1
    fi
    local buses
    buses=$(cd "$ROOT/dev" 2>/dev/null && printf '%s ' i2c-* | sed 's/i2c-\* //; s/ $//')
    fail "no I2C bus /dev/i2c-$bus" \
      "I2C is not enabled or the button is on another bus (${buses:+found: $buses}${buses:-there is no /dev/i2c-* at all})" \
      "Raspberry Pi: reboot after this script enabled I2C, then run: sudo ./init_os.sh again" \
      "another bus: sudo ./init_os.sh --bus N (list them with: ls /dev/i2c-*)"
  fi
  if ! need_command i2cget i2c-tools; then
    say "note: the Qwiic Button is looked for once i2c-tools is installed"
    return 0
  fi
  local temp results majority count last_error scanned=0
  new_temp_dir
  read_id "$address"
  # (When the bus itself cannot be opened, no address answers either.)
  if [ "$majority" = error ] && [ "$address_given" = 0 ] && [[ $last_error != *"Could not open"* ]]; then
    scanned=1
    # Nothing at the expected address: the button may have been moved (a closed address jumper,
    # or an address written by software). Each empty address is one NACK (on a Jetson, one
    # kernel log line), once.
    local candidate candidate_hex found=""
    for ((candidate = 8; candidate <= 119; candidate++)); do
      printf -v candidate_hex '0x%02x' "$candidate"
      [ "$candidate_hex" != "$address" ] || continue
      if i2cget -y "$bus" "$candidate_hex" 0x00 2>/dev/null | grep -qix "$BUTTON_ID"; then
        found=$candidate_hex
        break
      fi
    done
    if [ -n "$found" ]; then
      say "note: nothing answers at $address, but a Qwiic Button does at $found (its address was changed, or an address jumper is closed): using $found (I2C_ADDRESS in .env)"
      address=$found
      read_id "$address"
    fi
  fi
  if [ "$count" -le $((ID_READS / 2)) ]; then
    fail "the reads of the ID register at $address on /dev/i2c-$bus disagree: $results" \
      "reads that disagree are the Raspberry Pi's I2C clock-stretching bug: try --pi-i2c gpio or --pi-baudrate 50000" \
      "elsewhere: check the Qwiic cable (a loose contact), then run: sudo ./init_os.sh again"
  fi
  if [ "$majority" = error ]; then
    local elsewhere=""
    [ "$scanned" = 0 ] || elsewhere=" (nor as a Qwiic Button at any other address)"
    fail "no Qwiic Button answers at $address on /dev/i2c-$bus$elsewhere: i2cget says: $last_error" \
      "check the Qwiic cable: SDA to pin 3, SCL to pin 5, 3.3V to pin 1, GND to pin 6" \
      "see what answers: sudo i2cdetect -y -r $bus (the button is 6f unless its address was changed)" \
      "another bus: sudo ./init_os.sh --bus N"
  fi
  if [ "$majority" != "$BUTTON_ID" ]; then
    local hint="see what answers: sudo i2cdetect -y -r $bus"
    [ "$majority" != 0x2e ] || hint="0x2e is 0x5d shifted by one bit: the Raspberry Pi's I2C clock-stretching bug; try --pi-i2c gpio or --pi-baudrate 50000"
    fail "a device answers at $address on /dev/i2c-$bus, but its ID register reads '$majority', not $BUTTON_ID: it is not a Qwiic Button" \
      "$hint" "another bus: sudo ./init_os.sh --bus N"
  fi
  say "ok: Qwiic Button found at $address on /dev/i2c-$bus"
  if [ "$count" -lt "$ID_READS" ]; then
    say "note: $((ID_READS - count)) of $ID_READS reads of its ID register disagreed ($results): the bus corrupts transfers now and then, which on a Raspberry Pi is its I2C clock-stretching bug; the services reject such reads, but each delays a press: consider --pi-i2c gpio or --pi-baudrate 50000"
  fi
}

# Reads the ID register at address $1 $ID_READS times: one read can be wrong without an error
# (the Raspberry Pi's clock-stretching bug), so what most reads say decides. Sets $results
# (each read's answer, or "error"), $majority and $count (how many said it), and $last_error
# (i2cget's words for the last failed read). Needs $temp.
read_id() {
  local id status try errors=$temp/i2cget.err
  results="" last_error=""
  for ((try = 0; try < ID_READS; try++)); do
    status=0
    id=$(i2cget -y "$bus" "$1" 0x00 2>"$errors") || status=$?
    if [ "$status" != 0 ]; then
      last_error="$(tr '\n' ' ' <"$errors" | sed 's/ *$//') (exit $status)"
      results+="error "
    else
      results+="${id,,} "
    fi
  done
  results=${results% }
  # shellcheck disable=SC2086 # one word per read
  read -r count majority <<<"$(printf '%s\n' $results |
    awk '{ n[$1]++ } END { for (v in n) if (n[v] > best) { best = n[v]; value = v }; print best, value }')"
}

# --- INT ---------------------------------------------------------------------------------------

# Sets $int_gpio, where the button's INT line is (<chip label>:<line>, or nothing: not wired),
# from --int-pin, else from INT_GPIO in .env, and $int_chip, its /dev/gpiochipN here.
int_setting() {
  if [ "$int_pin" = none ]; then
    return
  elif [ -n "$int_pin" ]; then
    int_pin_gpio
  else
    int_gpio=$(env_value INT_GPIO)
    [ -n "$int_gpio" ] || return 0
    [[ $int_gpio =~ ^[^:[:space:]]+:[0-9]+$ ]] ||
      fail ".env sets INT_GPIO=$int_gpio, which is not <GPIO chip label>:<line>, such as pinctrl-bcm2711:24" \
        "give the header pin INT is wired to: sudo ./init_os.sh --int-pin 18, or --int-pin none if it is not wired" \
        "or correct it in $(shown "$ENV_FILE")"
  fi
  find_int_chip
}

# Sets $int_gpio to <chip label>:<line> for header pin $int_pin on this board, or fails.
int_pin_gpio() {
  local model="" label lines=$PI_INT_PINS
  [ ! -r "$ROOT/proc/device-tree/model" ] || model=$(tr -d '\0' <"$ROOT/proc/device-tree/model")
  case "$platform:$model" in
    raspberrypi:"Raspberry Pi 5 "* | raspberrypi:"Raspberry Pi 500"* | raspberrypi:"Raspberry Pi Compute Module 5"*)
      label=pinctrl-rp1 ;;
    raspberrypi:"Raspberry Pi 4 "* | raspberrypi:"Raspberry Pi 400"* | raspberrypi:"Raspberry Pi Compute Module 4"*)
      label=pinctrl-bcm2711 ;;
    raspberrypi:"Raspberry Pi "*) label=pinctrl-bcm2835 ;;
    jetson:*"Jetson Nano"*) label=tegra-gpio lines=$NANO_INT_PINS ;;
    *)
      local why=()
      [ "$platform" != jetson ] || why=("Jetson Xavier and Orin have other GPIO chips, with other lines, which it does not map")
      fail "--int-pin knows the header of a Raspberry Pi and of the Jetson Nano; this is ${model:-a $platform system (no /proc/device-tree/model)}" \
        "${why[@]}" \
        "set INT_GPIO=<GPIO chip label>:<line> in .env by hand (gpioinfo, package gpiod, lists each chip's label and lines), then run: sudo ./init_os.sh again: it finds that chip and sets INT_CHIP, GPIO_GID and $INT_COMPOSE_FILE" \
        "or all of them by hand (README: init_os.sh); or leave INT unwired: the button is polled"
      ;;
  esac
  int_gpio=$label:$(pin_line "$int_pin" "$lines")
}

# The GPIO character devices with their labels, "gpiochipN<tab>label" a line.
# /sys/bus/gpio/devices/gpiochipN is the device of /dev/gpiochipN (kernel 4.6 and newer: JetPack
# 4.6's 4.9 and Raspberry Pi OS's 6.x), but it has no label. The legacy GPIO sysfs class has
# (/sys/class/gpio/gpiochipBASE/label, CONFIG_GPIO_SYSFS, on in both kernels), named by the
# chip's first global GPIO number, not by N (/dev/gpiochip0 is gpiochip512 there on Raspberry
# Pi OS). The kernel makes both for each chip: the legacy one's `device` link is the chip's
# parent device, whose directory holds the character device's too (for a chip without a
# parent, the link is the character device itself). A parent with several chips (one per bank)
# leaves which label is whose unknown: each of its chips gets all of the labels, joined by |,
# and matches none. The chip-info ioctl that gpiodetect uses is out of a shell's reach.
gpio_chips() {
  local cdev dir legacy target labels
  for cdev in "$ROOT"/sys/bus/gpio/devices/gpiochip*; do
    [ -e "$cdev" ] || continue
    dir=$(readlink -f "$cdev")
    labels=""
    for legacy in "$ROOT"/sys/class/gpio/gpiochip*; do
      if [ ! -e "$legacy/device" ] || [ ! -r "$legacy/label" ]; then continue; fi
      target=$(readlink -f "$legacy/device")
      [ "$target" = "$dir" ] || [ "$target" = "$(dirname "$dir")" ] || continue
      labels+="${labels:+|}$(cat "$legacy/label")"
    done
    printf '%s\t%s\n' "${cdev##*/}" "${labels:-(no label)}"
  done | sort -V
}

# Sets $int_chip to the /dev/gpiochipN labelled as $int_gpio says, or fails.
find_int_chip() {
  local label=${int_gpio%:*} line=${int_gpio##*:} chips name for kept
  for="header pin $int_pin"
  [ -n "$int_pin" ] || for="INT_GPIO=$int_gpio in .env"
  # A chip named by its node (gpiochip0:24, /dev/gpiochip0:24, as button-service takes them)
  # is that node: nothing to look up, and nothing that follows a renumbering.
  if [[ $label =~ ^(/dev/)?(gpiochip[0-9]+)$ ]]; then
    int_chip=/dev/${BASH_REMATCH[2]}
    [ -e "$ROOT$int_chip" ] ||
      fail "$for names $int_chip, which does not exist" \
        "list the chips: ls -l /dev/gpiochip*; a label (gpiodetect lists them) survives renumbering" \
        "or --int-pin none: the button is polled"
    say "ok: INT ($for) is line $line of $int_chip (by its node: a kernel update may renumber it; its label would not)"
    return
  fi
  chips=$(gpio_chips)
  name=$(awk -F '\t' -v label="$label" '$2 == label { print $1; exit }' <<<"$chips")
  kept=$(env_value INT_CHIP)
  if [ -z "$name" ] && [ -z "$int_pin" ] && [[ $kept =~ ^/dev/gpiochip[0-9]+$ ]] && [ -e "$ROOT$kept" ]; then
    # Set by hand where sysfs shows no labels (a kernel without CONFIG_GPIO_SYSFS): kept.
    int_chip=$kept
    say "note: no GPIO chip in /sys is labelled $label, for $for: keeping INT_CHIP=$kept from .env as it is"
    return
  fi
  if [ -z "$name" ]; then
    local found
    found=$(awk -F '\t' 'NF { printf "%s%s (%s)", (n++ ? ", " : ""), $1, $2 }' <<<"$chips")
    fail "no GPIO chip labelled $label here, for $for" \
      "found: ${found:-none (no gpiochip in /sys/bus/gpio/devices)}" \
      "check the labels (cat /sys/class/gpio/gpiochip*/label; gpiodetect, package gpiod, lists them too): is this the board init_os.sh took it for?" \
      "a kernel without CONFIG_GPIO_SYSFS shows no labels there: set INT_GPIO, INT_CHIP and GPIO_GID in .env by hand (README); or --int-pin none: the button is polled"
  fi
  int_chip=/dev/$name
  [ -e "$ROOT$int_chip" ] ||
    fail "the GPIO chip $label is $name in /sys, but there is no $int_chip" \
      "the kernel makes it with CONFIG_GPIO_CDEV (JetPack and Raspberry Pi OS have it); is /dev a devtmpfs? check: ls -l /dev/gpiochip*" \
      "or --int-pin none: the button is polled"
  say "ok: INT ($for) is line $line of $label, $int_chip here"
}

# Makes INT's chip belong to group gpio: with a udev rule of ours, unless the system's own rules
# do it already, as the node shows (Raspberry Pi OS's make every /dev/gpiochip* root:gpio
# 0660, and so do those that come with Jetson.GPIO).
int_chip_group() {
  local rules=60-qwiic-gpio.rules
  if [ ! -e "$ROOT/etc/udev/rules.d/$rules" ]; then
    local gid node
    gid=$(group_gid gpio || true)
    node=$(stat -c '%g %A' "$ROOT$int_chip")
    if [ -n "$gid" ] && [ "${node%% *}" = "$gid" ] && [ "$(cut -c5-6 <<<"${node#* }")" = rw ]; then
      say "ok: $int_chip belongs to group gpio, which may read and write it (the system's udev rules)"
      return
    fi
  fi
  ensure_udev_rule "$rules" "$GPIO_UDEV_RULE" gpio "/dev/gpiochip*" gpio
}

# What Docker would do to the containers that compose does not decide: says so.
check_docker_runtime() {
  local daemon=$ROOT/etc/docker/daemon.json
  if [ -f "$daemon" ] && tr -d ' \t\n' <"$daemon" | grep -q '"default-runtime":"nvidia"'; then
    say "note: Docker's default runtime here is nvidia ($(shown "$daemon")), which puts the host's libraries and /dev/nvhost-* into every container; compose runs these services with runc (runtime: runc), so they get only the I2C bus. Your other containers keep nvidia."
  fi
  local controllers=$ROOT/sys/fs/cgroup/cgroup.controllers cgroups=$ROOT/proc/cgroups memory=""
  if [ -f "$controllers" ]; then
    if grep -qw memory "$controllers"; then memory=yes; else memory=no; fi
  elif [ -f "$cgroups" ]; then
    memory=$(awk '$1 == "memory" { print ($4 == 1 ? "yes" : "no"); found = 1 } END { if (!found) print "no" }' "$cgroups")
  fi
  if [ "$memory" = no ]; then
    say "note: this kernel has no memory cgroup, so Docker runs the services without their 32 MiB memory limit (mem_limit; it warns at every start), and a leak could take the board's memory. On a Raspberry Pi, add 'cgroup_enable=memory cgroup_memory=1' to the one line of /boot/firmware/cmdline.txt (/boot/cmdline.txt on older systems) and reboot."
  fi
}

# --- secrets and .env ---------------------------------------------------------------------------

# The owner of what is written into the project folder (.env, secrets/): whoever runs compose,
# the sudo user, else the owner of the project directory. Sets $owner (uid:gid) and $owner_name.
file_owner() {
  local user=${SUDO_USER:-} dir
  dir=$(dirname "$ENV_FILE")
  if [ -n "$user" ] && [ "$user" != root ] && getent passwd "$user" >/dev/null; then
    owner=$(getent passwd "$user" | cut -d: -f3,4)
    owner_name=$user
  else
    owner=$(stat -c %u:%g "$dir")
    owner_name=$(stat -c %U "$dir")
  fi
}

# Writes $3 to $1 with mode $2 and owner $4 (uid:gid), in one rename. The folder belongs to
# the user, who could swap a path for a link at any moment: the file is created and written
# in one open that refuses anything already there (noclobber: O_EXCL), its mode comes from the
# umask at creation, and its owner is set without following links; nothing of root's is ever
# reached through a name the user controls.
write_user_file() {
  local file=$1 mode=$2 content=$3 who=$4 temp
  temp="$(dirname "$file")/.$(basename "$file").$$.$RANDOM$RANDOM"
  temp_paths+=("$temp")
  if ! (umask "$(printf '%03o' $((0777 & ~0$mode)))" && set -C && printf '%s\n' "$content" >"$temp"); then
    fail "could not create $(shown "$temp")" "is something else writing in $(shown "$(dirname "$file")")? run: sudo ./init_os.sh again"
  fi
  chown -h "$who" "$temp"
  mv -fT "$temp" "$file"
}

# Refuses a path that is a link or not a plain file: root writes it and does not follow links.
plain_file_or_none() {
  local file=$1
  if [ -L "$file" ]; then
    fail "$(shown "$file") is a symbolic link (to $(readlink "$file")): init_os.sh writes it as root and does not follow links" \
      "make it a plain file (cp --remove-destination \"\$(readlink $(basename "$file"))\" $(basename "$file")), then run: sudo ./init_os.sh again"
  fi
  if [ -e "$file" ] && [ ! -f "$file" ]; then
    fail "$(shown "$file") is not a regular file" "move it away, then run: sudo ./init_os.sh again"
  fi
}

# A random secret: 32 letters and digits (190 bits).
random_secret() {
  local secret=""
  while [ ${#secret} -lt 32 ]; do
    secret+=$(head -c 48 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9')
  done
  printf '%s' "${secret:0:32}"
}

# A line of Mosquitto's password file for user $1 with password $2 (and salt $3, base64; a new
# random one if not given): $6$, SHA-512 of the password then the salt, as mosquitto_passwd
# writes too.
mosquitto_hash() {
  local user=$1 password=$2 salt=${3:-} hex
  [ -n "$salt" ] || salt=$(head -c 12 /dev/urandom | base64 -w0)
  hex=$({ printf '%s' "$password"; printf '%s' "$salt" | base64 -d; } | sha512sum | cut -c1-128)
  # shellcheck disable=SC2016 # $6$ is Mosquitto's literal marker
  printf '%s:$6$%s$%s' "$user" "$salt" "$(printf '%b' "$(printf '%s' "$hex" | sed 's/../\\x&/g')" | base64 -w0)"
}

# The value of KEY in .env, if set there.
env_value() {
  [ -f "$ENV_FILE" ] && [ ! -L "$ENV_FILE" ] || return 0
  sed -n "s|^$1=||p" "$ENV_FILE" | tail -n1
}

# The secrets: the API token for both services (a file compose mounts), and the bundled
# broker's password: in .env for the services (MQTT_PASSWORD, made when missing), hashed in
# secrets/mosquitto-passwd for Mosquitto. Each is made once and kept; the hash follows .env.
make_secrets() {
  if [ -n "$(env_value API_TOKEN)" ]; then
    say "ok: .env sets API_TOKEN: the services use it (no token file)"
  else
    make_secret api-token "$SERVICE_GID" "the API token (changes to the LED send it: see the README)"
  fi
  mqtt_password=$(env_value MQTT_PASSWORD)
  [ -n "$mqtt_password" ] || mqtt_password=$(random_secret)
  local hashed=$SECRETS/mosquitto-passwd salt
  plain_file_or_none "$hashed"
  salt=$({ grep -s "^$MQTT_USER:" "$hashed" || true; } | head -n1 | cut -d'$' -f3)
  if [ -n "$salt" ] && [ "$(cat "$hashed")" = "$(mosquitto_hash "$MQTT_USER" "$mqtt_password" "$salt")" ]; then
    say "ok: $(shown "$hashed") lets $MQTT_USER into the bundled MQTT broker with .env's MQTT_PASSWORD"
    return
  fi
  announce "write $(shown "$hashed") (the bundled broker's password file for $MQTT_USER, mode 0440)"
  [ "$dry_run" = 0 ] || return 0
  make_secrets_folder
  write_user_file "$hashed" 440 "$(mosquitto_hash "$MQTT_USER" "$mqtt_password")" "${owner%%:*}:$MOSQUITTO_GID"
}

make_secrets_folder() {
  if [ -L "$SECRETS" ]; then
    fail "$(shown "$SECRETS") is a symbolic link: init_os.sh writes it as root and does not follow links" "make it a plain folder, then run: sudo ./init_os.sh again"
  fi
  [ -d "$SECRETS" ] || { mkdir -m 0750 "$SECRETS" && chown -h "$owner" "$SECRETS"; }
}

# secrets/$1, readable by its owner and group $2 (mode 0440), made with a random value
# unless it holds one already.
make_secret() {
  local file=$SECRETS/$1 group=$2 what=$3
  plain_file_or_none "$file"
  if [ -s "$file" ]; then
    say "ok: $(shown "$file") holds $what"
    return
  fi
  announce "write $(shown "$file"): $what (mode 0440, group $group)"
  [ "$dry_run" = 0 ] || return 0
  make_secrets_folder
  write_user_file "$file" 440 "$(random_secret)" "${owner%%:*}:$group"
}

# The bus named in an existing .env, if any.
env_bus() {
  [ -f "$ENV_FILE" ] && [ ! -L "$ENV_FILE" ] || return 0
  sed -n 's|^I2C_DEVICE=/dev/i2c-\([0-9][0-9]*\)$|\1|p' "$ENV_FILE" | tail -n1
}

# COMPOSE_FILE for device mode: its files, the INT overlay with an INT line, the token overlay
# unless .env sets API_TOKEN, then every other file already listed (an overlay the user added
# stays; the INT overlay only with an INT line).
compose_files() {
  local files=("${DEVICE_COMPOSE_FILES[@]}") known
  [ -z "$int_gpio" ] || files+=("$INT_COMPOSE_FILE")
  [ -n "$(env_value API_TOKEN)" ] || files+=("$TOKEN_COMPOSE_FILE")
  local existing
  IFS=: read -r -a existing <<<"$(env_value COMPOSE_FILE)"
  for known in "${existing[@]}"; do
    [ -n "$known" ] || continue
    [[ " ${files[*]} $INT_COMPOSE_FILE docker-compose.override.yml " == *" $known "* ]] || files+=("$known")
  done
  (IFS=:; printf '%s' "${files[*]}")
}

# This device's names for ALLOWED_HOSTS: its host name, and that name in .local (mDNS).
device_names() {
  local host
  host=$(cat "$ROOT/etc/hostname" 2>/dev/null || hostname 2>/dev/null || true)
  host=$(printf '%s' "$host" | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')
  [ -n "$host" ] || return 0
  printf '%s,%s.local' "$host" "$host"
}

# .env with the keys this script manages set (I2C's gid $1, the gpio group's $2), the keys it
# fills in added when missing, the INT line's removed when there is none, and every other line
# kept as it was.
env_content() {
  local files managed dropped=""
  files=$(compose_files)
  managed="COMPOSE_FILE=$files
I2C_DEVICE=/dev/i2c-$bus
I2C_GID=$1"
  # The address only when it is not the default, or .env named one already.
  if [ "$address" != "$DEFAULT_ADDRESS" ] || [ -n "$(env_value I2C_ADDRESS)" ]; then
    managed+=$'\n'"I2C_ADDRESS=$address"
  fi
  if [ -n "$int_gpio" ]; then
    managed+=$'\n'"INT_GPIO=$int_gpio"$'\n'"INT_CHIP=$int_chip"$'\n'"GPIO_GID=$2"
  else
    dropped="${INT_ENV_KEYS[*]}"
  fi
  local host names defaults=""
  names=$(device_names)
  host=${names%%,*}
  [ -z "$names" ] || defaults+="ALLOWED_HOSTS=$names"$'\n'
  [ -z "$host" ] || defaults+="MQTT_TOPIC_PREFIX=qwiic/$host"$'\n'
  defaults+="MQTT_USERNAME=$MQTT_USER"$'\n'
  defaults+="MQTT_PASSWORD=$mqtt_password"
  [ -s "$ENV_FILE" ] || say "# Compose device mode: init_os.sh sets $(listed "${ENV_KEYS[@]}") (and $(listed "${INT_ENV_KEYS[@]}") with --int-pin) and keeps every other line."
  { [ ! -f "$ENV_FILE" ] || cat "$ENV_FILE"; } |
    MANAGED=$managed DEFAULTS=$defaults DROPPED=$dropped awk '
      BEGIN {
        split(ENVIRON["DROPPED"], gone, " ")
        for (i in gone) drop[gone[i]] = 1
        n = split(ENVIRON["MANAGED"], line, "\n")
        for (i = 1; i <= n; i++) { key = substr(line[i], 1, index(line[i], "=") - 1); order[i] = key; want[key] = line[i] }
        d = split(ENVIRON["DEFAULTS"], fill, "\n")
        for (i = 1; i <= d; i++) { key = substr(fill[i], 1, index(fill[i], "=") - 1); forder[i] = key; default[key] = fill[i] }
      }
      /^[A-Za-z_][A-Za-z_0-9]*=/ {
        key = substr($0, 1, index($0, "=") - 1)
        if (key in drop) next
        if (key in want) { print want[key]; done[key] = 1; next }
        if (key in default) { done[key] = 1 }
      }
      { print }
      END {
        for (i = 1; i <= n; i++) if (!(order[i] in done)) print want[order[i]]
        for (i = 1; i <= d; i++) if (!(forder[i] in done)) print default[forder[i]]
      }
    '
}

write_env() {
  local gid gpio_gid="" keys=("${ENV_KEYS[@]}") int=""
  gid=$(group_gid i2c || true)
  if [ -n "$int_gpio" ]; then
    gpio_gid=$(group_gid gpio || true)
    keys+=("${INT_ENV_KEYS[@]}")
    int=", INT_GPIO=$int_gpio on $int_chip"
  elif [ -n "$(env_value INT_GPIO)$(env_value INT_CHIP)$(env_value GPIO_GID)" ]; then
    int=", without $(listed "${INT_ENV_KEYS[@]}") and $INT_COMPOSE_FILE: the button is polled"
  fi
  plain_file_or_none "$ENV_FILE"
  local what
  what="set $(listed "${keys[@]}") in $(shown "$ENV_FILE") (I2C_DEVICE=/dev/i2c-$bus$int; owner $owner_name, mode 0600)"
  if [ -z "$gid" ] || { [ -n "$int_gpio" ] && [ -z "$gpio_gid" ]; }; then
    announce "$what" # a dry run before group i2c or gpio exists
    return
  fi
  local content
  content=$(env_content "$gid" "$gpio_gid")
  if [ -f "$ENV_FILE" ] && [ "$(cat "$ENV_FILE")" = "$content" ] &&
    [ "$(stat -c '%u:%g %a' "$ENV_FILE")" = "$owner 600" ]; then
    say "ok: $(shown "$ENV_FILE") sets $(listed "${keys[@]}") for /dev/i2c-$bus${int_gpio:+ and INT on $int_chip}"
    return
  fi
  announce "$what"
  [ "$dry_run" = 0 ] || return 0
  write_user_file "$ENV_FILE" 600 "$content" "$owner"
}

# How to start the system with the compose found: the README's quick-start line. Compose v1
# ignores pull_policy and would build a missing image from source, on the device: it pulls
# first, and builds only when the images cannot be pulled (none published, no registry).
start_command() {
  if [ "$compose" = docker-compose ]; then
    printf '%s' "(docker-compose pull || docker-compose build) && docker-compose up -d"
  else
    printf '%s' "$compose up -d"
  fi
}

main() {
  parse_args "$@"
  [ "$(id -u)" = 0 ] || fail "this script changes the system: run it with sudo" "sudo ./init_os.sh $*"
  local platform codename compose="docker compose" int_gpio="" int_chip=""
  detect_platform
  if [ "$bus_given" = 0 ]; then
    bus=$(env_bus)
    [ -n "$bus" ] || bus=1
  fi
  if [ "$address_given" = 0 ]; then
    local in_env
    in_env=$(env_value I2C_ADDRESS)
    address=$DEFAULT_ADDRESS
    if [ -n "$in_env" ]; then
      address=$(normal_address "$in_env") ||
        fail ".env sets I2C_ADDRESS=$in_env, which is not an I2C address from 0x08 to 0x77" \
          "correct it in $(shown "$ENV_FILE"), or give one: sudo ./init_os.sh --address 0x6f"
    fi
  fi
  int_setting
  install_docker
  check_docker_runtime
  enable_i2c
  set_up_groups
  if find_button; then
    local owner owner_name mqtt_password=""
    file_owner
    make_secrets
    write_env
  fi
  say ""
  if [ "$changes" = 0 ]; then
    say "Nothing to change: this device is ready. Start it with: $(start_command)"
  elif [ "$dry_run" = 1 ]; then
    say "Dry run: $changes change(s) would be made; nothing was changed."
    [ "$reboot_needed" = 0 ] || say "Then: reboot to enable I2C, and run: $(rerun) again."
    say "Then start it with: $(start_command)"
  else
    say "Done: $changes change(s)."
    print_notes
    [ "$reboot_needed" = 1 ] || say "Start it with: $(start_command)"
  fi
}

main "$@"
