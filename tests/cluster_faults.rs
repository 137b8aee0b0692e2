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

/// The members of `service` are all ALIVE on `r`, held by a replica other
/// than `not`.
fn alive_elsewhere(
    m: &[heartbeat::pb::heartbeat::v1::Member],
    service: &str,
    n: usize,
    not: &str,
) -> bool {
    let ours: Vec<_> = m.iter().filter(|m| m.service == service).collect();
    ours.len() == n
        && ours.iter().all(|m| {
            m.state == MemberState::Alive as i32 && !m.replica.is_empty() && m.replica != not
        })
}

#[tokio::test]
async fn sigterm_drains_a_replica_to_its_peers_and_revokes_its_lease() {
    let etcd = EtcdCluster::start("sigterm", 3);
    let mut a = Replica::start(&etcd, "/hb-term/", &[]).await;
    let b = Replica::start(&etcd, "/hb-term/", &[]).await;
    let movers: Vec<_> = (0..20)
        .map(|i| member(&[&a, &b], "web", &format!("m{i}")))
        .collect();
    let stranded: Vec<_> = (0..3)
        .map(|i| member(&[&a], "solo", &format!("s{i}")))
        .collect();
    all_online(&movers).await;
    all_online(&stranded).await;
    b.wait_list("23 ALIVE", Duration::from_secs(10), |m| m.len() == 23)
        .await;
    let (held, _) = b.list().await;
    let a_id = held[0].replica.clone();
    let watch_b = Observer::start(&b, &["web"]).await;

    a.proc.signal("-TERM");
    a.proc
        .wait_log("the lease revoked", |v| {
            v["message"] == "revoked this replica's etcd lease"
        })
        .await;
    let code = a.proc.wait_exit(common::WAIT).await;
    assert_eq!(code.code(), Some(0), "a drained replica exits 0");
    b.wait_list(
        "every mover ALIVE on B",
        TIMEOUT + Duration::from_secs(5),
        |m| alive_elsewhere(m, "web", 20, &a_id),
    )
    .await;
    // The stranded members could go nowhere: their grace began at the revoke.
    b.wait_list("the stranded DEAD", Duration::from_secs(15), |m| {
        m.iter()
            .filter(|m| m.service == "solo")
            .all(|m| m.state == MemberState::Dead as i32)
    })
    .await;
    assert_eq!(watch_b.count(EventType::Dead, |m| m.service == "web"), 0);
    assert_eq!(watch_b.count(EventType::Left, |m| m.service == "web"), 0);
    assert!(
        watch_b.always_serving("web"),
        "web flipped: {:?}",
        watch_b.health_of("web")
    );
    drop((movers, stranded));
}

#[tokio::test]
async fn sigstop_of_a_replica_longer_than_its_lease() {
    let etcd = EtcdCluster::start("sigstop", 3);
    let mut a = Replica::start(&etcd, "/hb-stop/", &[]).await;
    let b = Replica::start(&etcd, "/hb-stop/", &[]).await;
    let c = Replica::start(&etcd, "/hb-stop/", &[]).await;
    let members: Vec<_> = (0..20)
        .map(|i| member(&[&a, &b, &c], "web", &format!("m{i}")))
        .collect();
    all_online(&members).await;
    b.wait_list("20 ALIVE", Duration::from_secs(10), |m| m.len() == 20)
        .await;
    let a_id = b.list().await.0[0].replica.clone();
    let watch_b = Observer::start(&b, &["web"]).await;
    let watch_c = Observer::start(&c, &["web"]).await;

    a.proc.signal("-STOP");
    b.wait_list(
        "every member ALIVE on a peer",
        TIMEOUT * 2 + Duration::from_secs(5),
        |m| alive_elsewhere(m, "web", 20, &a_id),
    )
    .await;
    // Past A's lease: it must have ended.
    tokio::time::sleep(Duration::from_secs(4)).await;
    a.proc.signal("-CONT");
    a.proc
        .wait_log("A registering again", |v| {
            v["message"] == "registered this replica in etcd"
        })
        .await;
    a.wait_health("heartbeat.v1.Heartbeat", ServingStatus::Serving)
        .await;
    // Nothing A decided while stopped landed: every member is still ALIVE
    // on a peer, and neither watch saw a DEAD or a flip.
    tokio::time::sleep(TIMEOUT).await;
    for r in [&b, &c] {
        let (m, _) = r.list().await;
        assert!(
            alive_elsewhere(&m, "web", 20, &a_id),
            "after the thaw: {m:?}"
        );
    }
    for w in [&watch_b, &watch_c] {
        assert_eq!(w.count(EventType::Dead, |_| true), 0);
        assert_eq!(w.count(EventType::Left, |_| true), 0);
        assert!(
            w.always_serving("web"),
            "web flipped: {:?}",
            w.health_of("web")
        );
    }
    drop(members);
}

