//! Hostile clients and load: member limit, join rate, connection limit,
//! slowloris (no HTTP/2 preface in time), rapid reset — each with a clear
//! outcome for the offender and none for everybody else.

mod common;

use std::time::Duration;

use common::*;
use heartbeat::config::ServerConfig;
use tokio::io::AsyncWriteExt;
use tonic::Code;

#[tokio::test]
async fn member_limit_refuses_new_identities_but_not_takeovers() {
    let (server, registry) = TestServer::with_metrics(ServerConfig {
        max_members: 3,
        ..quick_drain()
    })
    .await;
    let mut client = server.client().await;
    let mut beats = vec![];
    for i in 0..3 {
        beats.push(Beat::join(&mut client, "web", &format!("i{i}")).await.0);
    }
    let mut fourth = Beat::open(&mut client).await;
    fourth.send(join_req("web", "i3")).await;
    let msg = fourth.expect_error(Code::ResourceExhausted).await;
    assert!(msg.contains("member limit of 3"), "{msg}");
    let (mut again, _) = Beat::join(&mut client, "web", "i0").await; // takeover: same identity
    again.ping(1).await;
    assert_eq!(
        metric(
            &registry,
            "heartbeat_rejections_total{reason=\"member_limit\"}"
        ),
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn join_rate_limit_refuses_the_excess_and_clients_get_in_with_backoff() {
    let server = TestServer::with(ServerConfig {
        max_join_rate: 5,
        ..quick_drain()
    })
    .await;
    let mut client = server.client().await;
    let mut refused = 0;
    let mut beats = vec![];
    for i in 0..8 {
        let mut b = Beat::open(&mut client).await;
        b.send(join_req("web", &format!("i{i}"))).await;
        match b.recv().await {
            Ok(Some(_)) => beats.push(b),
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted);
                assert!(s.message().contains("join rate"), "{}", s.message());
                refused += 1;
            }
            Ok(None) => panic!("stream ended without a status"),
        }
    }
    assert!(
        refused >= 2,
        "a burst of 5, then refusals: {refused} refused"
    );
    // The client library backs off and gets in.
    let members: Vec<_> = (0..10)
        .map(|i| {
            heartbeat::client::Client::spawn(heartbeat::client::ClientConfig::new(
                [server.url()],
                "lib",
                format!("m{i}"),
            ))
            .unwrap()
        })
        .collect();
    for m in &members {
        within(
            "ONLINE despite the join rate",
            m.subscribe()
                .wait_for(|s| s.state == heartbeat::client::ClientState::Online),
        )
        .await
        .unwrap();
    }
    server.stop().await;
}

#[tokio::test]
async fn at_the_connection_limit_the_longest_idle_makes_room_and_busy_ones_are_kept() {
    let (server, registry) = TestServer::with_metrics(ServerConfig {
        max_connections: 2,
        ..quick_drain()
    })
    .await;
    let mut a = server.client().await;
    let (mut beat, _) = Beat::join(&mut a, "web", "a").await;
    // An idle connection (HTTP/2 up, no stream) ...
    let idle = raw_h2(server.addr).await;
    // ... is closed to admit a newcomer, which then opens a stream.
    let mut c = server.client().await;
    within("the idle connection to be closed", idle.closed()).await;
    assert_eq!(
        metric(&registry, "heartbeat_connections_evicted_total"),
        1.0
    );
    let watch = c
        .watch_members(heartbeat::pb::heartbeat::v1::WatchMembersRequest::default())
        .await
        .unwrap();
    // Both connections now have a stream: the next one is refused at accept.
    let extra = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    closed_by_server(extra).await;
    assert_eq!(
        metric(
            &registry,
            "heartbeat_connections_refused_total{reason=\"connection_limit\"}"
        ),
        1.0
    );
    assert_eq!(metric(&registry, "heartbeat_connections"), 2.0);
    beat.ping(1).await;
    drop(watch);
    server.stop().await;
}

#[tokio::test]
async fn slowloris_connections_are_closed_after_the_join_timeout() {
    let (server, registry) = TestServer::with_metrics(ServerConfig {
        join_timeout: Duration::from_millis(200),
        ..quick_drain()
    })
    .await;
    // Silent, half a preface, and a wrong one.
    let silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut wrong = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    wrong
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: 123\r\n\r\n")
        .await
        .unwrap();
    closed_by_server(silent).await;
    closed_by_server(half).await;
    closed_by_server(wrong).await;
    assert_eq!(
        metric(
            &registry,
            "heartbeat_connections_refused_total{reason=\"handshake_timeout\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(
            &registry,
            "heartbeat_connections_refused_total{reason=\"not_http2\"}"
        ),
        1.0
    );
    let mut client = server.client().await;
    let (mut ok, _) = Beat::join(&mut client, "web", "a").await;
    ok.ping(1).await;
    server.stop().await;
}

#[tokio::test]
async fn rapid_reset_gets_the_offending_connection_closed() {
    let server = TestServer::start().await;
    let mut good = server.client().await;
    let (mut member, _) = Beat::join(&mut good, "web", "good").await;

    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut h2, conn) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(conn);
    let mut sent = 0u32;
    let outcome = within("the attacker to be cut off", async {
        loop {
            let ready = match h2.ready().await {
                Ok(r) => r,
                Err(e) => return e,
            };
            h2 = ready;
            let req = http::Request::post(format!(
                "http://{}/heartbeat.v1.Heartbeat/Beat",
                server.addr
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
            match h2.send_request(req, false) {
                Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
                Err(e) => return e,
            }
            sent += 1;
            if sent.is_multiple_of(64) {
                tokio::task::yield_now().await;
            }
            assert!(sent < 1_000_000, "the server never pushed back");
        }
    })
    .await;
    let conn_result = within("the attacker's connection to end", driver)
        .await
        .unwrap();
    eprintln!("rapid reset: cut off after {sent} resets: {outcome:?} / {conn_result:?}");
    assert!(
        outcome.is_go_away() || conn_result.is_err() || outcome.is_io(),
        "cut off by the server: {outcome:?} / {conn_result:?}"
    );
    // Everybody else carries on.
    member.ping(1).await;
    let mut health = server.health().await;
    assert_eq!(check(&mut health, "").await, Ok(1));
    server.stop().await;
}
