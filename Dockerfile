# syntax=docker/dockerfile:1
# Amber in a container: a multi-stage build into a small distroless image.
#
# The build stage runs exactly the release command that .ci/run runs on every CI run
# (`cargo build --release --locked`), on the same Debian release (bookworm) and Rust
# toolchain (1.95) as CI, so what CI proves is what this image ships. No Docker engine
# runs in CI; see README "Container image".

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own that stays cached until Cargo.toml or
# Cargo.lock change: the manifests with stub sources (an empty lib and bin, and a stub
# for each [[bench]] Cargo.toml declares), built with the same command; then the stubs'
# own artefacts are removed, so the real build below cannot mistake them for current.
COPY Cargo.toml Cargo.lock ./
# A patched dependency (Cargo.toml, [patch.crates-io]).
COPY vendor ./vendor
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && for bench in $(awk '/^\[\[bench\]\]/ { getline; gsub(/name = |"/, ""); print }' Cargo.toml); do \
      echo 'fn main() {}' > "benches/$bench.rs"; done \
 && cargo build --release --locked \
 && rm -rf src benches target/release/amber target/release/deps/amber-* \
      target/release/deps/libamber-* target/release/.fingerprint/amber-* \
      target/release/build/amber-*
# The sources. build.rs records GIT_COMMIT and BUILD_TIME for /api/health; the context
# has no .git (see .dockerignore), so pass them:
#   docker build --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t amber .
ARG GIT_COMMIT
ARG BUILD_TIME
COPY build.rs ./
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
