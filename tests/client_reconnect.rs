//! The client's own deadline and reconnects, with faults caused for real: a
//! proxy that freezes (hung server, half-open connection) or drops every
//! connection, a server restarted on the same port, a dead first server, and
//! a drain that moves the client to another server.

mod common;

use common::proxy::Proxy;
use common::*;
use heartbeat::client::{Client, ClientConfig, ClientState, ClientStatus};
use heartbeat::pb::heartbeat::v1::MemberState;
use tokio::sync::watch;

/// Records every state the client passes through.
fn record(mut rx: watch::Receiver<ClientStatus>) -> tokio::task::JoinHandle<Vec<ClientState>> {
    tokio::spawn(async move {
        let mut seen = vec![rx.borrow_and_update().state];
        while rx.changed().await.is_ok() {
            let s = rx.borrow_and_update().state;
            if seen.last() != Some(&s) {
                seen.push(s);
            }
        }
        seen
    })
}

/// Waits for ONLINE with a Pong received (an attempt only succeeds then).
async fn ponged(rx: &mut watch::Receiver<ClientStatus>) -> ClientStatus {
    within(
        "ONLINE with a Pong",
        rx.wait_for(|s| s.state == ClientState::Online && s.rtt.is_some()),
    )
    .await
    .expect("client task alive")
    .clone()
}

#[tokio::test]
async fn frozen_server_goes_offline_after_max_retries_and_recovers_on_thaw() {
    let server = TestServer::with(fast()).await;
    let proxy = Proxy::start(server.addr).await;
    let client =
        Client::spawn(ClientConfig::new([proxy.url()], "web", "a").max_retries(2)).unwrap();
    let mut rx = client.subscribe();
    let history = record(client.subscribe());
    let first = ponged(&mut rx).await.session.unwrap();

    proxy.freeze();
    let lost = reach(&mut rx, ClientState::Reconnecting).await;
    assert!(
        lost.last_error.unwrap().contains("no answer"),
        "left ONLINE by its own deadline"
    );
    let offline = reach(&mut rx, ClientState::Offline).await;
    assert_eq!(offline.failures, 2);

    proxy.thaw();
    let back = reach(&mut rx, ClientState::Online).await;
    assert!(back.session.unwrap() > first, "rejoined with a new session");
    assert_eq!(back.failures, 0);
    let listed = members(&mut server.client().await).await;
    assert_eq!(
        (listed[0].session, listed[0].state),
        (back.session.unwrap(), MemberState::Alive as i32)
    );

    client.leave().await.unwrap();
    let seen = within("history", history).await.unwrap();
    assert_eq!(
        seen,
        [
            ClientState::Connecting,
            ClientState::Online,
            ClientState::Reconnecting,
            ClientState::Offline,
            ClientState::Online,
            ClientState::Left
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn dropped_connection_reconnects_to_the_same_server() {
    let server = TestServer::with(fast()).await;
    let proxy = Proxy::start(server.addr).await;
    let client = Client::spawn(ClientConfig::new([proxy.url()], "web", "a")).unwrap();
    let mut rx = client.subscribe();
    let first = ponged(&mut rx).await.session.unwrap();
    proxy.drop_connections();
    reach(&mut rx, ClientState::Reconnecting).await;
    let back = reach(&mut rx, ClientState::Online).await;
    assert!(back.session.unwrap() > first);
    client.leave().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn server_restart_on_the_same_port_gets_a_rejoin() {
    let server = TestServer::with(fast()).await;
    let addr = server.addr;
    let client = Client::spawn(ClientConfig::new([server.url()], "web", "a")).unwrap();
    let mut rx = client.subscribe();
    let first = reach(&mut rx, ClientState::Online).await.session.unwrap();
    server.stop().await;
    reach(&mut rx, ClientState::Reconnecting).await;
    let server = TestServer::on(addr, fast()).await;
    let back = reach(&mut rx, ClientState::Online).await;
    assert!(
        back.session.unwrap() > first,
        "sessions increase across restarts"
    );
    let listed = members(&mut server.client().await).await;
    assert_eq!(
        (listed[0].instance.as_str(), listed[0].state),
        ("a", MemberState::Alive as i32)
    );
    client.leave().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_dead_first_server_is_skipped() {
    let dead = free_addr();
    let server = TestServer::with(fast()).await;
    let client = Client::spawn(ClientConfig::new(
        [format!("http://{dead}"), server.url()],
        "web",
        "a",
    ))
    .unwrap();
    let online = reach(&mut client.subscribe(), ClientState::Online).await;
    assert_eq!(online.server.as_deref(), Some(server.url().as_str()));
    client.leave().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn drain_moves_the_client_to_the_other_server() {
    let mut a = TestServer::with(fast()).await;
    let b = TestServer::with(fast()).await;
    let client = Client::spawn(ClientConfig::new([a.url(), b.url()], "web", "x")).unwrap();
    let mut rx = client.subscribe();
    let on_a = reach(&mut rx, ClientState::Online).await;
    assert_eq!(on_a.server.as_deref(), Some(a.url().as_str()));
    a.begin_shutdown();
    let drained = reach(&mut rx, ClientState::Reconnecting).await;
    assert!(drained.last_error.unwrap().contains("drained"));
    let on_b = within(
        "online on b",
        rx.wait_for(|s| {
            s.state == ClientState::Online && s.server.as_deref() == Some(b.url().as_str())
        }),
    )
    .await
    .unwrap()
    .clone();
    assert!(on_b.session.is_some());
    assert_eq!(members(&mut b.client().await).await.len(), 1);
    client.leave().await.unwrap();
    a.stop().await;
    b.stop().await;
}
