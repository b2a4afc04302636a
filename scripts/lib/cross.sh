# Sourced by scripts/build-static and scripts/test-arm64: sets up cargo to build statically for
# one architecture from this machine. Sets $target; exports the linker, RUSTC when needed,
# RUSTFLAGS and CARGO_TARGET_DIR.
# shellcheck shell=bash

cross_setup() {
  local arch=$1 gcc host
  case "$arch" in
    amd64) target=x86_64-unknown-linux-gnu; gcc=x86_64-linux-gnu-gcc ;;
    arm64) target=aarch64-unknown-linux-gnu; gcc=aarch64-linux-gnu-gcc ;;
    *) echo "unknown architecture '$arch': use amd64 or arm64" >&2; return 2 ;;
  esac
  case "$(uname -m)" in x86_64) host=amd64 ;; aarch64|arm64) host=arm64 ;; *) host=unknown ;; esac
  # The C toolchain links the static executable: the native one, or the cross one.
  [ "$arch" != "$host" ] || gcc=cc
  command -v "$gcc" >/dev/null || {
    echo "$gcc is missing: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross (or the amd64 equivalents)" >&2
    return 1
  }
  export "CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_LINKER=$gcc"

  # The rustup toolchain if it has the target's standard library, else Debian's rustc-web.
  if ! [ -d "$(rustc --print sysroot)/lib/rustlib/$target/lib" ]; then
    if [ -x /usr/bin/rustc ] && [ -d "$(/usr/bin/rustc --print sysroot)/lib/rustlib/$target/lib" ]; then
      export RUSTC=/usr/bin/rustc
    else
      echo "no Rust standard library for $target: run 'rustup target add $target'," >&2
      echo "or apt-get install rustc-web libstd-rust-web-dev:arm64" >&2
      return 1
    fi
  fi

  # glibc, statically linked: runs FROM scratch, and under qemu-user without a loader.
  # A separate target directory keeps these flags from invalidating the normal builds.
  export RUSTFLAGS="-C target-feature=+crt-static"
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/static}
}