#[tokio::test]
async fn a_revoked_lease_is_registered_again_and_its_members_readopted() {
    let etcd = EtcdCluster::start("revoke", 3);
    let a = Replica::start(&etcd, "/hb-revoke/", &[]).await;
    let b = Replica::start(&etcd, "/hb-revoke/", &[]).await;
    let members: Vec<_> = (0..30)
        .map(|i| member(&[&a], "web", &format!("m{i}")))
        .collect();
    all_online(&members).await;
    b.wait_list("30 ALIVE", Duration::from_secs(10), |m| m.len() == 30)
        .await;
    let watch_b = Observer::start(&b, &["web"]).await;
    // A's lease: the one its replica key is on.
    let a_id = b.list().await.0[0].replica.clone();
    let leases = etcd.etcdctl(&["lease", "list"]).expect("lease list");
    let a_lease = leases
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .find(|id| {
            etcd.etcdctl(&["lease", "timetolive", id, "--keys"])
                .is_ok_and(|out| out.contains(&a_id))
        })
        .unwrap_or_else(|| panic!("no lease holds {a_id}: {leases}"))
        .to_owned();
    etcd.etcdctl(&["lease", "revoke", &a_lease])
        .expect("revoke");
    // A registers again and every member stays ALIVE, held by A.
    a.wait_health("heartbeat.v1.Heartbeat", ServingStatus::Serving)
        .await;
    b.wait_list("every member ALIVE again", Duration::from_secs(10), |m| {
        m.len() == 30 && m.iter().all(|m| m.state == MemberState::Alive as i32)
    })
    .await;
    tokio::time::sleep(TIMEOUT + Duration::from_millis(500)).await;
    let (m, _) = b.list().await;
    assert!(
        m.iter().all(|m| m.state == MemberState::Alive as i32),
        "{m:?}"
    );
    assert!(
        m.iter().all(|m| m.replica == a_id),
        "A holds them again: {m:?}"
    );

    // Every lease at once: whichever replica registers first may adopt the
    // other's members as orphans; the holder claims them back.
    let leases = etcd.etcdctl(&["lease", "list"]).expect("lease list");
    for id in leases
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
    {
        etcd.etcdctl(&["lease", "revoke", id]).expect("revoke");
    }
    for r in [&a, &b] {
        r.wait_health("heartbeat.v1.Heartbeat", ServingStatus::Serving)
            .await;
    }
    tokio::time::sleep(TIMEOUT + Duration::from_millis(500)).await;
    b.wait_list("A holds every member again", Duration::from_secs(10), |m| {
        m.len() == 30
            && m.iter()
                .all(|m| m.state == MemberState::Alive as i32 && m.replica == a_id)
    })
    .await;
    assert_eq!(watch_b.count(EventType::Dead, |_| true), 0, "no false DEAD");
    assert!(
        watch_b.always_serving("web"),
        "web flipped: {:?}",
        watch_b.health_of("web")
    );
    drop(members);
}

