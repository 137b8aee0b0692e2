//! Cluster mode's faults (SPEC §7.5, §7.6) with real processes on a real
//! 3-member etcd: replicas killed, stopped, drained or cut off, and what
//! every surviving replica showed meanwhile. Each asserts no false DEAD
//! and that `<service>` health never flipped where members kept pinging.

mod common;

use std::time::Duration;

use common::cluster::{Observer, Replica, TIMEOUT, all_online, member};
use common::etcd::EtcdCluster;
use heartbeat::pb::health::v1::health_check_response::ServingStatus;
use heartbeat::pb::heartbeat::v1::{EventType, MemberState};
use tokio::time::Instant;

#[tokio::test]
async fn kill_9_of_a_replica_kills_no_member() {
    let etcd = EtcdCluster::start("kill9", 3);
    let a = Replica::start(&etcd, "/hb-kill9/", &[]).await;
    let b = Replica::start(&etcd, "/hb-kill9/", &[]).await;
    let c = Replica::start(&etcd, "/hb-kill9/", &[]).await;
    // 30 members on A (B next), 10 on B (C next), and 5 on A that die with it.
    let on_a: Vec<_> = (0..30)
        .map(|i| member(&[&a, &b], "web", &format!("a{i}")))
        .collect();
    let on_b: Vec<_> = (0..10)
        .map(|i| member(&[&b, &c], "web", &format!("b{i}")))
        .collect();
    let doomed: Vec<_> = (0..5)
        .map(|i| member(&[&a], "batch", &format!("d{i}")))
        .collect();
    all_online(&on_a).await;
    all_online(&on_b).await;
    all_online(&doomed).await;
    for r in [&b, &c] {
        r.wait_list("all 45 ALIVE", Duration::from_secs(10), |m| {
            m.len() == 45 && m.iter().all(|m| m.state == MemberState::Alive as i32)
        })
        .await;
    }
    let watch_b = Observer::start(&b, &["web", "batch"]).await;
    let watch_c = Observer::start(&c, &["web"]).await;

    a.proc.signal("-KILL");
    let killed = Instant::now();
    drop(doomed);

    // Every live member moves to B, keeping its identity: no DEAD, no LEFT.
    for r in [&b, &c] {
        r.wait_list(
            "A's live members held by B",
            TIMEOUT + Duration::from_secs(8),
            |m| {
                m.iter()
                    .filter(|m| m.instance.starts_with('a'))
                    .all(|m| m.state == MemberState::Alive as i32 && !m.replica.is_empty())
                    && m.iter().filter(|m| m.instance.starts_with('a')).count() == 30
                    && m.iter().filter(|m| m.instance.starts_with('a')).all(|x| {
                        m.iter()
                            .any(|y| y.instance.starts_with('b') && y.replica == x.replica)
                    })
            },
        )
        .await;
    }
    let moved = killed.elapsed();
    // The members that died with A: SUSPECT when its lease ends, DEAD one
    // timeout later.
    b.wait_list("the doomed members DEAD", Duration::from_secs(20), |m| {
        m.iter()
            .filter(|m| m.service == "batch")
            .all(|m| m.state == MemberState::Dead as i32)
    })
    .await;
    let dead_after = killed.elapsed();
    assert!(
        dead_after >= TIMEOUT,
        "orphans are DEAD no earlier than one timeout after their replica's lease ended ({dead_after:?})"
    );
    for w in [&watch_b, &watch_c] {
        let live_dead = w.count(EventType::Dead, |m| m.service == "web");
        let live_left = w.count(EventType::Left, |m| m.service == "web");
        assert_eq!(
            (live_dead, live_left),
            (0, 0),
            "no live member DEAD or LEFT"
        );
        assert!(
            w.always_serving("web"),
            "web flipped: {:?}",
            w.health_of("web")
        );
    }
    assert_eq!(watch_b.count(EventType::Dead, |m| m.service == "batch"), 5);
    assert_eq!(
        watch_b.health_of("batch").last(),
        Some(&(ServingStatus::NotServing as i32)),
        "a service whose members all died is NOT_SERVING"
    );
    eprintln!("kill -9: live members moved within {moved:?}; orphans DEAD after {dead_after:?}");
    drop((on_a, on_b));
}
