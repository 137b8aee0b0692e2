//! `heartbeat serve` as a process: logs its bound address (as JSON with
//! `--log-format json`), reads flags from HEARTBEAT_* variables, refuses bad
//! values naming the flag, and exits 0 after SIGTERM / SIGINT.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::*;

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_heartbeat"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn heartbeat")
}

/// Reads JSON log lines until the "listening" one; returns its address.
fn bound_addr(child: &mut Child) -> (String, BufReader<std::process::ChildStderr>) {
    let mut lines = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "server exited before listening"
        );
        let v: serde_json::Value = serde_json::from_str(&line).expect("every line is JSON");
        if v["message"] == "listening" {
            return (v["addr"].as_str().unwrap().to_owned(), lines);
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test]
async fn serve_logs_json_serves_and_exits_zero_on_sigterm() {
    for sig in ["-TERM", "-INT"] {
        let mut child = spawn(
            &["serve", "--log-format", "json"],
            &[("HEARTBEAT_LISTEN", "127.0.0.1:0")],
        );
        let (addr, mut rest) = bound_addr(&mut child);
        let channel = within(
            "connect",
            tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect(),
        )
        .await
        .unwrap();
        let mut health = heartbeat::pb::health::v1::health_client::HealthClient::new(channel);
        assert_eq!(check(&mut health, "").await, Ok(1));
        signal(&child, sig);
        let status = within(
            "the process to exit",
            tokio::task::spawn_blocking(move || child.wait()),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(status.code(), Some(0), "{sig}");
        let mut tail = String::new();
        std::io::Read::read_to_string(&mut rest, &mut tail).unwrap();
        for line in tail.lines() {
            serde_json::from_str::<serde_json::Value>(line)
                .unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
        }
        assert!(tail.contains("shut down"), "{tail}");
    }
}

#[test]
fn env_vars_set_flags_and_bad_values_name_the_flag() {
    let out = spawn(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("HEARTBEAT_DEFAULT_TIMEOUT", "1m")],
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--default-timeout"), "{err}");

    let out = spawn(&["serve", "--retention", "soon"], &[])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--retention"), "{err}");

    let out = spawn(
        &["serve", "--listen", "127.0.0.1:1", "--min-interval", "10ms"],
        &[],
    )
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--min-interval"));
}

#[test]
fn help_lists_every_serve_flag() {
    let out = spawn(&["serve", "--help"], &[]).wait_with_output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--default-interval",
        "--default-timeout",
        "--min-interval",
        "--max-interval",
        "--retention",
        "--join-timeout",
        "--drain",
        "--log-format",
        "HEARTBEAT_LISTEN",
    ] {
        assert!(help.contains(flag), "{flag} in help");
    }
}
