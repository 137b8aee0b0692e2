//! Compiles `proto/` with protox (pure Rust, so no `protoc` is needed on the
//! machine) and generates the tonic services with tonic-prost-build.
//!
//! `compile_fds` writes neither the descriptor set that reflection serves nor
//! rerun-if-changed lines, so both are done here.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/heartbeat/v1/heartbeat.proto",
    "proto/grpc/health/v1/health.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=proto");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }

    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("heartbeat_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Small per-stream buffers (see src/codec.rs).
        .codec_path("crate::codec::SmallCodec")
        .compile_fds(fds)?;
    Ok(())
}
