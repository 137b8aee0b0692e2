//! Mass-failure protection with real faults: all members frozen behind a
//! proxy (a partition on the server's side) are held SUSPECT, service health
//! unchanged, for one more timeout before DEAD; a real half of the fleet
//! dying is not a mass failure and expires normally.

mod common;

use std::time::{Duration, SystemTime};

use common::proxy::Proxy;
use common::*;
use heartbeat::config::ServerConfig;
use heartbeat::pb::health::v1::HealthCheckRequest;
use heartbeat::pb::heartbeat::v1::{EventType, MemberEvent};

const TIMEOUT: Duration = Duration::from_millis(500);

fn cfg() -> ServerConfig {
    ServerConfig {
        default_interval: Duration::from_millis(100),
        default_timeout: TIMEOUT,
        ..quick_drain()
    }
}

fn last_seen(e: &MemberEvent) -> SystemTime {
    SystemTime::try_from(e.member.as_ref().unwrap().last_seen.unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_is_held_one_more_timeout_with_health_unchanged() {
    let (server, registry) = TestServer::with_metrics(cfg()).await;
    let proxy = Proxy::start(server.addr).await;
    let members = spawn_fleet(&proxy.url(), "fleet", 20);
    all_online(&members).await;
    let mut events = Events::open(&mut server.client().await, "", 0).await;
    events.snapshot().await;
    let mut health = server.health().await;
    let mut service = within(
        "Watch",
        health.watch(HealthCheckRequest {
            service: "fleet".into(),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        within("SERVING", service.message())
            .await
            .unwrap()
            .unwrap()
            .status,
        1
    );

    proxy.freeze();
    let mut dead = vec![];
    while dead.len() < 20 {
        let e = events.next().await;
        if kind_of(&e) == EventType::Dead {
            // Never before twice the timeout of silence (a lower bound, which
            // a slow machine cannot break).
            let silent_for = SystemTime::now().duration_since(last_seen(&e)).unwrap();
            assert!(
                silent_for >= 2 * TIMEOUT,
                "DEAD after {silent_for:?} of silence: not held"
            );
            dead.push(e);
        }
    }
    // Health of the service stayed SERVING until the DEAD wave.
    assert_eq!(
        within("NOT_SERVING", service.message())
            .await
            .unwrap()
            .unwrap()
            .status,
        2
    );
    assert_eq!(
        metric(&registry, "heartbeat_mass_failure_holds_total"),
        20.0
    );
    drop(members);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_of_the_fleet_dying_expires_normally() {
    let (server, registry) = TestServer::with_metrics(cfg()).await;
    let mut members = spawn_fleet(&server.url(), "fleet", 20);
    all_online(&members).await;
    let mut events = Events::open(&mut server.client().await, "", 0).await;
    events.snapshot().await;
    members.truncate(10); // m0010..m0019 die for real
    let mut dead = 0;
    while dead < 10 {
        let e = events.next().await;
        if kind_of(&e) == EventType::Dead {
            dead += 1;
        }
    }
    assert_eq!(
        metric(&registry, "heartbeat_mass_failure_holds_total"),
        0.0,
        "50 % is not more than 50 %"
    );
    assert_eq!(
        metric(
            &registry,
            "heartbeat_members{service=\"fleet\",state=\"alive\"}"
        ),
        10.0
    );
    server.stop().await;
}
