//! The cluster's records on a real 3-member etcd: the epoch is written
//! once, a replica registers once per lease, and every member write is
//! fenced on the member's revision and on the writer's replica key, so a
//! replica whose lease ended (or that registered anew) changes nothing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::etcd::EtcdCluster;
use heartbeat::cluster::store::{Expect, Store, StoredMember, StoredReplica, Written};
use heartbeat::etcd::Etcd;
use heartbeat::etcd::pb::etcdserverpb::RangeRequest;

fn member(owner: &str, state: i32) -> StoredMember {
    StoredMember {
        state,
        status: 1,
        owner: owner.into(),
        interval_ms: 1000,
        timeout_ms: 3000,
        ..Default::default()
    }
}

async fn replica(store: &Store, etcd: &Etcd, id: &str) -> (heartbeat::cluster::store::Fence, i64) {
    let (lease, _) = etcd.lease_grant(Duration::from_secs(10)).await.unwrap();
    let stored = StoredReplica {
        advertise: format!("{id}:50051"),
        version: "test".into(),
        lease,
    };
    let fence = store
        .register(id, &stored)
        .await
        .unwrap()
        .expect("a fresh id");
    (fence, lease)
}

async fn mod_revision(etcd: &Etcd, key: &[u8]) -> Option<i64> {
    let r = etcd
        .range(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    r.kvs.first().map(|kv| kv.mod_revision)
}

#[tokio::test]
async fn member_writes_are_fenced_on_the_record_and_on_the_writer() {
    let cluster = EtcdCluster::start("store", 3);
    let etcd = Arc::new(Etcd::new(cluster.endpoints(), Duration::from_millis(1500)).unwrap());
    let store = Store::new(etcd.clone(), "/hb-test/");

    // The epoch is the first replica's; later ones read it.
    assert_eq!(store.epoch(100).await.unwrap(), 100);
    assert_eq!(store.epoch(200).await.unwrap(), 100);

    let (a, lease_a) = replica(&store, &etcd, "a").await;
    let again = StoredReplica {
        lease: lease_a,
        ..Default::default()
    };
    assert_eq!(
        store.register("a", &again).await.unwrap(),
        None,
        "one key per id"
    );

    let key = store.member_key("web", "w-1");
    let Written::Committed(r1) = store
        .write(&a, &key, Expect::Absent, Some(&member("a", 1)))
        .await
        .unwrap()
    else {
        panic!("a new identity is created");
    };
    // A second create, and a write from a stale view: conflicts that return
    // the record as it is.
    match store
        .write(&a, &key, Expect::Absent, Some(&member("a", 1)))
        .await
        .unwrap()
    {
        Written::Conflict(Some(kv)) => assert_eq!(kv.mod_revision, r1),
        other => panic!("{other:?}"),
    }
    let Written::Committed(r2) = store
        .write(&a, &key, Expect::At(r1), Some(&member("a", 2)))
        .await
        .unwrap()
    else {
        panic!("a write from the current view lands");
    };
    match store
        .write(&a, &key, Expect::At(r1), Some(&member("a", 1)))
        .await
        .unwrap()
    {
        Written::Conflict(Some(kv)) => {
            assert_eq!(kv.mod_revision, r2);
            let stored: StoredMember = prost::Message::decode(kv.value.as_slice()).unwrap();
            assert_eq!(stored.state, 2);
        }
        other => panic!("{other:?}"),
    }

    // Replica b takes the member over; a's lease ends: a changes nothing,
    // even with the record's current revision.
    let (b, _) = replica(&store, &etcd, "b").await;
    let Written::Committed(r3) = store
        .write(&b, &key, Expect::At(r2), Some(&member("b", 1)))
        .await
        .unwrap()
    else {
        panic!("b takes over");
    };
    etcd.lease_revoke(lease_a).await.unwrap();
    assert_eq!(
        store
            .write(&a, &key, Expect::At(r3), Some(&member("a", 3)))
            .await
            .unwrap(),
        Written::Fenced
    );
    assert_eq!(
        store.write(&a, &key, Expect::At(r3), None).await.unwrap(),
        Written::Fenced
    );
    assert_eq!(
        mod_revision(&etcd, &key).await,
        Some(r3),
        "nothing a wrote landed"
    );

    // a registers anew (a new key, a new create_revision): its old fence
    // still fails, the new one works.
    let (a2, _) = replica(&store, &etcd, "a").await;
    assert_ne!(a2.reg_rev, a.reg_rev);
    assert_eq!(
        store
            .write(&a, &key, Expect::At(r3), Some(&member("a", 3)))
            .await
            .unwrap(),
        Written::Fenced
    );
    let removed = store.write(&a2, &key, Expect::At(r3), None).await.unwrap();
    assert!(matches!(removed, Written::Committed(_)), "{removed:?}");
    assert_eq!(mod_revision(&etcd, &key).await, None);
}
