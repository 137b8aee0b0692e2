//! `serve --state-dir`: a `kill -9` with 200 members and a restart on the same
//! port expires nobody who comes back (the service's health never leaves
//! SERVING), and members whose agents died too go DEAD one timeout later. A
//! corrupt state file is reported, kept aside, and the server starts empty.

mod common;

use common::process::Proc;
use common::*;
use heartbeat::pb::health::v1::{HealthCheckRequest, health_client::HealthClient};
use heartbeat::pb::heartbeat::v1::{EventType, MemberState};

fn serve(addr: &str, dir: &str) -> Proc {
    Proc::serve_with_state(
        addr,
        dir,
        &["--default-interval", "100ms", "--default-timeout", "1s"],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_keeps_the_fleet() {
    let dir = temp_dir("restart");
    let dir_s = dir.to_str().unwrap().to_owned();
    let addr = free_addr();
    let mut p = serve(&addr, &dir_s);
    p.logged_addr("listening").await;
    let mut members = spawn_fleet(&addr, "fleet", 200);
    all_online(&members).await;
    p.wait_log("all 200 saved", |v| {
        v["message"] == "state saved" && v["members"] == 200
    })
    .await;

    p.signal("-KILL");
    let _ = p.wait_exit(WAIT).await;
    // The agents of m0190..m0199 die too.
    members.truncate(190);

    let mut p = serve(&addr, &dir_s);
    p.logged_addr("listening").await;
    let restored = p
        .wait_log("restore", |v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("restored"))
        })
        .await;
    assert_eq!(restored["members"], 200);
    let channel = connect_addr(&addr).await;
    let mut health = HealthClient::new(channel.clone());
    let mut watch = within(
        "Watch",
        health.watch(HealthCheckRequest {
            service: "fleet".into(),
        }),
    )
    .await
    .unwrap()
    .into_inner();
    let statuses = tokio::spawn(async move {
        let mut seen = vec![];
        while let Ok(Some(m)) = watch.message().await {
            seen.push(m.status);
        }
        seen
    });
    let mut hb = heartbeat::pb::heartbeat::v1::heartbeat_client::HeartbeatClient::new(channel);
    let mut events = Events::open(&mut hb, "", 0).await;
    let (rows, _) = events.snapshot().await;
    assert_eq!(rows.len(), 200, "every member restored");
    assert!(rows.iter().all(|m| m.state == MemberState::Suspect as i32 || m.state == MemberState::Alive as i32));

    let mut dead = vec![];
    while dead.len() < 10 {
        let e = events.next().await;
        if kind_of(&e) == EventType::Dead {
            dead.push(e.member.unwrap().instance);
        }
    }
    dead.sort();
    let want: Vec<String> = (190..200).map(|i| format!("m{i:04}")).collect();
    assert_eq!(dead, want, "only the members whose agents died");
    all_online(&members).await;
    let listed = common::members(&mut hb).await;
    assert_eq!(
        listed
            .iter()
            .filter(|m| m.state == MemberState::Alive as i32)
            .count(),
        190
    );
    drop(members);
    p.signal("-TERM");
    assert_eq!(p.wait_exit(WAIT).await.code(), Some(0));
    let seen = within("watch end", statuses).await.unwrap();
    assert_eq!(seen.first(), Some(&1), "SERVING from the first message");
    // Until shutdown, never NOT_SERVING (the shutdown itself ends the watch).
    assert!(
        seen.iter().all(|s| *s == 1),
        "service health dropped: {seen:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_corrupt_state_file_is_kept_aside_and_the_server_starts_empty() {
    let dir = temp_dir("corrupt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("members.json"),
        b"{\"version\":1,\"members\":[{\"service\":",
    )
    .unwrap();
    let mut p = serve("127.0.0.1:0", dir.to_str().unwrap());
    let addr = p.logged_addr("listening").await;
    let err = p
        .wait_log("the corrupt file report", |v| v["level"] == "ERROR")
        .await;
    assert!(
        err["message"].as_str().unwrap().contains("corrupt"),
        "{err}"
    );
    let mut health = HealthClient::new(connect_addr(&addr).await);
    assert_eq!(check(&mut health, "").await, Ok(1));
    let kept: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("members.json.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "a copy of the bad file is kept");
    p.signal("-TERM");
    assert_eq!(p.wait_exit(WAIT).await.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
