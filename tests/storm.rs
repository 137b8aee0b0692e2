//! A reconnect storm: 2,000 members (each with its own connection) lose the
//! server to a `kill -9`; it restarts on the same port with its state dir.
//! They all get back in (join rate limit and jittered backoff doing their
//! part) and none is declared DEAD.

mod common;

use std::time::Duration;

use common::process::Proc;
use common::*;
use heartbeat::client::{Client, ClientState};
use heartbeat::pb::heartbeat::v1::{EventType, heartbeat_client::HeartbeatClient};

const MEMBERS: usize = 2_000;

fn serve(addr: &str, dir: &str) -> Proc {
    Proc::serve_with_state(addr, dir, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_members_reconnect_after_a_restart_and_none_dies() {
    let dir = temp_dir("storm");
    let dir_s = dir.to_str().unwrap().to_owned();
    let addr = free_addr();
    let mut p = serve(&addr, &dir_s);
    p.logged_addr("listening").await;
    let members = spawn_fleet(&addr, "storm", MEMBERS);
    let all_online = |members: &Vec<Client>| {
        let rxs: Vec<_> = members.iter().map(Client::subscribe).collect();
        async move {
            for mut rx in rxs {
                rx.wait_for(|s| s.state == ClientState::Online)
                    .await
                    .unwrap();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all_online(&members))
        .await
        .expect("all joined");
    p.wait_log("all saved", |v| {
        v["message"] == "state saved" && v["members"] == MEMBERS
    })
    .await;

    let before: std::collections::HashMap<String, u64> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("m{i:04}"), m.status().session.unwrap()))
        .collect();
    p.signal("-KILL");
    let _ = p.wait_exit(WAIT).await;
    let mut p = serve(&addr, &dir_s);
    p.logged_addr("listening").await;
    let restarted = tokio::time::Instant::now();
    let mut hb = HeartbeatClient::new(connect_addr(&addr).await);
    let mut events = Events::open(&mut hb, "", 0).await;
    let (rows, _) = events.snapshot().await;
    assert_eq!(rows.len(), MEMBERS);
    // Every member is back with a new session (in a snapshot row or a JOINED
    // event; a watcher may also be re-sent a snapshot), and nobody dies.
    let mut rejoined = std::collections::HashSet::new();
    let note = |m: &heartbeat::pb::heartbeat::v1::Member,
                rejoined: &mut std::collections::HashSet<String>| {
        assert_ne!(
            m.state,
            heartbeat::pb::heartbeat::v1::MemberState::Dead as i32,
            "{} DEAD",
            m.instance
        );
        if before[&m.instance] != m.session {
            rejoined.insert(m.instance.clone());
        }
    };
    for row in &rows {
        note(row, &mut rejoined);
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        while rejoined.len() < MEMBERS {
            let e = events.next().await;
            assert_ne!(
                kind_of(&e),
                EventType::Dead,
                "declared DEAD during the storm: {e:?}"
            );
            if let Some(m) = &e.member {
                note(m, &mut rejoined);
            }
        }
    })
    .await
    .expect("every member rejoined");
    eprintln!(
        "storm: {MEMBERS} members back in {:?} after the restart",
        restarted.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(60), all_online(&members))
        .await
        .expect("all ONLINE");
    drop(members);
    p.signal("-TERM");
    assert_eq!(p.wait_exit(WAIT).await.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
