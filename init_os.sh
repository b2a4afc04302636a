#!/usr/bin/env bash
# Prepares a fresh device for qwiic-containers, once, with sudo:
#   Docker and Compose, I2C enabled at boot, /dev/i2c-* owned by group i2c, the user in the
#   docker and i2c groups, the Qwiic Button found, and .env written for compose device mode.
# Runs on Jetson Nano (JetPack 4.6 / Ubuntu 18.04 and newer), Raspberry Pi OS (bookworm,
# 64-bit) and plain Debian/Ubuntu. Safe to run again: a second run changes nothing.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo ./init_os.sh [--bus N] [--dry-run] [--help]

Prepares this device to run qwiic-containers with the real Qwiic Button:
  - installs Docker and Docker Compose if missing (distribution packages, or Docker's apt
    repository; never a downloaded script);
  - enables I2C at every boot (Raspberry Pi: dtparam=i2c_arm=on; i2c-dev module everywhere);
  - makes /dev/i2c-* group-owned by 'i2c' (udev rule) and adds you to the docker and i2c groups;
  - checks that a Qwiic Button answers (ID 0x5D at address 0x6F) on the chosen bus;
  - writes .env so that `docker compose up` drives the real button.

Options:
  --bus N     the I2C bus the button is on (default 1: pins 3/5 on Jetson Nano and Raspberry Pi)
  --dry-run   say what would change, change nothing
  --help      this text

Run it again at any time: it only changes what is not already in place.
EOF
}

# Every path is under $ROOT: tests run the script against a fake root with stubbed commands.
ROOT=${INIT_OS_ROOT:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ENV_FILE=${INIT_OS_ENV_FILE:-$HERE/.env}
BUTTON_ADDRESS=0x6f
BUTTON_ID=0x5d

bus=1
dry_run=0
changes=0

say() { printf '%s\n' "$*"; }
fail() {
  printf 'init_os.sh: %s\n' "$1" >&2
  shift
  local line
  for line in "$@"; do printf '  %s\n' "$line" >&2; done
  exit 1
}
# Runs a command that changes the system, or says it would.
change() {
  changes=$((changes + 1))
  if [ "$dry_run" = 1 ]; then
    say "would: $*"
  else
    say "doing: $*"
    "$@"
  fi
}
# Appends a line to a file, or says it would.
append_line() {
  local line=$1 file=$2
  changes=$((changes + 1))
  if [ "$dry_run" = 1 ]; then
    say "would: add '$line' to ${file#"$ROOT"}"
  else
    say "doing: add '$line' to ${file#"$ROOT"}"
    mkdir -p "$(dirname "$file")"
    printf '%s\n' "$line" >>"$file"
  fi
}
# Writes a whole file if its content differs, or says it would.
write_file() {
  local file=$1 content=$2
  if [ -f "$file" ] && [ "$(cat "$file")" = "$content" ]; then
    return 0
  fi
  changes=$((changes + 1))
  if [ "$dry_run" = 1 ]; then
    say "would: write ${file#"$ROOT"}"
  else
    say "doing: write ${file#"$ROOT"}"
    mkdir -p "$(dirname "$file")"
    printf '%s\n' "$content" >"$file"
  fi
}

parse_args() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --bus)
        shift
        [[ ${1:-} =~ ^[0-9]+$ ]] || fail "--bus needs a bus number, such as --bus 1" "list the buses with: ls /dev/i2c-*"
        bus=$1
        ;;
      --bus=*)
        bus=${1#--bus=}
        [[ $bus =~ ^[0-9]+$ ]] || fail "--bus needs a bus number, such as --bus 1" "list the buses with: ls /dev/i2c-*"
        ;;
      --dry-run) dry_run=1 ;;
      -h | --help) usage; exit 0 ;;
      *) fail "unknown option '$1'" "see: ./init_os.sh --help" ;;
    esac
    shift
  done
}

