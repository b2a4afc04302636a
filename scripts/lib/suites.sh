# Sourced by scripts/test and scripts/flake-hunt: the test suites by name, each one function,
# so that the full run and the flake hunt run exactly the same commands.
#
# suite_<name> runs one suite from the repository's root and fails when a test fails. Suites
# that need containers expect the images of scripts/build-images (scripts/test builds them
# once, before the first such suite).
# shellcheck shell=bash

# The suites scripts/flake-hunt knows, in the order scripts/test runs them.
# shellcheck disable=SC2034 # for the scripts that source this file
SUITES=(workspace browser mqtt images quickstart provenance iotedge kubernetes dockerfile compose-v2 faults compose-v1 userland)

suite_workspace() {
  cargo test --workspace --all-targets --locked
  cargo test --workspace --doc --locked
}

suite_browser() {
  cargo test --locked -p simulator --features browser-tests --test browser
  cargo test --locked -p led-service --features browser-tests --test browser
}

suite_mqtt() {
  cargo test --locked -p led-service --features mqtt-tests --test mqtt
  cargo test --locked -p system-tests --features mqtt-tests --test mqtt
}

suite_images() {
  cargo test --locked -p system-tests --features docker --test images
}

suite_quickstart() {
  cargo test --locked -p system-tests --features docker --test quickstart -- --nocapture --test-threads=1
}

suite_provenance() {
  cargo test --locked -p system-tests --features docker --test provenance
}

suite_iotedge() {
  cargo test --locked -p system-tests --features docker --test iotedge
}

suite_kubernetes() {
  cargo test --locked -p system-tests --features docker --test kubernetes
}

suite_dockerfile() {
  cargo test --locked -p system-tests --features docker --test dockerfile
}

suite_compose-v2() {
  COMPOSE=v2 cargo test --locked -p system-tests --features docker --test compose -- --test-threads=1
}

suite_faults() {
  COMPOSE=v2 cargo test --locked -p system-tests --features docker --test faults -- --test-threads=1
}

suite_compose-v1() {
  COMPOSE=v1 cargo test --locked -p system-tests --features docker --test compose -- --test-threads=1 \
    up_press_release_hardening_and_down with_the_token_overlay
}

suite_userland() {
  cargo test --locked -p system-tests --features docker --test init_os_userland
}
