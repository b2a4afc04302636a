# Sourced by scripts/build-static, scripts/test-cross and scripts/build-images: builds static
# musl executables for one architecture from this machine, without emulation.
#
# Why musl: glibc 2.34 and later create threads with clone3, which the default seccomp profile
# of Docker before 20.10.10 and containerd before 1.4.11/1.5.7 refuses with EPERM (JetPack 4.6
# ships Docker 20.10.7): a glibc binary then cannot start a thread. musl creates threads with
# clone. The allocator is mimalloc (set in each main.rs): musl's own halves the request rate.
#
# The target's standard library comes from rustup when it has it (`rustup target add`), and is
# otherwise built from source (`-Z build-std`, with rustup's rust-src or Debian's rust-web-src):
# rustup has no prebuilt armv7-unknown-linux-musleabihf here, so armv7 always takes that path.
#
# cross_setup ARCH sets $target, $build_std (extra cargo arguments, maybe empty) and exports
# CC_<target> (mimalloc's C, against musl's headers), the linker, RUSTFLAGS, RUSTC when needed,
# and CARGO_TARGET_DIR.
# shellcheck shell=bash

# This machine's architecture as the images name it: amd64, arm64 or armv7.
host_arch() {
  case "$(uname -m)" in
    x86_64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    armv7l | armv8l) echo armv7 ;;
    *) echo unknown ;;
  esac
}

# cargo-auditable, which embeds each binary's dependency tree in it (a linker section that
# `cargo audit bin`, Trivy, Grype and Syft read): every build of the images uses it. Pinned, so
# that a new release cannot change the binaries by itself.
AUDITABLE_VERSION=0.7.7

# `cargo auditable`, from target/tools (scripts/test-deps) or PATH (--install-toolchain), or a
# message saying how to get it.
auditable_cargo() {
  local tools
  tools=$(pwd)/target/tools/bin
  if [ -x "$tools/cargo-auditable" ]; then
    PATH="$tools:$PATH" cargo auditable "$@"
  elif command -v cargo-auditable >/dev/null; then
    cargo auditable "$@"
  else
    echo "cargo-auditable is missing: scripts/test-deps installs it in target/tools, or: cargo install --locked cargo-auditable --version $AUDITABLE_VERSION" >&2
    return 1
  fi
}

# The architectures the images exist for.
# shellcheck disable=SC2034 # for the scripts that source this file
ALL_ARCHES=(amd64 arm64 armv7)

# The platform Docker names one of ALL_ARCHES by: linux/amd64, linux/arm64, linux/arm/v7.
platform_of() {
  case "$1" in armv7) echo linux/arm/v7 ;; *) echo "linux/$1" ;; esac
}

