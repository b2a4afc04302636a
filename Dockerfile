# The three images of qwiic-containers, one target each: led-service, button-service, simulator.
#
# Most people pull the published images (ghcr.io/qwiic-containers/qwiic-<target>, multi-arch).
# From source (pulls the Rust image; `docker compose build` does the same):
#   docker build --target led-service -t ghcr.io/qwiic-containers/qwiic-led-service .
#   docker buildx build --platform linux/arm64 --target led-service -t ghcr.io/qwiic-containers/qwiic-led-service:latest-arm64 .
# With BuildKit the build stage runs on the build machine's platform and cross-compiles (no
# emulation); the classic builder (docker-compose v1 on Docker 20.10) builds for the machine's
# own platform. From binaries compiled on this machine (no registry, air-gapped, CI):
# scripts/build-images, which builds the runtime stages below unchanged except that each copies
# its binary from dist/<arch>/.

# BuildKit sets BUILDPLATFORM; the classic builder does not, and "linux" alone means this
# machine's own platform.
ARG BUILDPLATFORM=linux

# ---- build: static musl binaries (see scripts/lib/cross.sh), the same script as CI ----
# The build stage's image (the release workflow builds in the same one); tests/tests/dockerfile.rs
# points it at an unreachable registry to prove every builder parses this file.
ARG RUST_IMAGE=rust:1.95-bookworm
FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS build
# Empty on the classic builder: this machine's architecture.
ARG TARGETARCH
ARG TARGETVARIANT
WORKDIR /src
COPY scripts/ scripts/
RUN scripts/build-static --install-toolchain "${TARGETARCH}${TARGETVARIANT}"
COPY . .
RUN scripts/build-static --out /out "${TARGETARCH}${TARGETVARIANT}"

# ---- runtime: what runs on the device; one static binary and nothing else ----
FROM scratch AS led-service
COPY --from=build /out/led-service /led-service
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="led-service" \
      org.opencontainers.image.description="HTTP API that drives the SparkFun Qwiic Button's LED over I2C" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.source="https://github.com/qwiic-containers/qwiic-containers"
# A fixed non-root user (distroless "nonroot"); no shell, no package manager.
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/led-service", "healthcheck"]
ENTRYPOINT ["/led-service"]

FROM scratch AS button-service
COPY --from=build /out/button-service /button-service
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="button-service" \
      org.opencontainers.image.description="Reads the SparkFun Qwiic Button over I2C and tells the LED service" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.source="https://github.com/qwiic-containers/qwiic-containers"
USER 65532:65532
EXPOSE 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/button-service", "healthcheck"]
ENTRYPOINT ["/button-service"]

FROM scratch AS simulator
COPY --from=build /out/simulator /simulator
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="simulator" \
      org.opencontainers.image.description="A simulated SparkFun Qwiic Button shared over TCP, with a page to press it" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.source="https://github.com/qwiic-containers/qwiic-containers"
USER 65532:65532
EXPOSE 7070 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/simulator", "healthcheck"]
ENTRYPOINT ["/simulator"]
