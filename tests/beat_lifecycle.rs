//! Beat rules 4-7 and the states of SPEC §3 over real streams: Leave,
//! takeover with fencing, DEAD ending the stream, a broken stream keeping the
//! member until its deadline, rejoin without flap, removal after retention.

mod common;

use std::time::Duration;

use common::*;
use heartbeat::config::ServerConfig;
use heartbeat::pb::health::v1::health_check_response::ServingStatus;
use heartbeat::pb::heartbeat::v1::{EventType, MemberState, MemberStatus};
use tonic::Code;

#[tokio::test]
async fn leave_ends_with_ok_and_marks_left() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut health = server.health().await;
    let (mut beat, _) = Beat::join(&mut client, "web", "a").await;
    beat.ping(1).await;
    beat.send(leave_req()).await;
    beat.expect_ok_end().await;
    let listed = members(&mut client).await;
    assert_eq!(listed[0].state, MemberState::Left as i32);
    let not_serving = ServingStatus::NotServing as i32;
    assert_eq!(check(&mut health, "web/a").await, Ok(not_serving));
    assert_eq!(check(&mut health, "web").await, Ok(not_serving));
    server.stop().await;
}

#[tokio::test]
async fn takeover_aborts_the_older_stream_and_fences_it() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let mut health = server.health().await;
    let (mut old, w1) = Beat::join(&mut client, "web", "a").await;
    let (mut new, w2) = Beat::join(&mut client, "web", "a").await;
    assert!(w2.session > w1.session);
    let status = old.expect_status(Code::Aborted).await;
    assert_eq!(
        status.message(),
        format!("superseded by session {}", w2.session)
    );
    // The newer session, in a structured form too (trailing metadata).
    assert_eq!(heartbeat::pb::superseded_by(&status), Some(w2.session));
    assert_eq!(
        status.metadata().get(heartbeat::pb::SUPERSEDED_BY).unwrap(),
        w2.session.to_string().as_str()
    );
    new.send(ping_status(1, MemberStatus::NotServing as i32))
        .await;
    new.pong().await;
    let listed = members(&mut client).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].session, w2.session);
    assert_eq!(listed[0].status, MemberStatus::NotServing as i32);
    assert_eq!(
        check(&mut health, "web/a").await,
        Ok(ServingStatus::NotServing as i32)
    );
    server.stop().await;
}

#[tokio::test]
async fn silent_member_goes_suspect_then_dead_and_its_stream_ends() {
    let server = TestServer::with(fast()).await;
    let mut client = server.client().await;
    let mut events = Events::open(&mut client, "", 0).await;
    events.snapshot().await;
    let (mut beat, w) = Beat::join(&mut client, "web", "a").await;
    beat.ping(1).await;
    let msg = beat.expect_error(Code::DeadlineExceeded).await;
    assert!(msg.contains("DEAD"), "{msg}");
    let seen = events.until(EventType::Dead, "a").await;
    assert_eq!(states(&seen), silent_life());
    assert!(
        seen.iter()
            .all(|e| e.member.as_ref().unwrap().session == w.session)
    );
    let mut health = server.health().await;
    assert_eq!(
        check(&mut health, "web/a").await,
        Ok(ServingStatus::NotServing as i32)
    );
    server.stop().await;
}

#[tokio::test]
async fn broken_stream_keeps_the_member_until_its_deadline() {
    let server = TestServer::with(fast()).await;
    let mut client = server.client().await;
    let mut events = Events::open(&mut client, "", 0).await;
    events.snapshot().await;
    let (mut beat, _) = Beat::join(&mut client, "web", "a").await;
    beat.ping(1).await;
    drop(beat); // vanish mid-stream, no Leave
    // Not LEFT, not DEAD at once: SUSPECT first, then DEAD on its deadline.
    let seen = events.until(EventType::Dead, "a").await;
    assert_eq!(states(&seen), silent_life());
    server.stop().await;
}

#[tokio::test]
async fn rejoin_within_the_timeout_does_not_flap() {
    let server = TestServer::with(ServerConfig {
        default_interval: Duration::from_millis(200),
        default_timeout: Duration::from_secs(4),
        ..quick_drain()
    })
    .await;
    let mut client = server.client().await;
    let mut events = Events::open(&mut client, "web", 0).await;
    events.snapshot().await;
    let mut health = server.health().await;
    let mut watch = within(
        "Health/Watch",
        health.watch(heartbeat::pb::health::v1::HealthCheckRequest {
            service: "web".into(),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::ServiceUnknown as i32
    );
    let (mut beat, w1) = Beat::join(&mut client, "web", "a").await;
    beat.ping(1).await;
    drop(beat);
    let (mut beat, w2) = Beat::join(&mut client, "web", "a").await;
    assert!(w2.session > w1.session);
    beat.ping(1).await;
    beat.send(leave_req()).await;
    beat.expect_ok_end().await;
    let seen = events.until(EventType::Left, "a").await;
    let kinds: Vec<EventType> = seen.iter().map(kind_of).collect();
    assert_eq!(
        kinds,
        vec![EventType::Joined, EventType::Joined, EventType::Left],
        "{seen:?}"
    );
    // Service health: unknown -> SERVING -> NOT_SERVING (at Leave), no flap.
    let mut statuses = vec![];
    while statuses.last() != Some(&(ServingStatus::NotServing as i32)) {
        statuses.push(
            within("health update", watch.message())
                .await
                .unwrap()
                .unwrap()
                .status,
        );
    }
    assert_eq!(
        statuses,
        vec![
            ServingStatus::Serving as i32,
            ServingStatus::NotServing as i32
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn dead_and_left_members_are_removed_after_retention() {
    let server = TestServer::with(ServerConfig {
        retention: Duration::from_millis(300),
        ..fast()
    })
    .await;
    let mut client = server.client().await;
    let mut health = server.health().await;
    let mut events = Events::open(&mut client, "", 0).await;
    events.snapshot().await;
    let (mut left, _) = Beat::join(&mut client, "web", "left").await;
    left.send(leave_req()).await;
    left.expect_ok_end().await;
    let (dead, _) = Beat::join(&mut client, "web", "dead").await;
    events.until(EventType::Removed, "left").await;
    events.until(EventType::Removed, "dead").await;
    drop(dead);
    assert!(members(&mut client).await.is_empty());
    assert_eq!(check(&mut health, "web/dead").await, Err(Code::NotFound));
    assert_eq!(
        check(&mut health, "web").await,
        Err(Code::NotFound),
        "service unknown again"
    );
    server.stop().await;
}