#[tokio::test]
async fn a_replica_cut_off_from_etcd_drains_to_its_peers() {
    use common::proxy::Proxy;
    let etcd = EtcdCluster::start("cutoff", 3);
    let mut proxies = Vec::new();
    for e in etcd.endpoints() {
        proxies.push(Proxy::start(e.parse().unwrap()).await);
    }
    let via: Vec<String> = proxies.iter().map(|p| p.addr.to_string()).collect();
    let mut a = Replica::start_on(&via, "/hb-cut/", &[]).await;
    let b = Replica::start(&etcd, "/hb-cut/", &[]).await;
    let members: Vec<_> = (0..20)
        .map(|i| member(&[&a, &b], "web", &format!("m{i}")))
        .collect();
    all_online(&members).await;
    b.wait_list("20 ALIVE", Duration::from_secs(10), |m| m.len() == 20)
        .await;
    let a_id = b.list().await.0[0].replica.clone();
    let watch_b = Observer::start(&b, &["web"]).await;

    // Half-open links to every etcd member; the members still reach A.
    for p in &proxies {
        p.freeze();
    }
    let cut = Instant::now();
    a.wait_health("heartbeat.v1.Heartbeat", ServingStatus::NotServing)
        .await;
    let unready = cut.elapsed();
    assert_eq!(
        a.health("").await,
        Some(ServingStatus::Serving as i32),
        "\"\" stays SERVING"
    );
    a.proc
        .wait_log("the members asked to move", |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("asking this replica's members to move"))
        })
        .await;
    b.wait_list(
        "every member ALIVE on B",
        TIMEOUT + Duration::from_secs(5),
        |m| alive_elsewhere(m, "web", 20, &a_id),
    )
    .await;
    let moved = cut.elapsed();
    // A Join on A is refused while it cannot reach etcd.
    let mut late = member(&[&a], "web", "late");
    let mut s = late.subscribe();
    common::within(
        "the refused Join",
        s.wait_for(|s| {
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("UNAVAILABLE") || e.contains("registry"))
        }),
    )
    .await
    .unwrap();
    drop(s);
    late = member(&[&b], "web", "late");
    all_online(std::slice::from_ref(&late)).await;

    // Healed: A registers again and writes nothing with its old fence.
    for p in &proxies {
        p.thaw();
        p.drop_connections();
    }
    a.wait_health("heartbeat.v1.Heartbeat", ServingStatus::Serving)
        .await;
    tokio::time::sleep(TIMEOUT).await;
    let (m, _) = b.list().await;
    assert!(
        alive_elsewhere(&m, "web", 21, &a_id),
        "after the heal: {m:?}"
    );
    assert_eq!(watch_b.count(EventType::Dead, |_| true), 0, "no false DEAD");
    assert!(
        watch_b.always_serving("web"),
        "web flipped: {:?}",
        watch_b.health_of("web")
    );
    eprintln!("cut off: A NOT_SERVING after {unready:?}; its members on B after {moved:?}");
    drop((members, late));
}

/// Each replica key's `create_revision` (its registration) under `prefix`.
fn registrations(etcd: &EtcdCluster, prefix: &str) -> Vec<i64> {
    let out = etcd
        .etcdctl(&[
            "get",
            "--prefix",
            &format!("{prefix}replicas/"),
            "-w",
            "json",
        ])
        .expect("etcdctl get");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let mut revs: Vec<i64> = v["kvs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|kv| kv["create_revision"].as_i64())
                .collect()
        })
        .unwrap_or_default();
    revs.sort_unstable();
    revs
}

/// Records every state a client leaves ONLINE for.
fn watch_states(
    clients: &[heartbeat::client::Client],
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let left = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    for c in clients {
        let mut s = c.subscribe();
        let left = left.clone();
        tokio::spawn(async move {
            while s.changed().await.is_ok() {
                let st = s.borrow_and_update().clone();
                if st.state != heartbeat::client::ClientState::Online {
                    left.lock()
                        .unwrap()
                        .push(format!("{:?}: {:?}", st.state, st.last_error));
                }
            }
        });
    }
    left
}

#[tokio::test]
async fn sigstop_of_the_etcd_leader_loses_no_lease_and_no_member() {
    let etcd = EtcdCluster::start("leader", 3);
    let mut a = Replica::start(&etcd, "/hb-leader/", &[]).await;
    let mut b = Replica::start(&etcd, "/hb-leader/", &[]).await;
    let members: Vec<_> = (0..20)
        .map(|i| {
            let servers = if i % 2 == 0 { [&a, &b] } else { [&b, &a] };
            member(&servers, "web", &format!("m{i}"))
        })
        .collect();
    all_online(&members).await;
    b.wait_list("20 ALIVE", Duration::from_secs(10), |m| m.len() == 20)
        .await;
    let before = registrations(&etcd, "/hb-leader/");
    let watch_a = Observer::start(&a, &["web"]).await;
    let watch_b = Observer::start(&b, &["web"]).await;
    let states = watch_states(&members);

    let leader = etcd.leader().expect("a leader");
    etcd.signal(leader, "-STOP");
    // A Join during the freeze is written once etcd elects a new leader
    // (the client retries until then).
    let joiner = member(&[&a, &b], "web", "during");
    tokio::time::sleep(Duration::from_secs(5)).await;
    etcd.signal(leader, "-CONT");
    all_online(std::slice::from_ref(&joiner)).await;
    for r in [&a, &b] {
        r.wait_list("21 ALIVE", Duration::from_secs(10), |m| {
            m.len() == 21 && m.iter().all(|m| m.state == MemberState::Alive as i32)
        })
        .await;
    }
    let after = registrations(&etcd, "/hb-leader/");
    if after != before {
        for l in a
            .logs()
            .iter()
            .chain(b.logs().iter())
            .filter(|l| !l.contains("member "))
        {
            eprintln!("{l}");
        }
    }
    if !states.lock().unwrap().is_empty() {
        for l in a
            .logs()
            .iter()
            .chain(b.logs().iter())
            .filter(|l| !l.contains("member "))
        {
            eprintln!("{l}");
        }
    }
    // The keepers rotated past the frozen leader. etcd 3.4.23 itself may
    // revoke a kept lease when its stale leader resumes (etcd #15247); a
    // replica then registers again and claims its members back. Either
    // way, both are registered now.
    if after != before {
        eprintln!("etcd revoked a kept lease: registrations {before:?} -> {after:?}");
    }
    for r in [&a, &b] {
        r.wait_health("heartbeat.v1.Heartbeat", ServingStatus::Serving)
            .await;
    }
    assert_eq!(
        registrations(&etcd, "/hb-leader/").len(),
        2,
        "both replicas registered"
    );
    assert!(
        states.lock().unwrap().is_empty(),
        "members left ONLINE: {:?}",
        states.lock().unwrap()
    );
    for w in [&watch_a, &watch_b] {
        assert_eq!(w.count(EventType::Dead, |_| true), 0, "no false DEAD");
        assert!(
            w.always_serving("web"),
            "web flipped: {:?}",
            w.health_of("web")
        );
    }
    drop((members, joiner));
}

