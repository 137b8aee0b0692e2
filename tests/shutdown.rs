//! Graceful shutdown with open streams: health NOT_SERVING first, Drain then
//! UNAVAILABLE on Beat, every watch ended, and the whole thing bounded.

mod common;

use common::*;
use heartbeat::pb::heartbeat::v1::{BeatResponse, beat_response};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn shutdown_drains_beats_and_ends_watches() {
    let mut server = TestServer::start().await;
    let mut client = server.client().await;
    let mut health = HealthClient::new(server.channel().await);
    let (mut beat, _) = Beat::join(&mut client, "web", "a").await;
    beat.ping(1).await;
    let mut events = Events::open(&mut client, "", 0).await;
    events.snapshot().await;
    let mut whole = within(
        "Watch",
        health.watch(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    let mut ready = within(
        "Watch",
        health.watch(HealthCheckRequest {
            service: "heartbeat.v1.Heartbeat".into(),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    let serving = ServingStatus::Serving as i32;
    let not_serving = ServingStatus::NotServing as i32;
    assert_eq!(
        within("", whole.message()).await.unwrap().unwrap().status,
        serving
    );
    assert_eq!(
        within("", ready.message()).await.unwrap().unwrap().status,
        serving
    );

    server.begin_shutdown();

    // Health goes NOT_SERVING before the watch ends.
    assert_eq!(
        within("", whole.message()).await.unwrap().unwrap().status,
        not_serving
    );
    assert_eq!(
        within("", ready.message()).await.unwrap().unwrap().status,
        not_serving
    );
    let end = within("", whole.message()).await;
    assert!(!matches!(end, Ok(Some(_))), "health watch ended: {end:?}");

    match beat.recv().await {
        Ok(Some(BeatResponse {
            kind: Some(beat_response::Kind::Drain(d)),
        })) => {
            assert!(!d.reason.is_empty());
            let after = d.reconnect_after.expect("reconnect_after set");
            assert!(
                after.seconds < 1 || (after.seconds == 1 && after.nanos == 0),
                "within --drain: {after:?}"
            );
        }
        other => panic!("expected Drain, got {other:?}"),
    }
    let msg = beat.expect_error(Code::Unavailable).await;
    assert!(msg.contains("shutting down"), "{msg}");
    let end = events.end().await;
    assert_eq!(end.map_err(|s| s.code()).err(), Some(Code::Unavailable));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_is_bounded_even_with_a_client_that_never_reads() {
    let mut server = TestServer::start().await;
    let mut client = server.client().await;
    // A Beat stream whose owner never reads again, and an idle connection.
    let (_stuck, _) = Beat::join(&mut client, "web", "stuck").await;
    let _idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    server.begin_shutdown();
    server.stop().await; // within WAIT, or the test fails
}
