//! SPEC §7's rules, each on a real etcd with replicas in this process:
//! one order on every replica (§7.3), no etcd write per ping (§7.2), the
//! same identity joining on two replicas at once (§7.4), and what a replica
//! does when it cannot reach etcd at start (§7.6).

mod common;

use std::time::Duration;

use common::cluster::{check, health_is, list_of, replica_cfg};
use common::etcd::EtcdCluster;
use common::{Beat, TestServer, WAIT, within};
use heartbeat::client::{Client, ClientConfig};
use heartbeat::pb::health::v1::health_check_response::ServingStatus;
use heartbeat::pb::heartbeat::v1::{
    EventType, Join, MemberEvent, WatchMembersRequest, beat_response,
};
use tokio::time::Instant;
use tonic::Code;

async fn replica(etcd: &EtcdCluster, prefix: &str) -> TestServer {
    let s = TestServer::with(replica_cfg(etcd.endpoints(), prefix)).await;
    health_is(&s, "heartbeat.v1.Heartbeat", ServingStatus::Serving).await;
    s
}

type Key = (u64, i32, String, u64);

fn key(e: &MemberEvent) -> Key {
    let m = e.member.as_ref().unwrap();
    (e.revision, e.r#type, m.instance.clone(), m.session)
}

/// Every event of `server`'s WatchMembers after its snapshot, collected.
async fn record(server: &TestServer) -> tokio::sync::mpsc::UnboundedReceiver<Key> {
    let mut w = server
        .client()
        .await
        .watch_members(WatchMembersRequest::default())
        .await
        .unwrap()
        .into_inner();
    loop {
        let e = within("snapshot", w.message()).await.unwrap().unwrap();
        if e.r#type == EventType::SnapshotEnd as i32 {
            break;
        }
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(e)) = w.message().await {
            if tx.send(key(&e)).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test]
async fn every_replica_delivers_the_same_sequence() {
    let etcd = EtcdCluster::start("order", 1);
    let replicas = [
        replica(&etcd, "/hb-order/").await,
        replica(&etcd, "/hb-order/").await,
        replica(&etcd, "/hb-order/").await,
    ];
    let mut feeds = Vec::new();
    for r in &replicas {
        feeds.push(record(r).await);
    }
    // 30 members join round robin; a third leave, a third turn NOT_SERVING.
    let mut streams = Vec::new();
    for i in 0..30 {
        let mut client = replicas[i % 3].client().await;
        let (mut b, _) = Beat::join(&mut client, "web", &format!("m{i:02}")).await;
        b.ping(1).await;
        streams.push(b);
    }
    for (i, b) in streams.iter_mut().enumerate() {
        match i % 3 {
            0 => {
                b.send(common::leave_req()).await;
                b.expect_ok_end().await;
            }
            1 => {
                b.send(common::ping_status(2, 2)).await;
                b.pong().await;
            }
            _ => {}
        }
    }
    // 30 JOINED, 10 LEFT, 10 UPDATED: 50 events on every replica.
    let mut seqs = Vec::new();
    for feed in &mut feeds {
        let mut seq = Vec::new();
        while seq.len() < 50 {
            seq.push(within("an event", feed.recv()).await.unwrap());
        }
        seqs.push(seq);
    }
    assert!(
        seqs[0].windows(2).all(|w| w[0].0 < w[1].0),
        "revisions strictly increase"
    );
    assert_eq!(
        seqs[0], seqs[1],
        "replicas 1 and 2 delivered the same sequence"
    );
    assert_eq!(
        seqs[0], seqs[2],
        "replicas 1 and 3 delivered the same sequence"
    );
    let lists: Vec<_> = {
        let mut v = Vec::new();
        for r in &replicas {
            let l = list_of(r).await;
            v.push(
                l.members
                    .into_iter()
                    .map(|m| (m.instance, m.state, m.status, m.session))
                    .collect::<Vec<_>>(),
            );
        }
        v
    };
    assert_eq!(lists[0], lists[1]);
    assert_eq!(lists[0], lists[2]);
    drop(streams);
    for r in replicas {
        r.stop().await;
    }
}

#[tokio::test]
async fn pings_never_write_to_etcd() {
    let etcd = EtcdCluster::start("pings", 1);
    let a = replica(&etcd, "/hb-pings/").await;
    let b = replica(&etcd, "/hb-pings/").await;
    let mut clients = Vec::new();
    for i in 0..500 {
        let server = if i % 2 == 0 { &a } else { &b };
        let cfg = ClientConfig::new([server.addr.to_string()], "fleet", format!("m{i:03}"))
            .interval(Duration::from_secs(1))
            .timeout(Duration::from_secs(5));
        clients.push(Client::spawn(cfg).unwrap());
    }
    for c in &clients {
        let mut s = c.subscribe();
        within(
            "ONLINE",
            s.wait_for(|s| s.state == heartbeat::client::ClientState::Online),
        )
        .await
        .unwrap();
    }
    let listed = || async { list_of(&a).await.members.len() };
    let until = Instant::now() + WAIT;
    while listed().await < 500 {
        assert!(Instant::now() < until, "500 members listed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = common::cluster::etcd_revision(&etcd);
    // 30 s of pings: 15,000 of them.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after = common::cluster::etcd_revision(&etcd);
    assert_eq!(
        after, before,
        "500 members pinging for 30 s wrote nothing to etcd"
    );
    drop(clients);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_same_identity_joining_on_two_replicas_at_once_leaves_one_session() {
    let etcd = EtcdCluster::start("double", 1);
    let a = replica(&etcd, "/hb-double/").await;
    let b = replica(&etcd, "/hb-double/").await;
    let (ca, cb) = (a.client().await, b.client().await);
    let mut pairs = Vec::new();
    for i in 0..100 {
        let (mut ca, mut cb) = (ca.clone(), cb.clone());
        pairs.push(tokio::spawn(async move {
            let join = Join {
                service: "dj".into(),
                instance: format!("i{i:03}"),
                ..Default::default()
            };
            let mut on_a = Beat::open(&mut ca).await;
            let mut on_b = Beat::open(&mut cb).await;
            tokio::join!(
                on_a.send(common::join_with(join.clone())),
                on_b.send(common::join_with(join))
            );
            let (ra, rb) = tokio::join!(on_a.recv(), on_b.recv());
            let session = |r: &Result<
                Option<heartbeat::pb::heartbeat::v1::BeatResponse>,
                tonic::Status,
            >| match r {
                Ok(Some(resp)) => match &resp.kind {
                    Some(beat_response::Kind::Welcome(w)) => Some(w.session),
                    _ => None,
                },
                _ => None,
            };
            (session(&ra), session(&rb), on_a, on_b)
        }));
    }
    let mut winners = Vec::new();
    for p in pairs {
        let (sa, sb, on_a, on_b) = within("a pair", p).await.unwrap();
        // The later session wins; the earlier stream ends ABORTED.
        let (winner, mut survivor, mut loser) = match (sa, sb) {
            (Some(x), Some(y)) if x > y => (x, on_a, Some(on_b)),
            (Some(_), Some(y)) => (y, on_b, Some(on_a)),
            (Some(x), None) => (x, on_a, None),
            (None, Some(y)) => (y, on_b, None),
            (None, None) => panic!("neither Join was welcomed"),
        };
        if let Some(l) = &mut loser {
            l.expect_status(Code::Aborted).await;
        }
        survivor.ping(1).await;
        winners.push((winner, survivor));
    }
    for r in [&a, &b] {
        let until = Instant::now() + WAIT;
        loop {
            let l = list_of(r).await;
            let ok = l.members.len() == 100
                && l.members
                    .iter()
                    .zip(&winners)
                    .all(|(m, (w, _))| m.session == *w);
            if ok {
                break;
            }
            assert!(
                Instant::now() < until,
                "every replica lists the surviving session of each"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(winners);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_replica_started_while_etcd_is_unreachable_is_alive_but_takes_no_joins() {
    // Nothing listens on this port until the etcd below starts on it.
    let etcd_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoints = vec![etcd_port.to_string()];
    let s = TestServer::with(replica_cfg(&endpoints, "/hb-late/")).await;
    health_is(&s, "", ServingStatus::Serving).await;
    assert_eq!(
        check(&s, "heartbeat.v1.Heartbeat").await,
        Some(ServingStatus::NotServing as i32)
    );
    let mut client = s.client().await;
    let mut beat = Beat::open(&mut client).await;
    beat.send(common::join_req("web", "early")).await;
    let msg = beat.expect_error(Code::Unavailable).await;
    assert!(msg.contains("registry unavailable"), "{msg}");
    s.stop().await;
}
