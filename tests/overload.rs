//! Overload (`--max-ping-rate`): past the ping budget the server slows every
//! member down through `Pong.interval`, then refuses new Joins with
//! RESOURCE_EXHAUSTED — and never ends a healthy member's stream.

mod common;

use std::time::Duration;

use common::*;
use heartbeat::client::{ClientConfig, ClientState};
use heartbeat::config::ServerConfig;
use tonic::Code;

fn secs(d: Option<prost_types::Duration>) -> Option<Duration> {
    heartbeat::pb::duration_from_pb(d)
}

#[tokio::test]
async fn past_the_budget_intervals_stretch_then_joins_are_refused() {
    // 2 pings/s; members at 1 s with a 3 s timeout may be slowed to 1.5 s.
    let (server, registry) = TestServer::with_metrics(ServerConfig {
        max_ping_rate: Some(2),
        ..quick_drain()
    })
    .await;
    let mut client = server.client().await;
    let (mut a, w) = Beat::join(&mut client, "web", "a").await;
    assert_eq!(secs(w.interval), Some(Duration::from_secs(1)));
    let (_b, w) = Beat::join(&mut client, "web", "b").await;
    assert_eq!(
        secs(w.interval),
        Some(Duration::from_secs(1)),
        "at the budget"
    );
    assert_eq!(a.ping(1).await.interval, None, "no change, no interval");

    // A third: 3 pings/s offered for 2, so everybody goes to 1.5 s.
    let (mut c, w) = Beat::join(&mut client, "web", "c").await;
    assert_eq!(secs(w.interval), Some(Duration::from_millis(1500)));
    assert_eq!(
        secs(a.ping(2).await.interval),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(a.ping(3).await.interval, None, "told once");
    let listed = members(&mut client).await;
    let a_row = listed.iter().find(|m| m.instance == "a").expect("a listed");
    assert_eq!(secs(a_row.interval), Some(Duration::from_millis(1500)));
    assert_eq!(metric(&registry, "heartbeat_interval_stretch"), 1.5);
    assert_eq!(metric(&registry, "heartbeat_offered_ping_rate"), 3.0);

    // A fourth would need 2.67 pings/s even at 1.5 s each: refused.
    let mut d = Beat::open(&mut client).await;
    d.send(join_req("web", "d")).await;
    let msg = d.expect_error(Code::ResourceExhausted).await;
    assert!(msg.contains("ping budget of 2 pings/s"), "{msg}");
    assert_eq!(
        metric(
            &registry,
            "heartbeat_rejections_total{reason=\"ping_budget\"}"
        ),
        1.0
    );
    // A takeover replaces its own share, so it is let in.
    let (mut c2, _) = Beat::join(&mut client, "web", "c").await;
    c.expect_error(Code::Aborted).await;

    // c leaves: back under the budget. Nobody was ended: a still pings, at
    // 1 s again.
    c2.send(leave_req()).await;
    c2.expect_ok_end().await;
    assert_eq!(secs(a.ping(4).await.interval), Some(Duration::from_secs(1)));
    assert_eq!(metric(&registry, "heartbeat_interval_stretch"), 1.0);
    assert_eq!(
        metric(&registry, "heartbeat_expirations_total"),
        0.0,
        "overload never kills"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_client_library_adopts_the_stretched_interval_and_gets_it_back() {
    // 10 pings/s: one member at 100 ms fits; two are slowed to 200 ms.
    let server = TestServer::with(ServerConfig {
        max_ping_rate: Some(10),
        ..fast()
    })
    .await;
    let member = |name: &str| {
        let cfg = ClientConfig::new([server.url()], "svc", name)
            .interval(Duration::from_millis(100))
            .timeout(Duration::from_secs(1));
        heartbeat::client::Client::spawn(cfg).expect("valid config")
    };
    let first = member("first");
    let mut first_rx = first.subscribe();
    let online = reach(&mut first_rx, ClientState::Online).await;
    assert_eq!(online.interval, Duration::from_millis(100));
    let first_session = online.session;

    let second = member("second");
    let mut second_rx = second.subscribe();
    let online = reach(&mut second_rx, ClientState::Online).await;
    assert_eq!(
        online.interval,
        Duration::from_millis(200),
        "Welcome carries it"
    );
    within(
        "the first member slowed to 200 ms by Pong.interval",
        first_rx.wait_for(|s| s.interval == Duration::from_millis(200)),
    )
    .await
    .expect("client alive");

    second.leave().await.expect("leave");
    let back = within(
        "the first member back at 100 ms",
        first_rx.wait_for(|s| s.interval == Duration::from_millis(100)),
    )
    .await
    .expect("client alive")
    .clone();
    assert_eq!(
        (back.state, back.session),
        (ClientState::Online, first_session),
        "slowed and sped up on the same session, never reconnected"
    );
    server.stop().await;
}
