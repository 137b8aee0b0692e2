//! Beat rule 3: a Pong per Ping with seq and sent_at echoed; seq strictly
//! increasing; the ping-rate limit; statuses.

mod common;

use common::*;
use heartbeat::pb::health::v1::health_check_response::ServingStatus;
use heartbeat::pb::heartbeat::v1::{BeatRequest, MemberStatus, Ping, beat_request};
use tonic::Code;

#[tokio::test]
async fn pong_echoes_seq_and_sent_at() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (mut beat, _) = Beat::join(&mut client, "web", "a").await;
    let sent_at = prost_types::Timestamp {
        seconds: 1_234,
        nanos: 5_678,
    };
    beat.send(BeatRequest {
        kind: Some(beat_request::Kind::Ping(Ping {
            seq: 0,
            status: 0,
            sent_at: Some(sent_at),
        })),
    })
    .await;
    let pong = beat.pong().await;
    assert_eq!(pong.seq, 0, "seq 0 is a valid first value");
    assert_eq!(pong.sent_at, Some(sent_at));
    assert!(pong.server_time.is_some());
    assert_eq!(pong.interval, None, "interval unchanged");
    let pong = beat.ping(7).await;
    assert_eq!(pong.sent_at, None);
    beat.ping(1_000).await;
    server.stop().await;
}

#[tokio::test]
async fn non_increasing_seq_ends_the_stream() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    for (first, second) in [(5, 5), (5, 4)] {
        let (mut beat, _) = Beat::join(&mut client, "web", "a").await;
        beat.ping(first).await;
        beat.send(ping_req(second)).await;
        let msg = beat.expect_error(Code::InvalidArgument).await;
        assert!(msg.contains("ping.seq"), "{msg}");
    }
    server.stop().await;
}

#[tokio::test]
async fn ping_flood_ends_only_the_flooding_stream() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (mut calm, _) = Beat::join(&mut client, "web", "calm").await;
    let (mut flood, _) = Beat::join(&mut client, "web", "flood").await;
    for seq in 1..=51 {
        flood.send(ping_req(seq)).await;
    }
    for seq in 1..=50 {
        assert_eq!(flood.pong().await.seq, seq);
    }
    let msg = flood.expect_error(Code::ResourceExhausted).await;
    assert!(msg.contains("flood"), "{msg}");
    calm.ping(1).await;
    server.stop().await;
}

#[tokio::test]
async fn status_reports_drive_instance_and_service_health() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut health = server.health().await;
    let (mut a, _) = Beat::join(&mut client, "web", "a").await;
    let (mut b, _) = Beat::join(&mut client, "web", "b").await;
    let serving = ServingStatus::Serving as i32;
    let not_serving = ServingStatus::NotServing as i32;
    assert_eq!(check(&mut health, "web").await, Ok(serving));

    a.send(ping_status(1, MemberStatus::NotServing as i32))
        .await;
    a.pong().await;
    assert_eq!(check(&mut health, "web/a").await, Ok(not_serving));
    assert_eq!(
        check(&mut health, "web").await,
        Ok(serving),
        "b still serves"
    );

    b.send(ping_status(1, MemberStatus::NotServing as i32))
        .await;
    b.pong().await;
    assert_eq!(check(&mut health, "web").await, Ok(not_serving));

    b.send(ping_status(2, MemberStatus::Unspecified as i32))
        .await;
    b.pong().await;
    assert_eq!(
        check(&mut health, "web/b").await,
        Ok(serving),
        "unset means SERVING"
    );
    assert_eq!(check(&mut health, "web").await, Ok(serving));

    b.send(ping_status(3, 9)).await;
    let msg = b.expect_error(Code::InvalidArgument).await;
    assert!(msg.contains("ping.status"), "{msg}");
    server.stop().await;
}
