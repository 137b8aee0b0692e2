//! The cluster tests' etcd fixture itself: three members on loopback elect
//! a leader, a write through one member is read through another, and a
//! frozen leader is replaced. This is the part of the cluster suite that
//! proves the test command installed a working etcd.

mod common;

use std::time::Duration;

use tokio::time::Instant;

use common::etcd::EtcdCluster;

#[test]
fn three_members_elect_a_leader_and_replace_a_frozen_one() {
    let started = Instant::now();
    let etcd = EtcdCluster::start("fixture", 3);
    eprintln!("3 etcd members ready in {:?}", started.elapsed());
    let [a, _, c] = [0, 1, 2].map(|i| etcd.endpoints()[i].clone());
    etcd.etcdctl_at(&a, &["put", "/hb-test/k", "v1"]).unwrap();
    let got = etcd.etcdctl_at(&c, &["get", "/hb-test/k", "--print-value-only"]);
    assert_eq!(got.unwrap().trim(), "v1");

    let leader = etcd.leader().expect("a leader");
    etcd.signal(leader, "-STOP");
    let others: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| etcd.endpoints()[i].clone())
        .collect();
    let others = others.join(",");
    // A write through the other two succeeds once they elect a new leader.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        match etcd.etcdctl_at(&others, &["put", "/hb-test/k", "v2"]) {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < until, "no new leader: {e}"),
        }
    }
    etcd.signal(leader, "-CONT");
}