# Sets $platform (jetson, raspberrypi, debian, ubuntu) and $codename, or fails.
detect_platform() {
  local os_release=$ROOT/etc/os-release id="" id_like="" version_codename="" ubuntu_codename=""
  [ -r "$os_release" ] || fail "cannot read /etc/os-release: unsupported OS" \
    "supported: Jetson Nano (JetPack 4.6+), Raspberry Pi OS bookworm 64-bit, Debian, Ubuntu"
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
      "supported: Jetson Nano (JetPack 4.6+), Raspberry Pi OS bookworm 64-bit, Debian, Ubuntu" \
      "on another distribution, install Docker and Compose, enable I2C and write .env by hand (README)"
  fi
  say "platform: $platform ($id ${codename:-unknown})"
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    change apt-get update -q
    apt_updated=1
  fi
  change env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

package_available() {
  apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -qv '(none)'

}

compose_ok() {
  command -v docker >/dev/null && docker compose version >/dev/null 2>&1 && return 0
  command -v docker-compose >/dev/null || return 1
  # docker-compose 1.27+ reads the project's compose files (no `version:`, depends_on conditions).
  local version
  version=$(docker-compose version --short 2>/dev/null || true)
  [[ $version =~ ^1\.(2[7-9]|[3-9][0-9])|^[2-9]\. ]]
}

docker_apt_repository() {
  # Docker's own apt repository, for distributions whose compose is too old (Ubuntu 18.04).
  local distro=ubuntu arch key=$ROOT/etc/apt/keyrings/docker.asc list=$ROOT/etc/apt/sources.list.d/docker.list
  if [ "$platform" = debian ] || [ "$platform" = raspberrypi ]; then
    distro=debian
  fi
  arch=$(dpkg --print-architecture)
  if [ ! -s "$key" ]; then
    command -v curl >/dev/null || apt_install curl ca-certificates
    change mkdir -p "$ROOT/etc/apt/keyrings"
    change curl -fsSL -o "$key" "https://download.docker.com/linux/$distro/gpg"
  fi
  write_file "$list" "deb [arch=$arch signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/$distro $codename stable"
  apt_updated=0
}

install_docker() {
  if command -v docker >/dev/null; then
    say "ok: docker is installed"
  else
    apt_install docker.io
  fi
  if [ "$dry_run" = 0 ] || command -v docker >/dev/null; then
    if compose_ok; then
      say "ok: docker compose is installed"
      return
    fi
  fi
  local candidate
  for candidate in docker-compose-v2 docker-compose-plugin; do
    if package_available "$candidate"; then
      apt_install "$candidate"
      return
    fi
  done
  if package_available docker-compose && [[ $(apt-cache policy docker-compose | sed -n 's/^ *Candidate: //p') =~ ^1\.(2[7-9]|[3-9][0-9]) ]]; then
    apt_install docker-compose
    return
  fi
  docker_apt_repository
  apt_install docker-compose-plugin
}

enable_i2c() {
  local modules=$ROOT/etc/modules-load.d/i2c-dev.conf
  if [ "$platform" = raspberrypi ]; then
    local config=$ROOT/boot/firmware/config.txt
    [ -e "$config" ] || config=$ROOT/boot/config.txt
    if grep -qE '^dtparam=i2c_arm=on' "$config" 2>/dev/null; then
      say "ok: I2C is enabled in ${config#"$ROOT"}"
    else
      append_line "dtparam=i2c_arm=on" "$config"
      reboot_needed=1
    fi
  fi
  if grep -qsx 'i2c-dev' "$modules"; then
    say "ok: the i2c-dev module loads at boot"
  else
    write_file "$modules" "i2c-dev"
  fi
  if grep -qs '^i2c_dev ' "$ROOT/proc/modules"; then
    say "ok: the i2c-dev module is loaded"
  else
    change modprobe i2c-dev
  fi
}

group_gid() { getent group "$1" | cut -d: -f3; }

set_up_groups() {
  if getent group i2c >/dev/null; then
    say "ok: group i2c exists (gid $(group_gid i2c))"
  else
    change groupadd --system i2c
  fi
  local before=$changes
  write_file "$ROOT/etc/udev/rules.d/60-qwiic-i2c.rules" \
    'SUBSYSTEM=="i2c-dev", GROUP="i2c", MODE="0660"'
  if [ "$changes" -gt "$before" ]; then
    change udevadm control --reload-rules
    change udevadm trigger --subsystem-match=i2c-dev
  else
    say "ok: /dev/i2c-* belong to group i2c (udev rule)"
  fi
  local user=${SUDO_USER:-}
  if [ -z "$user" ] || [ "$user" = root ]; then
    say "note: run with sudo from your own account to be added to the docker and i2c groups"
    return
  fi
  local group
  for group in docker i2c; do
    if id -nG "$user" 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then
      say "ok: $user is in group $group"
    elif getent group "$group" >/dev/null || [ "$dry_run" = 1 ]; then
      change usermod -aG "$group" "$user"
      relogin_needed=1
    fi
  done
}

find_button() {
  local device=$ROOT/dev/i2c-$bus
  if [ ! -e "$device" ]; then
    if [ "$dry_run" = 1 ] || [ "${reboot_needed:-0}" = 1 ]; then
      say "note: /dev/i2c-$bus appears after I2C is enabled (reboot if asked), then run this again"
      return 1
    fi
    local others
    others=$(cd "$ROOT/dev" 2>/dev/null && printf '%s ' i2c-* | sed 's/i2c-\*//')
    fail "no I2C bus /dev/i2c-$bus" \
      "I2C is not enabled or the button is on another bus${others:+ (found: $others)}" \
      "Raspberry Pi: reboot after this script enabled I2C; then run it again" \
      "another bus: ./init_os.sh --bus N (list them with: ls /dev/i2c-*)"
  fi
  command -v i2cget >/dev/null || apt_install i2c-tools
  local id
  id=$(i2cget -y "$bus" "$BUTTON_ADDRESS" 0x00 2>/dev/null || true)
  if [ "${id,,}" != "$BUTTON_ID" ]; then
    fail "no Qwiic Button at $BUTTON_ADDRESS on /dev/i2c-$bus (ID register read '${id:-nothing}', expected $BUTTON_ID)" \
      "check the Qwiic cable: SDA to pin 3, SCL to pin 5, 3.3V to pin 1, GND to pin 6" \
      "see what answers: sudo i2cdetect -y $bus (the button is 6f unless its address was changed)" \
      "another bus: ./init_os.sh --bus N"
  fi
  say "ok: Qwiic Button found at $BUTTON_ADDRESS on /dev/i2c-$bus"
}

write_env() {
  local gid
  gid=$(group_gid i2c || true)
  if [ -z "$gid" ]; then
    say "would: write .env once group i2c exists"
    changes=$((changes + 1))
    return
  fi
  write_file "$ENV_FILE" "# Written by init_os.sh: compose device mode (the real button on /dev/i2c-$bus).
COMPOSE_FILE=docker-compose.yml:docker-compose.device.yml
I2C_DEVICE=/dev/i2c-$bus
I2C_GID=$gid"
}

main() {
  parse_args "$@"
  [ "$(id -u)" = 0 ] || fail "this script changes the system: run it with sudo" "sudo ./init_os.sh $*"
  local platform codename reboot_needed=0 relogin_needed=0
  detect_platform
  install_docker
  enable_i2c
  set_up_groups
  if find_button; then
    write_env
  fi
  say ""
  if [ "$changes" = 0 ]; then
    say "Nothing to change: this device is ready. Start it with: docker compose up -d"
  elif [ "$dry_run" = 1 ]; then
    say "Dry run: $changes change(s) would be made; nothing was changed."
  else
    say "Done: $changes change(s)."
    [ "$reboot_needed" = 0 ] || say "Reboot to enable I2C (sudo reboot), then run ./init_os.sh again."
    [ "$relogin_needed" = 0 ] || say "Log out and in again (or: newgrp docker) for the new groups."
    [ "$reboot_needed" = 1 ] || say "Start it with: docker compose up -d"
  fi
}

main "$@"
