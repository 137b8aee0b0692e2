//! `heartbeat beat` as a process: its health endpoint through the client
//! states, each local check kind flipping Ping.status both ways, and SIGTERM
//! leaving (LEFT, not DEAD) with exit 0 within 2 s.

mod common;

use std::time::Duration;

use common::process::Proc;
use common::*;
use heartbeat::pb::health::v1::health_check_response::ServingStatus;
use heartbeat::pb::health::v1::{HealthCheckRequest, health_client::HealthClient};
use heartbeat::pb::heartbeat::v1::{EventType, MemberState, MemberStatus};

const SERVING: i32 = ServingStatus::Serving as i32;
const NOT_SERVING: i32 = ServingStatus::NotServing as i32;

fn agent(server: &str, instance: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "beat",
        "--server",
        server,
        "--service",
        "app",
        "--instance",
        instance,
        "--log-format",
        "json",
    ];
    args.extend_from_slice(extra);
    Proc::spawn(&args)
}

/// Waits for the member's next UPDATED event and returns its status.
async fn next_status(events: &mut Events) -> i32 {
    loop {
        let e = events.next().await;
        if kind_of(&e) == EventType::Updated {
            return e.member.unwrap().status;
        }
    }
}

async fn next(watch: &mut tonic::Streaming<heartbeat::pb::health::v1::HealthCheckResponse>) -> i32 {
    within("health change", watch.message())
        .await
        .unwrap()
        .unwrap()
        .status
}

