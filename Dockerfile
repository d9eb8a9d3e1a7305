# syntax=docker/dockerfile:1
# Amber in a container: a multi-stage build into a small distroless image.
#
# The build stage runs exactly the release command that .ci/run runs on every CI run
# (`cargo build --release --locked`), on the same Debian release (bookworm) and Rust
# toolchain (1.95) as CI, so what CI proves is what this image ships. No Docker engine
# runs in CI; see README "Container image".

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Manifests first: the dependency layer is cached until Cargo.lock changes.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY data ./data
RUN cargo build --release --locked \
 && install -D -m 0755 target/release/amber /out/amber \
 && mkdir -p /out/data

# Runtime: glibc, CA certificates and nothing else (no shell, no package manager),
# running as the image's unprivileged `nonroot` user (uid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/amber /usr/local/bin/amber
COPY --from=build --chown=65532:65532 /out/data /data
ENV HOST=0.0.0.0 \
    PORT=5000 \
    DATA_DIR=/data \
    LOG_FORMAT=json \
    SLED_CACHE_MB=64
VOLUME ["/data"]
EXPOSE 5000
USER 65532:65532
# `amber healthcheck` asks http://127.0.0.1:$PORT/api/health over a plain TCP socket:
# the image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["/usr/local/bin/amber", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/amber"]
CMD ["serve"]
