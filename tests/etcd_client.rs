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
