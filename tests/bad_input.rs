//! The bad-input catalogue of the server-core issue that is not covered by
//! the Join/Ping files: oversize messages, garbage bytes on the port, a client
//! that vanishes mid-stream, and thousands of streams joining and leaving at
//! once. Each time the server and every other member carry on.

mod common;

use std::collections::HashMap;

use common::*;
use heartbeat::pb::heartbeat::v1::{EventType, Join, MemberState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

#[tokio::test]
async fn oversize_message_is_refused_and_others_carry_on() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (mut bystander, _) = Beat::join(&mut client, "web", "ok").await;
    let mut beat = Beat::open(&mut client).await;
    let labels: HashMap<String, String> = (0..300)
        .map(|i| (format!("k{i}"), "v".repeat(250)))
        .collect();
    beat.send(join_with(Join {
        service: "web".into(),
        instance: "huge".into(),
        labels,
        ..Default::default()
    }))
    .await;
    let status = beat.recv().await.expect_err("refused");
    assert!(
        matches!(status.code(), Code::ResourceExhausted | Code::OutOfRange),
        "{status:?}"
    );
    assert!(status.message().contains("message"), "{status:?}");
    bystander.ping(1).await;
    assert_eq!(members(&mut client).await.len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn garbage_bytes_on_the_port_do_not_disturb_the_server() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (mut member, _) = Beat::join(&mut client, "web", "a").await;
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0u8; 4096][..],
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff"[..],
    ] {
        let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        raw.write_all(garbage).await.unwrap();
        // The server closes the connection (read returns 0 or an error).
        let mut buf = vec![0u8; 1024];
        within("server to close the garbage connection", async {
            loop {
                match raw.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        })
        .await;
    }
    member.ping(1).await;
    let mut health = server.health().await;
    assert_eq!(check(&mut health, "").await, Ok(1));
    server.stop().await;
}

#[tokio::test]
async fn a_vanishing_client_only_loses_its_own_member() {
    let server = TestServer::with(fast()).await;
    let mut client = server.client().await;
    let mut events = Events::open(&mut client, "", 0).await;
    events.snapshot().await;
    // The vanishing client has its own connection, dropped mid-stream.
    let mut other = server.client().await;
    let (mut gone, _) = Beat::join(&mut other, "web", "gone").await;
    gone.ping(1).await;
    let (mut stays, _) = Beat::join(&mut client, "web", "stays").await;
    drop(gone);
    drop(other);
    // Keep the other member pinging while the vanished one dies.
    let pinger = tokio::spawn(async move {
        let mut seq = 0;
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(50));
        loop {
            tick.tick().await;
            seq += 1;
            stays.ping(seq).await;
            if seq == 1_000 {
                return stays;
            }
        }
    });
    let seen = events.until(EventType::Dead, "gone").await;
    assert!(
        seen.iter()
            .all(|e| e.member.as_ref().unwrap().instance == "gone"
                || e.member.as_ref().unwrap().state == MemberState::Alive as i32),
        "the pinging member never left ALIVE: {seen:?}"
    );
    pinger.abort();
    server.stop().await;
}

#[tokio::test]
async fn thousands_of_streams_join_and_leave_at_once() {
    let server = TestServer::start().await;
    let mut tasks = vec![];
    for c in 0..8 {
        let mut client = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut joined = vec![];
            for i in 0..250 {
                let mut beat = Beat::open(&mut client).await;
                beat.send(join_req("fleet", &format!("c{c}-{i}"))).await;
                joined.push(beat);
            }
            for beat in &mut joined {
                beat.welcome().await;
                beat.ping(1).await;
            }
            for beat in &mut joined {
                beat.send(leave_req()).await;
            }
            for beat in &mut joined {
                beat.expect_ok_end().await;
            }
        }));
    }
    for t in tasks {
        within("2000 members to join and leave", t).await.unwrap();
    }
    let mut client = server.client().await;
    let listed = members(&mut client).await;
    assert_eq!(listed.len(), 2_000);
    assert!(listed.iter().all(|m| m.state == MemberState::Left as i32));
    let mut health = server.health().await;
    assert_eq!(check(&mut health, "fleet").await, Ok(2), "NOT_SERVING");
    assert_eq!(check(&mut health, "").await, Ok(1));
    server.stop().await;
}

#[tokio::test]
async fn bytes_that_do_not_decode_are_invalid_argument_on_every_rpc() {
    let (server, registry) = TestServer::with_metrics(quick_drain()).await;
    let mut conn = raw_h2(server.addr).await;
    // Field 1, length-delimited, says 5 bytes and carries 1: no message decodes it.
    let garbage = [0x0a, 0x05, 0x01];
    for path in [
        "/heartbeat.v1.Heartbeat/Beat",
        "/heartbeat.v1.Heartbeat/ListMembers",
        "/heartbeat.v1.Heartbeat/WatchMembers",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.health.v1.Health/List",
    ] {
        let (code, message) = conn.grpc_call(path, &garbage).await;
        assert_eq!(
            code, "3",
            "{path}: INVALID_ARGUMENT, got {code} {message:?}"
        );
        assert!(message.contains("do not decode"), "{path}: {message}");
    }
    assert_eq!(
        metric(
            &registry,
            "heartbeat_rejections_total{reason=\"undecodable\"}"
        ),
        1.0,
        "the Beat stream's rejection is counted"
    );
    // Nothing else changed: the server serves.
    let mut health = server.health().await;
    assert_eq!(check(&mut health, "").await, Ok(1));
    server.stop().await;
}