# True for a registry on this machine (127.x.x.x, localhost), which Docker speaks plain HTTP to:
# `docker manifest` then needs --insecure.
local_registry() {
  case "$1" in 127.* | localhost | localhost:* | localhost/*) return 0 ;; *) return 1 ;; esac
}

# One of ALL_ARCHES from what a user or Docker says: amd64, arm64, armv7, Debian's armhf, or
# BuildKit's TARGETARCH and TARGETVARIANT run together (arm64, armv7); empty means this machine.
normalize_arch() {
  case "$1" in
    "") host_arch ;;
    amd64 | x86_64) echo amd64 ;;
    arm64 | arm64v8 | aarch64) echo arm64 ;;
    armv7 | armhf | arm) echo armv7 ;;
    *) echo "unknown architecture '$1': use amd64, arm64 or armv7" >&2; return 2 ;;
  esac
}

# Installs (with apt, as root) what cross_setup needs for ARCH, and cargo-auditable (from
# crates.io): the Dockerfiles' build stage and the release use this on rust:*-bookworm.
cross_install_toolchain() {
  local arch=$1 debarch gcc_package
  case "$arch" in
    amd64) debarch=amd64 gcc_package=gcc-x86-64-linux-gnu ;;
    arm64) debarch=arm64 gcc_package=gcc-aarch64-linux-gnu ;;
    armv7) debarch=armhf gcc_package=gcc-arm-linux-gnueabihf ;;
  esac
  local packages=("musl-dev:$debarch")
  if [ "$arch" = "$(host_arch)" ]; then
    packages+=(gcc)
  else
    packages+=("$gcc_package")
    dpkg --add-architecture "$debarch"
  fi
  # An index of a foreign architecture may fail to download (bookworm's armhf security
  # suite): what matters is whether the packages install.
  apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
  command -v cargo-auditable >/dev/null ||
    cargo install --quiet --locked cargo-auditable --version "$AUDITABLE_VERSION"
}

cross_setup() {
  local arch gcc triple debarch
  arch=$(normalize_arch "$1") || return 2
  case "$arch" in
    amd64) target=x86_64-unknown-linux-musl gcc=x86_64-linux-gnu-gcc triple=x86_64-linux-musl debarch=amd64 ;;
    arm64) target=aarch64-unknown-linux-musl gcc=aarch64-linux-gnu-gcc triple=aarch64-linux-musl debarch=arm64 ;;
    armv7) target=armv7-unknown-linux-musleabihf gcc=arm-linux-gnueabihf-gcc triple=arm-linux-musleabihf debarch=armhf ;;
    *) echo "unknown architecture '$arch': use amd64, arm64 or armv7" >&2; return 2 ;;
  esac
  [ "$arch" != "$(host_arch)" ] || command -v "$gcc" >/dev/null || gcc=cc
  local specs=/usr/lib/$triple/musl-gcc.specs
  local needed="gcc-${gcc%-gcc} musl-dev:$debarch"
  [ "$arch" != "$(host_arch)" ] || needed="gcc musl-dev"
  if ! command -v "$gcc" >/dev/null || [ ! -f "$specs" ]; then
    echo "the C toolchain for $arch musl is missing: dpkg --add-architecture $debarch && apt-get update && apt-get install $needed" >&2
    return 1
  fi
  local upper
  upper=$(echo "$target" | tr 'a-z-' 'A-Z_')
  # mimalloc's C, compiled against musl's headers.
  export "CC_${target//-/_}=$gcc -specs $specs"
  export "CARGO_TARGET_${upper}_LINKER=$gcc"
  export RUSTFLAGS="-C target-feature=+crt-static"
  # The same binary from any folder: the paths compiled in (panic locations, in this crate and
  # in its dependencies) name /src and /cargo, not this clone and this user's CARGO_HOME. cc
  # passes these on to mimalloc's C as -ffile-prefix-map; cargo leaves them out of -C metadata.
  RUSTFLAGS+=" --remap-path-prefix=$(pwd)=/src --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
  remap_std_sources "$(rustc --print sysroot)"
  # mimalloc's C records its build time (__DATE__, __TIME__): gcc takes the commit's instead.
  SOURCE_DATE_EPOCH=$(source_date_epoch) || return 2
  export SOURCE_DATE_EPOCH
  # A separate target directory keeps these flags from invalidating the normal builds.
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/static}
  # shellcheck disable=SC2034 # for the scripts that source this file
  build_std=()

  if [ "${QWIIC_BUILD_STD:-0}" != 1 ] && prebuilt_std "$target"; then
    return 0 # rustup's standard library brings musl's start files and libc.a
  fi

  # Build the standard library from source, linked against the distribution's musl.
  local sysroot
  sysroot=$(std_source_sysroot) || return 1
  export RUSTC_BOOTSTRAP=1 # -Z build-std on a stable toolchain
  # shellcheck disable=SC2034 # for the scripts that source this file
  build_std=(-Z "build-std=std,panic_abort")
  local unwind
  unwind=$(libunwind_dir "$arch" "$debarch" "$gcc") || return 1
  RUSTFLAGS+=" -C link-self-contained=no -C link-arg=-specs=$specs -C link-arg=-static"
  # libgcc: the compiler builtins gcc emits for mimalloc (__popcountsi2 on armv7).
  RUSTFLAGS+=" -C relocation-model=static -L $unwind -C link-arg=-lgcc"
  [ "$sysroot" = "$(rustc --print sysroot)" ] || { remap_std_sources "$sysroot"; export RUSTC=$sysroot/bin/rustc; }
}

# Appends to RUSTFLAGS the remapping of the standard library's sources under SYSROOT to
# /rustc/<the compiler's commit>, the paths rustup's prebuilt standard library records: where
# the sources are installed (rust-src, and always for -Z build-std) rustc would compile in the
# local path, which names this user's toolchain folder.
remap_std_sources() {
  local sysroot=$1 commit
  commit=$("$sysroot/bin/rustc" -vV | sed -n 's/^commit-hash: //p')
  RUSTFLAGS+=" --remap-path-prefix=$sysroot/lib/rustlib/src/rust=/rustc/${commit:-unknown}"
}

# The time every build of this commit records (seconds since 1970): SOURCE_DATE_EPOCH when set,
# else the commit's, else 0 (no git). safe.directory: a clone mounted into a container belongs
# to another user there, and git would refuse to read it.
source_date_epoch() {
  local epoch=${SOURCE_DATE_EPOCH:-}
  [ -n "$epoch" ] || epoch=$(git -c safe.directory='*' log -1 --format=%ct 2>/dev/null) || epoch=0
  case "$epoch" in
    '' | *[!0-9]*) echo "SOURCE_DATE_EPOCH must be seconds since 1970, not '$epoch'" >&2; return 2 ;;
  esac
  echo "$epoch"
}

# True when rustup has (or can add) the target's prebuilt standard library.
prebuilt_std() {
  local target=$1
  [ -d "$(rustc --print sysroot)/lib/rustlib/$target/lib" ] && return 0
  command -v rustup >/dev/null && rustup target add "$target" >/dev/null 2>&1
}

# The sysroot of a rustc whose standard library sources are installed: rustup's (with the
# rust-src component) or Debian's rustc-web (with rust-web-src).
std_source_sysroot() {
  local sysroot
  sysroot=$(rustc --print sysroot)
  if [ -d "$sysroot/lib/rustlib/src/rust/library" ] ||
    { command -v rustup >/dev/null && rustup component add rust-src >/dev/null 2>&1; }; then
    echo "$sysroot"
  elif [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library ]; then
    echo /usr
  else
    echo "no prebuilt Rust standard library for $target and no sources to build one:" >&2
    echo "rustup component add rust-src, or apt-get install rustc-web rust-web-src" >&2
    return 1
  fi
}

# A folder holding a libunwind.a for the target (the standard library's unwinder on musl):
# gcc's own unwinder (libgcc_eh) where it needs nothing but what musl has (armv7), else LLVM's
# libunwind from Debian (gcc 12's asks glibc for _dl_find_object on amd64 and arm64). Debian's
# build of LLVM's is fortified against glibc, so tests (which unwind) only link with gcc's; the
# release binaries abort on panic and link with either. The foreign-architecture package
# conflicts with the native one, so it is unpacked, not installed.
libunwind_dir() {
  local arch=$1 debarch=$2 gcc=$3 dir eh
  dir=$(pwd)/target/cross/$arch
  eh=$("$gcc" -print-file-name=libgcc_eh.a)
  if [ -f "$eh" ] && ! nm "$eh" 2>/dev/null | grep -q ' U _dl_find_object'; then
    mkdir -p "$dir/gcc"
    ln -sf "$eh" "$dir/gcc/libunwind.a"
    echo "$dir/gcc"
    return
  fi
  if [ "$arch" = "$(host_arch)" ] && [ -f /usr/lib/llvm-14/lib/libunwind.a ]; then
    echo /usr/lib/llvm-14/lib
    return
  fi
  if [ ! -f "$dir/usr/lib/llvm-14/lib/libunwind.a" ]; then
    mkdir -p "$dir"
    (cd "$dir" && apt-get download "libunwind-14-dev:$debarch" >/dev/null 2>&1 &&
      dpkg -x libunwind-14-dev_*.deb .) || {
      echo "cannot fetch libunwind-14-dev:$debarch: dpkg --add-architecture $debarch && apt-get update" >&2
      return 1
    }
  fi
  echo "$dir/usr/lib/llvm-14/lib"
}
