//! heartbeat's etcd client against a real 3-member etcd on loopback:
//! compare-and-swap transactions, a revoked lease deleting its keys in one
//! revision, and the lease keeper keeping its lease through a frozen etcd
//! leader by moving to the next endpoint.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::etcd::EtcdCluster;
use heartbeat::etcd::pb::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, TxnRequest, compare, request_op,
};
use heartbeat::etcd::{Etcd, LeaseKeeper};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_millis(1500);

fn put(key: &str, value: &str, lease: i64) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..Default::default()
    }
}

/// Creates `key` (a compare-and-swap on "does not exist", so a retry of
/// a write that did land changes nothing), retrying while etcd elects a
/// new leader; returns the revision that created it.
async fn create_retry(etcd: &Etcd, key: &str) -> i64 {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = etcd.txn(create(key, "v")).await {
            if r.succeeded {
                return r.header.unwrap().revision;
            }
            // An earlier attempt landed: its revision.
            let got = etcd
                .range(RangeRequest {
                    key: key.into(),
                    ..Default::default()
                })
                .await;
            if let Ok(got) = got {
                return got.kvs[0].create_revision;
            }
        }
        assert!(Instant::now() < until, "no write within 15 s");
    }
}

/// Put `key` only if it does not exist.
fn create(key: &str, value: &str) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Create as i32,
            key: key.into(),
            target_union: Some(compare::TargetUnion::CreateRevision(0)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put(key, value, 0))),
        }],
        failure: vec![],
    }
}

