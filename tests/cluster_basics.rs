//! Cluster mode (SPEC §7) with replicas in this process on a real etcd:
//! one table on every replica, one order, fencing across replicas.

mod common;

use common::cluster::{health_is, list_of, replica_cfg};
use common::etcd::EtcdCluster;
use common::{Beat, Events, TestServer, within};
use heartbeat::pb::health::v1::health_check_response::ServingStatus;
use heartbeat::pb::heartbeat::v1::{EventType, MemberState};
use tonic::Code;

#[tokio::test]
async fn every_replica_serves_one_table_and_fences_across_replicas() {
    let etcd = EtcdCluster::start("basics", 1);
    let a = TestServer::with(replica_cfg(etcd.endpoints(), "/hb-basics/")).await;
    let b = TestServer::with(replica_cfg(etcd.endpoints(), "/hb-basics/")).await;
    for r in [&a, &b] {
        health_is(r, "heartbeat.v1.Heartbeat", ServingStatus::Serving).await;
    }
    let mut watch_b = Events::open(&mut b.client().await, "", 0).await;
    let (_, at) = watch_b.snapshot().await;

    let (mut on_a, welcome_a) = Beat::join(&mut a.client().await, "web", "x").await;
    on_a.ping(1).await;
    health_is(&b, "web", ServingStatus::Serving).await;
    health_is(&b, "web/x", ServingStatus::Serving).await;
    let joined = watch_b.next().await;
    assert_eq!(joined.r#type, EventType::Joined as i32);
    assert!(joined.revision > at);
    let m = joined.member.unwrap();
    assert_eq!(m.session, welcome_a.session, "the session is the commit's");
    assert_eq!(m.replica, welcome_a.server_id, "Member.replica names A");

    let list_a = list_of(&a).await;
    let list_b = list_of(&b).await;
    assert_eq!(list_a.members.len(), 1);
    assert_eq!(list_b.members[0].state, MemberState::Alive as i32);

    // `heartbeat members` on B names the replica holding each member.
    let (code, text) =
        common::process::Proc::run(&["members", "--server", &b.addr.to_string()]).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.lines().next().is_some_and(|h| h.contains("REPLICA")),
        "{text}"
    );
    assert!(text.contains(&welcome_a.server_id), "{text}");

    // The same identity joins on B: A's stream ends ABORTED, superseded.
    let (mut on_b, welcome_b) = Beat::join(&mut b.client().await, "web", "x").await;
    assert!(welcome_b.session > welcome_a.session);
    let status = within("A's stream to end", on_a.expect_status(Code::Aborted)).await;
    assert_eq!(
        status.message(),
        format!("superseded by session {}", welcome_b.session)
    );
    let takeover = watch_b.next().await;
    assert_eq!(takeover.r#type, EventType::Joined as i32);
    assert_eq!(takeover.member.unwrap().replica, welcome_b.server_id);
    on_b.ping(1).await;
    health_is(&a, "web/x", ServingStatus::Serving).await;

    // Leave on B: LEFT everywhere.
    on_b.send(common::leave_req()).await;
    on_b.expect_ok_end().await;
    let left = watch_b.next().await;
    assert_eq!(left.r#type, EventType::Left as i32);
    health_is(&a, "web/x", ServingStatus::NotServing).await;
    a.stop().await;
    b.stop().await;
}

/// The events of a watch from `since` until it has `n` (a snapshot fails
/// the test: a resume must replay).
async fn replay(server: &TestServer, since: u64, n: usize) -> Vec<(u64, i32, String, u64)> {
    let mut w = Events::open(&mut server.client().await, "", since).await;
    let mut out = Vec::new();
    while out.len() < n {
        let e = w.next().await;
        assert_ne!(
            e.r#type,
            EventType::Snapshot as i32,
            "a resume from {since} sent a snapshot"
        );
        let m = e.member.unwrap();
        out.push((e.revision, e.r#type, m.instance, m.session));
    }
    out
}

#[tokio::test]
async fn a_resume_works_on_any_replica_even_one_started_later() {
    let etcd = EtcdCluster::start("resume", 1);
    let a = TestServer::with(replica_cfg(etcd.endpoints(), "/hb-resume/")).await;
    health_is(&a, "heartbeat.v1.Heartbeat", ServingStatus::Serving).await;
    let since = list_of(&a).await.revision;
    let mut client = a.client().await;
    let (mut x, _) = Beat::join(&mut client, "web", "x").await;
    let (mut y, _) = Beat::join(&mut client, "web", "y").await;
    x.ping(1).await;
    x.send(common::leave_req()).await;
    x.expect_ok_end().await;
    y.ping(1).await;
    let on_a = replay(&a, since, 3).await;

    // B starts after all of it: its own history is empty.
    let b = TestServer::with(replica_cfg(etcd.endpoints(), "/hb-resume/")).await;
    health_is(&b, "heartbeat.v1.Heartbeat", ServingStatus::Serving).await;
    assert_eq!(
        replay(&b, since, 3).await,
        on_a,
        "B replays what A delivered"
    );
    // From the middle, too.
    assert_eq!(replay(&b, on_a[0].0, 2).await, on_a[1..].to_vec());

    // Once etcd compacted past it, a resume on a replica without it in its
    // history is a snapshot.
    let head = common::cluster::etcd_revision(&etcd);
    etcd.etcdctl(&["compact", &head.to_string()])
        .expect("compact");
    let c = TestServer::with(replica_cfg(etcd.endpoints(), "/hb-resume/")).await;
    health_is(&c, "heartbeat.v1.Heartbeat", ServingStatus::Serving).await;
    let mut w = Events::open(&mut c.client().await, "", since).await;
    let (rows, _) = w.snapshot().await;
    assert_eq!(rows.len(), 2, "x (LEFT) and y");
    drop(y);
    for s in [a, b, c] {
        s.stop().await;
    }
}

#[tokio::test]
async fn every_replica_serves_the_same_xds_endpoints() {
    use common::ads::{Ads, addrs};
    let etcd = EtcdCluster::start("xds", 1);
    let a = TestServer::with(replica_cfg(etcd.endpoints(), "/hb-xds/")).await;
    let b = TestServer::with(replica_cfg(etcd.endpoints(), "/hb-xds/")).await;
    for r in [&a, &b] {
        health_is(r, "heartbeat.v1.Heartbeat", ServingStatus::Serving).await;
    }
    let mut on_b = Ads::open_on(b.channel().await).await.unwrap();
    let first = on_b.endpoints(&["web"]).await;
    assert!(addrs(&first).is_empty());
    on_b.ask(common::ads::EDS, &["web"], &first.nonce).await;

    // A member joined on A is routed to by B's clients ...
    let join = heartbeat::pb::heartbeat::v1::Join {
        service: "web".into(),
        instance: "x".into(),
        endpoint: "10.1.2.3:8080".into(),
        ..Default::default()
    };
    let (mut x, _) = Beat::join_with(&mut a.client().await, join).await;
    assert_eq!(addrs(&on_b.next().await), ["10.1.2.3:8080"]);
    // ... and A's clients see the same set.
    let mut on_a = Ads::open_on(a.channel().await).await.unwrap();
    assert_eq!(addrs(&on_a.endpoints(&["web"]).await), ["10.1.2.3:8080"]);
    // Leave on A: out on B.
    x.send(common::leave_req()).await;
    x.expect_ok_end().await;
    assert!(addrs(&on_b.next().await).is_empty());
    a.stop().await;
    b.stop().await;
}
