# heartbeat: multi-stage build, small non-root runtime image.
#   docker build -t heartbeat:latest .
#   docker run --rm -p 50051:50051 heartbeat:latest serve
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# protox compiles the protos in build.rs: no protoc needed in the image.
RUN cargo build --release --locked --bin heartbeat

# distroless/cc: glibc and CA certificates, no shell, runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/heartbeat /usr/local/bin/heartbeat
USER 65532:65532
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/heartbeat"]
CMD ["serve", "--listen", "0.0.0.0:50051"]
