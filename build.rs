//! Compiles `proto/` with protox (pure Rust, so no `protoc` is needed on the
//! machine) and generates the tonic services with tonic-prost-build: ours,
//! and the clients of etcd's API for cluster mode (etcd-client's build needs
//! `protoc`, which the default build must not).
//!
//! It also records the commit and build profile for `heartbeat --version`.
//!
//! `compile_fds` writes neither the descriptor set that reflection serves nor
//! rerun-if-changed lines, so both are done here.

use std::{env, fs, path::PathBuf};

/// etcd's v3 API, for cluster mode (see the files' headers).
const ETCD_PROTOS: &[&str] = &[
    "proto/etcd/mvccpb/kv.proto",
    "proto/etcd/etcdserverpb/rpc.proto",
];

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

    version_info();

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

    // etcd's API (the subset cluster mode uses): clients only, tonic's own
    // codec, and kept out of the descriptor set that reflection serves.
    for proto in ETCD_PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let etcd = protox::compile(ETCD_PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(etcd)?;
    Ok(())
}

/// `HEARTBEAT_COMMIT` (from git, or the variable of that name when building
/// without `.git`, as in the image) and `HEARTBEAT_PROFILE` for `--version`.
fn version_info() {
    println!("cargo:rerun-if-env-changed=HEARTBEAT_COMMIT");
    // Rebuild when HEAD moves: HEAD itself and the branch file it names.
    if let Ok(head) = fs::read_to_string(".git/HEAD") {
        println!("cargo:rerun-if-changed=.git/HEAD");
        if let Some(branch) = head.trim().strip_prefix("ref: ") {
            let path = format!(".git/{branch}");
            if fs::metadata(&path).is_ok() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    let from_git = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let commit = from_git
        .or_else(|| env::var("HEARTBEAT_COMMIT").ok())
        .unwrap_or_else(|| "unknown".into());
    let profile = env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=HEARTBEAT_COMMIT={commit}");
    println!("cargo:rustc-env=HEARTBEAT_PROFILE={profile}");
}