#[tokio::test]
async fn losing_etcd_quorum_holds_every_stream() {
    let etcd = EtcdCluster::start("quorum", 3);
    let a = Replica::start(&etcd, "/hb-quorum/", &[]).await;
    let b = Replica::start(&etcd, "/hb-quorum/", &[]).await;
    let members: Vec<_> = (0..20)
        .map(|i| {
            let servers = if i % 2 == 0 { [&a, &b] } else { [&b, &a] };
            member(&servers, "web", &format!("m{i}"))
        })
        .collect();
    let silent = member(&[&a], "web", "silent");
    all_online(&members).await;
    all_online(std::slice::from_ref(&silent)).await;
    b.wait_list("21 ALIVE", Duration::from_secs(10), |m| m.len() == 21)
        .await;
    let watch_a = Observer::start(&a, &["web"]).await;
    let watch_b = Observer::start(&b, &["web"]).await;
    let states = watch_states(&members);

    etcd.signal(1, "-STOP");
    etcd.signal(2, "-STOP");
    for r in [&a, &b] {
        r.wait_health("heartbeat.v1.Heartbeat", ServingStatus::NotServing)
            .await;
    }
    // One member really stops meanwhile: its DEAD waits for etcd.
    drop(silent);
    // Reads are answered (stale), new Joins refused, streams held.
    let (listed, _) = a.list().await;
    assert_eq!(listed.len(), 21);
    let newcomer = member(&[&a, &b], "web", "new");
    let mut s = newcomer.subscribe();
    common::within(
        "the refused Join",
        s.wait_for(|s| {
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("UNAVAILABLE") || e.contains("registry"))
        }),
    )
    .await
    .unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        states.lock().unwrap().is_empty(),
        "members left ONLINE: {:?}",
        states.lock().unwrap()
    );
    for w in [&watch_a, &watch_b] {
        assert_eq!(
            w.count(EventType::Dead, |_| true),
            0,
            "no DEAD while etcd cannot be written"
        );
    }
    etcd.signal(1, "-CONT");
    etcd.signal(2, "-CONT");
    for r in [&a, &b] {
        r.wait_health("heartbeat.v1.Heartbeat", ServingStatus::Serving)
            .await;
    }
    all_online(std::slice::from_ref(&newcomer)).await;
    // The queued DEAD of the member that stopped lands; nobody else's.
    for r in [&a, &b] {
        r.wait_list(
            "silent DEAD, the rest ALIVE",
            Duration::from_secs(10),
            |m| {
                m.len() == 22
                    && m.iter().all(|m| {
                        let want = if m.instance == "silent" {
                            MemberState::Dead
                        } else {
                            MemberState::Alive
                        };
                        m.state == want as i32
                    })
            },
        )
        .await;
    }
    assert!(
        states.lock().unwrap().is_empty(),
        "members left ONLINE: {:?}",
        states.lock().unwrap()
    );
    for w in [&watch_a, &watch_b] {
        assert_eq!(
            w.count(EventType::Dead, |m| m.instance != "silent"),
            0,
            "no false DEAD"
        );
        assert!(
            w.always_serving("web"),
            "web flipped: {:?}",
            w.health_of("web")
        );
    }
    drop((members, newcomer));
}
