//! The edge rules of SPEC §6, caused for real: idle connections never lock
//! new clients out (the server under a small descriptor limit), idle
//! connections close and busy ones never do, `grpc-timeout` bounds streams,
//! non-gRPC requests get 415, and the health, metrics and HTTP ports have the same
//! gate as the gRPC port.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::process::Proc;
use common::*;
use heartbeat::config::ServerConfig;
use heartbeat::pb::health::v1::{HealthCheckRequest, health_client::HealthClient};
use heartbeat::pb::heartbeat::v1::heartbeat_client::HeartbeatClient;
use heartbeat::server::Server;
use tokio::sync::oneshot;
use tonic::Code;

/// Runs `heartbeat check` against `addr`; fails unless it exits 0.
async fn check_exit(addr: &str) -> i32 {
    let mut p = Proc::spawn(&["check", "--server", addr, "--connect-timeout", "5s"]);
    let line = p.next_out().await;
    let code = p.wait_exit(WAIT).await.code().expect("exit code");
    assert_eq!(code, 0, "check: {line}");
    code
}

#[tokio::test]
async fn six_hundred_idle_connections_do_not_lock_out_a_server_limited_to_512_descriptors() {
    // The test process itself holds the 600 connections.
    rlimit::increase_nofile_limit(4096).expect("raise this test's descriptor limit");
    let mut server = Proc::spawn_under(
        &["prlimit", "--nofile=512"],
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--drain",
            "100ms",
        ],
        &[],
    );
    let addr = server.logged_addr("listening").await;
    let sock = addr.parse().unwrap();
    // Each newcomer past the limit evicts the longest-idle one; one that
    // arrives while many closes are still under way may be refused instead.
    let mut held = Vec::new();
    for _ in 0..600 {
        if let Ok(c) = try_raw_h2(sock, 65_535).await {
            held.push(c);
        }
    }
    assert!(held.len() >= 550, "most got in: {}", held.len());
    let open = held.iter().filter(|c| c.is_open()).count();
    assert!(
        open < 512,
        "the default limit fits 512 descriptors: {open} still open"
    );
    server
        .wait_log("an eviction warning", |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("connection limit reached"))
        })
        .await;
    for _ in 0..5 {
        assert_eq!(check_exit(&addr).await, 0);
    }
    // A member gets in too, and stays.
    let mut client = heartbeat_client(&addr).await;
    let (mut beat, _) = Beat::join(&mut client, "web", "a").await;
    for _ in 0..50 {
        if let Ok(c) = try_raw_h2(sock, 65_535).await {
            held.push(c);
        }
    }
    beat.ping(1).await;
    drop(held);
    server.signal("-TERM");
    assert!(server.wait_exit(WAIT).await.success());
}

/// A plain Heartbeat client to `addr`.
async fn heartbeat_client(addr: &str) -> HeartbeatClient<tonic::transport::Channel> {
    HeartbeatClient::new(connect_addr(addr).await)
}

#[tokio::test]
async fn a_connection_without_streams_is_closed_after_the_idle_timeout_and_a_member_never_is() {
    let (server, registry) = TestServer::with_metrics(ServerConfig {
        idle_timeout: Duration::from_secs(2),
        ..quick_drain()
    })
    .await;
    let mut client = server.client().await;
    let (mut beat, welcome) = Beat::join(&mut client, "web", "a").await;
    let pinger = tokio::spawn(async move {
        let mut seq = 0;
        loop {
            seq += 1;
            beat.ping(seq).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    // Two idle periods in a row, each proven by an idle connection closing.
    for round in 1..=2 {
        let idle = raw_h2(server.addr).await;
        within("the idle connection to be closed", idle.closed()).await;
        assert_eq!(
            metric(&registry, "heartbeat_connections_idle_closed_total"),
            f64::from(round)
        );
    }
    assert!(!pinger.is_finished(), "the member's pings all got pongs");
    pinger.abort();
    let members = common::members(&mut client).await;
    assert_eq!(members.len(), 1);
    assert_eq!(
        members[0].session, welcome.session,
        "same session throughout"
    );
    server.stop().await;
}

#[tokio::test]
async fn grpc_timeout_ends_a_beat_stream_with_deadline_exceeded() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.set_timeout(Duration::from_millis(700));
    tx.send(join_req("web", "a")).await.unwrap();
    let mut responses = within("Beat", client.beat(req)).await.unwrap().into_inner();
    let first = within("Welcome", responses.message()).await.unwrap();
    assert!(first.is_some());
    let pinger = tokio::spawn(async move {
        for seq in 1.. {
            if tx.send(ping_req(seq)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let status = within("the deadline", async {
        loop {
            match responses.message().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("ended OK before its deadline"),
                Err(s) => return s,
            }
        }
    })
    .await;
    pinger.abort();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("grpc-timeout"),
        "ended by the server: {status:?}"
    );
    // A stream that broke is not a death: the member is still listed ALIVE.
    let members = common::members(&mut client).await;
    assert_eq!(members[0].state, 1, "ALIVE");
    server.stop().await;
}

#[tokio::test]
async fn a_request_that_is_not_grpc_gets_415() {
    let server = TestServer::start().await;
    let mut conn = raw_h2(server.addr).await;
    let r = conn
        .post("/grpc.health.v1.Health/Check", "text/plain")
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = conn
        .post("/grpc.health.v1.Health/Check", "application/grpc+proto")
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "gRPC, with a gRPC status");
    server.stop().await;
}

#[tokio::test]
async fn silent_connections_on_the_health_metrics_and_http_ports_are_closed_and_cannot_lock_members_out()
 {
    let cfg = ServerConfig {
        join_timeout: Duration::from_millis(300),
        max_connections: 16,
        ..quick_drain()
    };
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = (
        grpc.local_addr().unwrap(),
        health.local_addr().unwrap(),
        http.local_addr().unwrap(),
        page.local_addr().unwrap(),
    );
    let mut registry = heartbeat::metrics::registry();
    let metrics = heartbeat::metrics::ServerMetrics::new(&mut registry);
    let registry = Arc::new(registry);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(
        Server::new(cfg)
            .metrics(metrics)
            .health_listener(health)
            .metrics_listener(http, registry.clone())
            .http_listener(page, registry.clone())
            .serve(grpc, async {
                let _ = rx.await;
            }),
    );
    // Silent connections on every extra port are closed at the deadline.
    for addr in [addrs.1, addrs.2, addrs.3] {
        let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        closed_by_server(silent).await;
    }
    // Twice the limit of them cannot keep a member out of the gRPC port.
    let mut silent = Vec::new();
    for i in 0..33 {
        let port = [addrs.1, addrs.2, addrs.3][i % 3];
        silent.push(tokio::net::TcpStream::connect(port).await.unwrap());
    }
    let channel = connect_addr(&addrs.0.to_string()).await;
    let (mut beat, _) = Beat::join(&mut HeartbeatClient::new(channel.clone()), "web", "a").await;
    beat.ping(1).await;
    let mut probe = HealthClient::new(channel);
    let serving = probe
        .check(HealthCheckRequest {
            service: "web".into(),
        })
        .await
        .unwrap();
    assert_eq!(serving.into_inner().status, 1);
    let _ = tx.send(());
    within("shutdown", task).await.unwrap().unwrap();
}
