# heartbeat: multi-stage build, small non-root runtime image.
#   docker build --build-arg HEARTBEAT_COMMIT=$(git rev-parse --short=12 HEAD) -t heartbeat:latest .
#   docker run --rm -p 50051:50051 heartbeat:latest
#
# Base images are pinned by digest, so a rebuild starts from the same bytes.
# To move to newer ones, resolve the tags and replace the digests:
#   docker buildx imagetools inspect rust:1.91-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
FROM rust:1.91-bookworm@sha256:c1e5f19e773b7878c3f7a805dd00a495e747acbdc76fb2337a4ebf0418896b33 AS build
WORKDIR /src

# Dependencies first, in their own layer: rebuilt only when the manifest, the
# lock file, build.rs or the protos change, not for every source edit.
# (protox compiles the protos in build.rs: no protoc needed in the image.)
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > benches/core.rs \
    && cargo build --release --locked --bin heartbeat \
    && rm -rf src benches target/release/.fingerprint/heartbeat-* \
              target/release/deps/heartbeat-* target/release/deps/libheartbeat-*

# The crate itself. .git is not in the build context: the commit for
# `heartbeat --version` comes from this argument.
COPY . .
ARG HEARTBEAT_COMMIT=unknown
ENV HEARTBEAT_COMMIT=${HEARTBEAT_COMMIT}
RUN cargo build --release --locked --bin heartbeat \
    && strip target/release/heartbeat

# distroless/cc: glibc and CA certificates, no shell, runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
COPY --from=build /src/target/release/heartbeat /usr/local/bin/heartbeat
USER 65532:65532
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/heartbeat"]
CMD ["serve", "--listen", "0.0.0.0:50051"]
