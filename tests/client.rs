//! The client library against a real server: join, status, leave, drop,
//! takeover.

mod common;

use std::time::Duration;

use common::*;
use heartbeat::client::{Client, ClientConfig, ClientState, LeaveError};
use heartbeat::liveness::Status;
use heartbeat::pb::heartbeat::v1::{EventType, MemberState};

#[tokio::test]
async fn joins_pings_and_reports_online_with_rtt() {
    let server = TestServer::with(fast()).await;
    let client = Client::spawn(
        ClientConfig::new([server.url()], "web", "a")
            .label("zone", "z1")
            .endpoint("10.0.0.7:8080"),
    )
    .unwrap();
    let mut rx = client.subscribe();
    let online = reach(&mut rx, ClientState::Online).await;
    assert_eq!(
        online.interval,
        Duration::from_millis(100),
        "adopted from Welcome"
    );
    assert_eq!(online.timeout, Duration::from_millis(300));
    assert_eq!(online.server.as_deref(), Some(server.url().as_str()));
    within("an RTT", rx.wait_for(|s| s.rtt.is_some()))
        .await
        .unwrap();
    let mut hb = server.client().await;
    let listed = members(&mut hb).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].session, online.session.unwrap());
    assert_eq!(listed[0].labels["zone"], "z1");
    assert_eq!(
        listed[0].endpoint, "10.0.0.7:8080",
        "advertised in the Join"
    );
    let mut events = Events::open(&mut hb, "", 0).await;
    events.snapshot().await;
    client.leave().await.unwrap();
    let seen = events.until(EventType::Left, "a").await;
    let left = seen.last().unwrap().member.as_ref().unwrap();
    assert_eq!(
        (left.state, left.session),
        (MemberState::Left as i32, online.session.unwrap())
    );
    server.stop().await;
}

#[tokio::test]
async fn set_status_reaches_server_health_while_alive() {
    let server = TestServer::start().await;
    let client = Client::spawn(ClientConfig::new([server.url()], "web", "a")).unwrap();
    let mut rx = client.subscribe();
    reach(&mut rx, ClientState::Online).await;
    let mut events = Events::open(&mut server.client().await, "", 0).await;
    events.snapshot().await;
    client.set_status(Status::NotServing);
    let e = events.next().await;
    let m = e.member.unwrap();
    assert_eq!(
        (kind_of_raw(e.r#type), m.state, m.status),
        (EventType::Updated, MemberState::Alive as i32, 2)
    );
    let mut health = server.health().await;
    assert_eq!(check(&mut health, "web/a").await, Ok(2), "NOT_SERVING");
    assert_eq!(check(&mut health, "web").await, Ok(2));
    client.set_status(Status::Serving);
    events.next().await;
    assert_eq!(check(&mut health, "web/a").await, Ok(1));
    server.stop().await;
}

fn kind_of_raw(t: i32) -> EventType {
    EventType::try_from(t).unwrap()
}

#[tokio::test]
async fn dropping_the_handle_stops_pinging_and_the_deadline_decides() {
    let server = TestServer::with(fast()).await;
    let client = Client::spawn(ClientConfig::new([server.url()], "web", "a")).unwrap();
    reach(&mut client.subscribe(), ClientState::Online).await;
    let mut events = Events::open(&mut server.client().await, "", 0).await;
    events.snapshot().await;
    drop(client);
    let seen = events.until(EventType::Dead, "a").await;
    assert!(
        !seen.iter().any(|e| kind_of(e) == EventType::Left),
        "{seen:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn takeover_makes_the_older_client_report_superseded_and_stop() {
    let server = TestServer::start().await;
    let first = Client::spawn(ClientConfig::new([server.url()], "web", "a")).unwrap();
    let mut first_rx = first.subscribe();
    let s1 = reach(&mut first_rx, ClientState::Online)
        .await
        .session
        .unwrap();
    let second = Client::spawn(ClientConfig::new([server.url()], "web", "a")).unwrap();
    let s2 = reach(&mut second.subscribe(), ClientState::Online)
        .await
        .session
        .unwrap();
    assert!(s2 > s1);
    let stopped = reach(&mut first_rx, ClientState::Superseded).await;
    assert_eq!(stopped.superseded_by, Some(s2));
    assert_eq!(first.leave().await, Err(LeaveError::Stopped));
    let listed = members(&mut server.client().await).await;
    assert_eq!(listed[0].session, s2, "the older client did not fight back");
    second.leave().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn leave_while_not_connected_reports_it() {
    // Nothing listens on this port.
    let port = free_addr();
    let client =
        Client::spawn(ClientConfig::new([port.to_string()], "web", "a").max_retries(1)).unwrap();
    reach(&mut client.subscribe(), ClientState::Offline).await;
    assert_eq!(client.leave().await, Err(LeaveError::NotConnected));
}

#[tokio::test]
async fn invalid_configuration_is_refused_before_connecting() {
    let e = Client::spawn(ClientConfig::new(["127.0.0.1:1"], "web", "a b")).unwrap_err();
    assert!(e.to_string().contains("instance"), "{e}");
    let cfg = ClientConfig::new(["127.0.0.1:1"], "web", "a").endpoint("10.0.0.1");
    let e = Client::spawn(cfg).unwrap_err();
    assert!(e.to_string().contains("endpoint"), "{e}");
}
