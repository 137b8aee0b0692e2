//! SPEC §4 over real TCP: Check, Watch and List of every health name, read
//! with tonic-health's generated client (an implementation independent of the
//! served one) and, for List, which tonic-health lacks, with ours.

mod common;

use std::time::Duration;

use common::*;
use heartbeat::config::ServerConfig;
use heartbeat::pb::health::v1::HealthListRequest;
use heartbeat::pb::heartbeat::v1::MemberStatus;
use tonic::{Code, Streaming};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const SERVING: i32 = ServingStatus::Serving as i32;
const NOT_SERVING: i32 = ServingStatus::NotServing as i32;
const UNKNOWN: i32 = ServingStatus::ServiceUnknown as i32;

async fn independent(server: &TestServer) -> HealthClient<tonic::transport::Channel> {
    HealthClient::new(server.channel().await)
}

async fn watch(
    client: &mut HealthClient<tonic::transport::Channel>,
    name: &str,
) -> Streaming<HealthCheckResponse> {
    within(
        "Watch",
        client.watch(HealthCheckRequest {
            service: name.into(),
        }),
    )
    .await
    .expect("Watch accepted")
    .into_inner()
}

async fn next(stream: &mut Streaming<HealthCheckResponse>) -> i32 {
    within("a Watch message", stream.message())
        .await
        .expect("Watch healthy")
        .expect("Watch open")
        .status
}

async fn check_status(
    client: &mut HealthClient<tonic::transport::Channel>,
    name: &str,
) -> Result<i32, Code> {
    within(
        "Check",
        client.check(HealthCheckRequest {
            service: name.into(),
        }),
    )
    .await
    .map(|r| r.into_inner().status)
    .map_err(|s| s.code())
}

#[tokio::test]
async fn check_of_fixed_member_and_unknown_names() {
    let server = TestServer::start().await;
    let mut health = independent(&server).await;
    assert_eq!(check_status(&mut health, "").await, Ok(SERVING));
    assert_eq!(
        check_status(&mut health, "heartbeat.v1.Heartbeat").await,
        Ok(SERVING)
    );
    assert_eq!(check_status(&mut health, "web").await, Err(Code::NotFound));
    let mut client = server.client().await;
    let (_beat, _) = Beat::join(&mut client, "web", "a").await;
    assert_eq!(check_status(&mut health, "web").await, Ok(SERVING));
    assert_eq!(check_status(&mut health, "web/a").await, Ok(SERVING));
    assert_eq!(
        check_status(&mut health, "web/b").await,
        Err(Code::NotFound)
    );
    assert_eq!(check_status(&mut health, "web/").await, Err(Code::NotFound));
    server.stop().await;
}

#[tokio::test]
async fn watch_of_an_unknown_name_stays_open_through_appear_and_remove() {
    let server = TestServer::with(ServerConfig {
        retention: Duration::from_millis(200),
        ..quick_drain()
    })
    .await;
    let mut health = independent(&server).await;
    let mut client = server.client().await;
    let mut svc = watch(&mut health, "web").await;
    let mut inst = watch(&mut health, "web/a").await;
    assert_eq!(next(&mut svc).await, UNKNOWN);
    assert_eq!(next(&mut inst).await, UNKNOWN);

    let (mut beat, _) = Beat::join(&mut client, "web", "a").await;
    assert_eq!(next(&mut svc).await, SERVING);
    assert_eq!(next(&mut inst).await, SERVING);
    beat.send(leave_req()).await;
    beat.expect_ok_end().await;
    assert_eq!(next(&mut svc).await, NOT_SERVING);
    assert_eq!(next(&mut inst).await, NOT_SERVING);
    // Removed after retention: unknown again, and the streams stay open.
    assert_eq!(next(&mut svc).await, UNKNOWN);
    assert_eq!(next(&mut inst).await, UNKNOWN);
    let (_beat, _) = Beat::join(&mut client, "web", "a").await;
    assert_eq!(next(&mut svc).await, SERVING);
    assert_eq!(next(&mut inst).await, SERVING);
    server.stop().await;
}

#[tokio::test]
async fn watch_sends_one_message_per_change_and_no_duplicates() {
    let server = TestServer::start().await;
    let mut health = independent(&server).await;
    let mut client = server.client().await;
    let (mut beat, _) = Beat::join(&mut client, "web", "a").await;
    let mut inst = watch(&mut health, "web/a").await;
    assert_eq!(next(&mut inst).await, SERVING);
    let statuses = [
        MemberStatus::Serving,
        MemberStatus::Unspecified,
        MemberStatus::NotServing,
        MemberStatus::NotServing,
        MemberStatus::Serving,
        MemberStatus::NotServing,
        MemberStatus::Serving,
        MemberStatus::Serving,
    ];
    for (seq, status) in statuses.into_iter().enumerate() {
        beat.send(ping_status(seq as u64, status as i32)).await;
        beat.pong().await;
    }
    beat.send(leave_req()).await;
    beat.expect_ok_end().await;
    // Exactly the transitions, then NOT_SERVING for the Leave.
    for want in [NOT_SERVING, SERVING, NOT_SERVING, SERVING, NOT_SERVING] {
        assert_eq!(next(&mut inst).await, want);
    }
    // And nothing else: the next thing after shutdown is the stream's end.
    server.stop().await;
    let rest = within("end of watch", inst.message()).await;
    assert!(!matches!(rest, Ok(Some(_))), "no further message: {rest:?}");
}

#[tokio::test]
async fn list_returns_exactly_the_existing_names_up_to_100() {
    let server = TestServer::start().await;
    let mut ours = server.health().await;
    let mut client = server.client().await;
    let list = |h: &mut heartbeat::pb::health::v1::health_client::HealthClient<
        tonic::transport::Channel,
    >| {
        let mut h = h.clone();
        async move { within("List", h.list(HealthListRequest {})).await }
    };
    let names = list(&mut ours).await.unwrap().into_inner().statuses;
    let mut keys: Vec<&String> = names.keys().collect();
    keys.sort();
    assert_eq!(keys, ["", "heartbeat.v1.Heartbeat"]);

    let mut beats = vec![];
    for i in 0..97 {
        beats.push(Beat::join(&mut client, "web", &format!("i{i:02}")).await.0);
    }
    let names = list(&mut ours).await.unwrap().into_inner().statuses;
    assert_eq!(names.len(), 100);
    assert_eq!(names["web"].status, SERVING);
    assert_eq!(names["web/i42"].status, SERVING);
    beats.push(Beat::join(&mut client, "web", "i97").await.0);
    let err = list(&mut ours).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(err.message().contains("101"), "{}", err.message());
    server.stop().await;
}