async fn get(etcd: &Etcd, key: &str, revision: i64) -> Option<String> {
    let r = etcd
        .range(RangeRequest {
            key: key.into(),
            revision,
            ..Default::default()
        })
        .await
        .unwrap();
    r.kvs
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

#[tokio::test]
async fn compare_and_swap_and_a_revoked_lease() {
    let cluster = EtcdCluster::start("client-cas", 3);
    let etcd = Etcd::new(cluster.endpoints(), DEADLINE).unwrap();

    let first = etcd.txn(create("/hb-t/m", "a")).await.unwrap();
    let second = etcd.txn(create("/hb-t/m", "b")).await.unwrap();
    assert!(first.succeeded && !second.succeeded);
    assert_eq!(get(&etcd, "/hb-t/m", 0).await.as_deref(), Some("a"));

    let (lease, ttl) = etcd.lease_grant(Duration::from_secs(5)).await.unwrap();
    assert_eq!(ttl, Duration::from_secs(5));
    etcd.put(put("/hb-t/l1", "x", lease)).await.unwrap();
    let before = etcd.put(put("/hb-t/l2", "y", lease)).await.unwrap();
    let at = before.header.unwrap().revision;
    etcd.lease_revoke(lease).await.unwrap();
    // Both keys went in the one revision after the last put.
    assert_eq!(get(&etcd, "/hb-t/l1", at).await.as_deref(), Some("x"));
    assert_eq!(get(&etcd, "/hb-t/l2", at).await.as_deref(), Some("y"));
    assert_eq!(get(&etcd, "/hb-t/l1", at + 1).await, None);
    assert_eq!(get(&etcd, "/hb-t/l2", at + 1).await, None);
    assert_eq!(etcd.lease_ttl(lease).await.unwrap().ttl, -1);
}

#[tokio::test]
async fn the_keeper_keeps_its_lease_through_a_frozen_leader() {
    let cluster = EtcdCluster::start("client-keeper", 3);
    let leader = cluster.leader().expect("a leader");
    // The keeper starts on the leader: the case that lost leases.
    let mut endpoints = cluster.endpoints().to_vec();
    endpoints.rotate_left(leader);
    let etcd = Arc::new(Etcd::new(&endpoints, DEADLINE).unwrap());
    let ttl = Duration::from_secs(3);
    let granted = Instant::now();
    let (lease, _) = etcd.lease_grant(ttl).await.unwrap();
    etcd.put(put("/hb-t/replica", "me", lease)).await.unwrap();
    let keeper = LeaseKeeper::start(etcd.clone(), lease, ttl, granted);

    cluster.signal(leader, "-STOP");
    // Frozen for more than two TTLs.
    tokio::time::sleep(ttl * 2 + Duration::from_secs(1)).await;
    let others: Vec<String> = endpoints[1..].to_vec();
    let check = Etcd::new(&others, DEADLINE).unwrap();
    let left = check.lease_ttl(lease).await.unwrap().ttl;
    cluster.signal(leader, "-CONT");
    let state = keeper.state();
    assert!(!state.lost, "{state:?}");
    assert!(left > 0, "the lease is still alive ({left} s left)");
    assert!(state.missed >= 1, "the keeper moved off the frozen member");
    assert!(
        Instant::now().saturating_duration_since(state.acked) < ttl,
        "{state:?}"
    );
    assert_eq!(get(&check, "/hb-t/replica", 0).await.as_deref(), Some("me"));
}

/// Receives the next mirrored item within a bound.
async fn next(
    feed: &mut tokio::sync::mpsc::Receiver<heartbeat::etcd::Mirrored>,
) -> heartbeat::etcd::Mirrored {
    tokio::time::timeout(Duration::from_secs(15), feed.recv())
        .await
        .expect("a mirrored item within 15 s")
        .expect("the mirror runs")
}

/// The next change, skipping progress.
async fn change(
    feed: &mut tokio::sync::mpsc::Receiver<heartbeat::etcd::Mirrored>,
) -> heartbeat::etcd::Mirrored {
    loop {
        match next(feed).await {
            heartbeat::etcd::Mirrored::Progress(_) => continue,
            other => return other,
        }
    }
}

#[tokio::test]
async fn the_mirror_delivers_every_change_once_in_order_through_a_frozen_member_and_compaction() {
    use heartbeat::etcd::{Mirrored, mirror};
    let cluster = EtcdCluster::start("client-mirror", 3);
    // The mirror starts on member 0, which will freeze.
    let etcd = Arc::new(Etcd::new(cluster.endpoints(), DEADLINE).unwrap());
    let writer = Etcd::new(&cluster.endpoints()[1..], DEADLINE).unwrap();
    writer.put(put("/hb-m/a", "1", 0)).await.unwrap();
    writer
        .put(put("/other/x", "not mirrored", 0))
        .await
        .unwrap();
    let mut feed = mirror(etcd.clone(), b"/hb-m/".to_vec());
    let Mirrored::Snapshot { revision, kvs } = next(&mut feed).await else {
        panic!("a snapshot first");
    };
    assert_eq!(kvs.len(), 1);
    assert_eq!(kvs[0].key, b"/hb-m/a");
    let b = writer.put(put("/hb-m/b", "2", 0)).await.unwrap();
    let Mirrored::Put(kv) = change(&mut feed).await else {
        panic!("the put of b");
    };
    assert_eq!(
        (kv.key.as_slice(), kv.mod_revision),
        (&b"/hb-m/b"[..], b.header.unwrap().revision)
    );
    assert!(kv.mod_revision > revision);

    // Freeze the member the mirror watches on; write meanwhile.
    cluster.signal(0, "-STOP");
    let mut revisions = vec![];
    for i in 0..5 {
        revisions.push(create_retry(&writer, &format!("/hb-m/k{i}")).await);
    }
    let seen: Vec<i64> = {
        let mut seen = vec![];
        while seen.len() < 5 {
            match change(&mut feed).await {
                Mirrored::Put(kv) => seen.push(kv.mod_revision),
                other => panic!("expected the puts, got {other:?}"),
            }
        }
        seen
    };
    cluster.signal(0, "-CONT");
    assert_eq!(
        seen, revisions,
        "every change once, in order, after moving off the frozen member"
    );

    // A delete, then compaction past where a stopped watch would resume:
    // the mirror takes a fresh snapshot.
    let d = writer
        .delete(heartbeat::etcd::pb::etcdserverpb::DeleteRangeRequest {
            key: b"/hb-m/a".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        change(&mut feed).await,
        Mirrored::Delete {
            key: b"/hb-m/a".to_vec(),
            revision: d.header.unwrap().revision
        }
    );

    // Compaction past where a mirror would resume: a second mirror that
    // can only use member 2 loses it for longer than its progress deadline
    // (twice the call deadline) while the history is compacted to the head;
    // when the member is back it cannot resume, and takes a fresh snapshot
    // that has everything.
    let only = Arc::new(Etcd::new(&cluster.endpoints()[2..], DEADLINE).unwrap());
    let mut feed = mirror(only, b"/hb-m/".to_vec());
    assert!(matches!(next(&mut feed).await, Mirrored::Snapshot { .. }));
    cluster.signal(2, "-STOP");
    let on = 2;
    let writer = Etcd::new(&cluster.endpoints()[..2], DEADLINE).unwrap();
    let mut head = 0;
    for i in 0..3 {
        head = create_retry(&writer, &format!("/hb-m/late{i}")).await;
    }
    writer.compact(head).await.unwrap();
    tokio::time::sleep(DEADLINE * 3).await;
    cluster.signal(on, "-CONT");
    // Either the member compacted before it served the new watch (then a
    // fresh snapshot with everything), or it served it first (then the three
    // puts, once, in order): both keep the mirror's promise.
    match change(&mut feed).await {
        Mirrored::Snapshot { revision, kvs } => {
            assert!(revision >= head);
            let keys: Vec<String> = kvs
                .iter()
                .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
                .collect();
            assert_eq!(
                keys,
                [
                    "/hb-m/b",
                    "/hb-m/k0",
                    "/hb-m/k1",
                    "/hb-m/k2",
                    "/hb-m/k3",
                    "/hb-m/k4",
                    "/hb-m/late0",
                    "/hb-m/late1",
                    "/hb-m/late2"
                ]
            );
        }
        Mirrored::Put(first) => {
            let mut keys = vec![first.key];
            while keys.len() < 3 {
                match change(&mut feed).await {
                    Mirrored::Put(kv) => keys.push(kv.key),
                    other => panic!("the remaining puts, got {other:?}"),
                }
            }
            assert_eq!(
                keys,
                [
                    b"/hb-m/late0".to_vec(),
                    b"/hb-m/late1".to_vec(),
                    b"/hb-m/late2".to_vec()
                ]
            );
        }
        other => panic!("a snapshot or the puts, got {other:?}"),
    }
}
