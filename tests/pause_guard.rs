//! The local-pause guard, with the fault caused for real: 200 members ping a
//! `heartbeat serve` process that is then SIGSTOPped for twice the timeout.
//! After SIGCONT no member goes DEAD for the server's own silence, and a
//! member that really stopped during the pause goes DEAD within one timeout
//! of the resume.

mod common;

use std::time::Duration;

use common::process::Proc;
use common::*;
use heartbeat::pb::heartbeat::v1::{EventType, MemberState, heartbeat_client::HeartbeatClient};

const TIMEOUT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_of_the_server_kills_no_member() {
    let mut p = Proc::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--default-interval",
        "100ms",
        "--default-timeout",
        "1s",
        "--drain",
        "100ms",
    ]);
    let addr = p.logged_addr("listening").await;
    let url = format!("http://{addr}");
    let mut hb = HeartbeatClient::new(connect_addr(&addr).await);
    let mut members = spawn_fleet(&url, "fleet", 200);
    all_online(&members).await;
    let mut events = Events::open(&mut hb, "", 0).await;
    let (rows, _) = events.snapshot().await;
    assert_eq!(rows.len(), 200);

    p.signal("-STOP");
    // The fault lasts twice the timeout. One member really stops meanwhile.
    let stopped = members.pop().unwrap();
    drop(stopped);
    tokio::time::sleep(2 * TIMEOUT).await;
    p.signal("-CONT");
    let resumed = tokio::time::Instant::now();

    let seen = events.until(EventType::Dead, "m0199").await;
    let dead_after = resumed.elapsed();
    let others_dead: Vec<&str> = seen
        .iter()
        .filter(|e| kind_of(e) == EventType::Dead)
        .map(|e| e.member.as_ref().unwrap().instance.as_str())
        .filter(|i| *i != "m0199")
        .collect();
    assert!(
        others_dead.is_empty(),
        "{} members declared DEAD for the server's own pause: {others_dead:?}",
        others_dead.len()
    );
    // One timeout (plus generous room for a loaded machine) after the resume.
    assert!(
        dead_after < TIMEOUT + Duration::from_secs(2),
        "m199 DEAD {dead_after:?} after resume"
    );
    p.wait_log("the stall", |v| {
        v["message"].as_str().is_some_and(|m| m.contains("stalled"))
    })
    .await;

    all_online(&members).await;
    let listed = common::members(&mut hb).await;
    let alive = listed
        .iter()
        .filter(|m| m.state == MemberState::Alive as i32)
        .count();
    let dead: Vec<&str> = listed
        .iter()
        .filter(|m| m.state == MemberState::Dead as i32)
        .map(|m| m.instance.as_str())
        .collect();
    assert_eq!((alive, dead), (199, vec!["m0199"]));
    drop(members);
    p.signal("-TERM");
    assert_eq!(p.wait_exit(WAIT).await.code(), Some(0));
}

/// While the server is stopped the kernel still completes TCP handshakes
/// into the listener's accept queue, as deep as `serve` asks for (4096,
/// clamped by `net.core.somaxconn`). A queue of std's 128 dropped the SYNs
/// of the rest of a fleet reconnecting together, and each dropped member
/// waited a one-second SYN retransmit: the length of a short timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_queues_a_whole_reconnecting_fleet() {
    const FLEET: usize = 600;
    let mut p = Proc::spawn(&["serve", "--listen", "127.0.0.1:0", "--log-format", "json"]);
    let addr = p.logged_addr("listening").await;
    p.signal("-STOP");
    let connects = (0..FLEET).map(|_| tokio::net::TcpStream::connect(addr.clone()));
    let conns = within(
        "600 TCP handshakes with a stopped server",
        futures_util::future::join_all(connects),
    )
    .await;
    let failed = conns.iter().filter(|c| c.is_err()).count();
    assert_eq!(failed, 0, "connections refused by a stopped server");
    p.signal("-CONT");
    drop(conns);
    p.signal("-TERM");
    assert_eq!(p.wait_exit(WAIT).await.code(), Some(0));
}
