//! `heartbeat check`: grpc_health_probe's exit codes, each caused for real,
//! including a port that accepts TCP but never speaks HTTP/2.

mod common;

use common::process::Proc;
use common::*;
use heartbeat::pb::heartbeat::v1::MemberStatus;

/// Runs `heartbeat check ARGS`; returns (exit code, stdout + stderr).
async fn check_cmd(args: &[&str]) -> (i32, String) {
    let mut full = vec!["check"];
    full.extend_from_slice(args);
    Proc::run(&full).await
}

#[tokio::test]
async fn exit_codes_zero_three_and_four() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let (code, out) = check_cmd(&["--server", &addr]).await;
    assert_eq!((code, out.trim()), (0, "status: SERVING"));
    let (code, out) = check_cmd(&["--server", &server.url(), "heartbeat.v1.Heartbeat"]).await;
    assert_eq!((code, out.lines().count()), (0, 1));

    let (code, out) = check_cmd(&["--server", &addr, "web"]).await;
    assert_eq!(code, 3, "NOT_FOUND is an RPC failure: {out}");
    assert!(out.contains("NotFound"), "{out}");

    let mut client = server.client().await;
    let (mut beat, _) = Beat::join(&mut client, "web", "a").await;
    beat.send(ping_status(1, MemberStatus::NotServing as i32))
        .await;
    beat.pong().await;
    let (code, out) = check_cmd(&["--server", &addr, "web/a"]).await;
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("NOT_SERVING"), "{out}");
    assert_eq!(out.lines().count(), 1);
    server.stop().await;
}

#[tokio::test]
async fn exit_code_one_for_bad_arguments() {
    let (code, _) = check_cmd(&["--bogus"]).await;
    assert_eq!(code, 1);
    let (code, out) = check_cmd(&["--server", "no-port"]).await;
    assert_eq!(code, 1, "{out}");
    let (code, _) = check_cmd(&["--connect-timeout", "soon"]).await;
    assert_eq!(code, 1);
    let (code, _) = check_cmd(&["--help"]).await;
    assert_eq!(code, 0);
}

#[tokio::test]
async fn exit_code_two_when_nothing_listens() {
    let free = free_addr();
    let (code, out) = check_cmd(&["--server", &free.to_string()]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("failed to connect"), "{out}");
}

#[tokio::test]
async fn exit_code_two_when_the_port_never_speaks_http2() {
    // Accepts TCP, reads, never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let silent = tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let (code, out) = check_cmd(&["--server", &addr, "--connect-timeout", "300ms"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("timeout"), "{out}");
    silent.abort();
}