#[tokio::test]
async fn health_endpoint_follows_the_client_states() {
    let server = TestServer::with(fast()).await;
    let addr = server.addr;
    let mut a = agent(
        &server.url(),
        "a",
        &["--health-listen", "127.0.0.1:0", "--max-retries", "2"],
    );
    let health_addr = a.logged_addr("health endpoint listening").await;
    let channel = within(
        "connect",
        tonic::transport::Channel::from_shared(format!("http://{health_addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .unwrap();
    let mut health = HealthClient::new(channel);
    assert_eq!(check(&mut health, "").await, Ok(SERVING));
    let mut watch = within(
        "Watch",
        health.watch(HealthCheckRequest {
            service: "heartbeat.v1.Heartbeat".into(),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    // CONNECTING (NOT_SERVING) may already be over; ONLINE is SERVING.
    let mut s = next(&mut watch).await;
    if s == NOT_SERVING {
        s = next(&mut watch).await;
    }
    assert_eq!(s, SERVING);
    server.stop().await;
    // RECONNECTING stays SERVING; OFFLINE after 2 failed attempts is not.
    assert_eq!(next(&mut watch).await, NOT_SERVING);
    a.wait_log("OFFLINE", |v| v["state"] == "OFFLINE").await;
    let server = TestServer::on(addr, fast()).await;
    assert_eq!(next(&mut watch).await, SERVING);
    a.wait_log("ONLINE again", |v| v["state"] == "ONLINE").await;
    drop(a);
    server.stop().await;
}

#[tokio::test]
async fn sigterm_leaves_and_exits_zero_within_two_seconds() {
    let server = TestServer::start().await;
    let mut events = Events::open(&mut server.client().await, "", 0).await;
    events.snapshot().await;
    let a = agent(&server.url(), "a", &["--label", "zone=z1"]);
    let joined = events.next().await;
    assert_eq!(kind_of(&joined), EventType::Joined);
    assert_eq!(joined.member.unwrap().labels["zone"], "z1");
    a.signal("-TERM");
    let status = a.wait_exit(Duration::from_secs(2)).await;
    assert_eq!(status.code(), Some(0));
    let left = events.next().await;
    assert_eq!(
        (kind_of(&left), left.member.unwrap().state),
        (EventType::Left, MemberState::Left as i32)
    );
    server.stop().await;
}

#[tokio::test]
async fn exec_check_flips_status_both_ways() {
    let server = TestServer::start().await;
    let dir = std::env::temp_dir().join(format!("hb-exec-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let cmd = format!("test -e {}", dir.display());
    let mut events = Events::open(&mut server.client().await, "", 0).await;
    events.snapshot().await;
    let a = agent(
        &server.url(),
        "exec",
        &["--interval", "100ms", "--check-exec", &cmd],
    );
    // Failing before the join: the Join itself says NOT_SERVING.
    let joined = events.next().await;
    assert_eq!(kind_of(&joined), EventType::Joined);
    assert_eq!(
        joined.member.unwrap().status,
        MemberStatus::NotServing as i32
    );
    std::fs::write(&dir, b"ok").unwrap();
    assert_eq!(next_status(&mut events).await, MemberStatus::Serving as i32);
    std::fs::remove_file(&dir).unwrap();
    assert_eq!(
        next_status(&mut events).await,
        MemberStatus::NotServing as i32
    );
    let mut health = server.health().await;
    assert_eq!(check(&mut health, "app/exec").await, Ok(NOT_SERVING));
    let listed = members(&mut server.client().await).await;
    assert_eq!(
        listed[0].state,
        MemberState::Alive as i32,
        "a failing check keeps the member ALIVE"
    );
    drop(a);
    server.stop().await;
}

#[tokio::test]
async fn tcp_check_flips_status_both_ways() {
    let server = TestServer::start().await;
    let app = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let app_addr = app.local_addr().unwrap().to_string();
    let mut events = Events::open(&mut server.client().await, "", 0).await;
    events.snapshot().await;
    let a = agent(
        &server.url(),
        "tcp",
        &["--interval", "100ms", "--check-tcp", &app_addr],
    );
    assert_eq!(kind_of(&events.next().await), EventType::Joined);
    drop(app);
    assert_eq!(
        next_status(&mut events).await,
        MemberStatus::NotServing as i32
    );
    let _app = std::net::TcpListener::bind(&app_addr).unwrap();
    assert_eq!(next_status(&mut events).await, MemberStatus::Serving as i32);
    drop(a);
    server.stop().await;
}

#[tokio::test]
async fn grpc_check_flips_status_both_ways() {
    let server = TestServer::start().await;
    // The app: a tonic-health reporter server, whose status the test flips.
    let (reporter, app_health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("app.Api", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_addr = listener.local_addr().unwrap();
    let app = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(app_health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let mut events = Events::open(&mut server.client().await, "", 0).await;
    events.snapshot().await;
    let spec = format!("{app_addr}/app.Api");
    let a = agent(
        &server.url(),
        "grpc",
        &["--interval", "100ms", "--check-grpc", &spec],
    );
    assert_eq!(kind_of(&events.next().await), EventType::Joined);
    reporter
        .set_service_status("app.Api", tonic_health::ServingStatus::NotServing)
        .await;
    assert_eq!(
        next_status(&mut events).await,
        MemberStatus::NotServing as i32
    );
    reporter
        .set_service_status("app.Api", tonic_health::ServingStatus::Serving)
        .await;
    assert_eq!(next_status(&mut events).await, MemberStatus::Serving as i32);
    drop(a);
    app.abort();
    server.stop().await;
}

#[tokio::test]
async fn an_app_failing_its_check_at_start_is_never_advertised_serving() {
    let server = TestServer::start().await;
    // The app's port, closed for now: the first check fails.
    let app_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut health = server.health().await;
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "app".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut watch).await, ServingStatus::ServiceUnknown as i32);
    let a = agent(
        &server.url(),
        "late",
        &["--interval", "100ms", "--check-tcp", &app_addr],
    );
    assert_eq!(
        next(&mut watch).await,
        NOT_SERVING,
        "the Join itself says NOT_SERVING"
    );
    let _app = std::net::TcpListener::bind(&app_addr).unwrap();
    assert_eq!(next(&mut watch).await, SERVING, "then the check passes");
    drop(a);
    server.stop().await;
}
