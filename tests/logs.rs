//! `serve --log-format json`: one JSON line per member state change, with
//! service, instance, session and reason; never one per ping.

mod common;

use common::process::Proc;
use common::*;
use heartbeat::pb::heartbeat::v1::EventType;

#[tokio::test]
async fn one_json_line_per_transition_with_reason() {
    let mut p = Proc::spawn(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--default-interval",
        "100ms",
        "--default-timeout",
        "300ms",
        "--retention",
        "200ms",
    ]);
    let grpc = p.logged_addr("listening").await;
    let mut client = heartbeat::pb::heartbeat::v1::heartbeat_client::HeartbeatClient::new(
        connect_addr(&grpc).await,
    );
    let mut events = Events::open(&mut client, "", 0).await;
    events.snapshot().await;
    let (mut a, w) = Beat::join(&mut client, "web", "a").await;
    for seq in 1..=20 {
        a.ping(seq).await;
    }
    drop(a);
    events.until(EventType::Removed, "a").await;
    let (mut b, _) = Beat::join(&mut client, "web", "b").await;
    b.send(leave_req()).await;
    b.expect_ok_end().await;
    events.until(EventType::Left, "b").await;
    p.signal("-TERM");

    let mut changes = vec![];
    while let Some(line) = p.logs.recv().await {
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        if v["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("member "))
        {
            changes.push(v);
        }
    }
    let summary: Vec<(String, String, String)> = changes
        .iter()
        .map(|v| {
            (
                v["message"].as_str().unwrap().to_owned(),
                v["instance"].as_str().unwrap().to_owned(),
                v["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("member joined", "a", "join"),
        ("member updated", "a", "late"),
        ("member dead", "a", "timeout"),
        ("member removed", "a", "retention"),
        ("member joined", "b", "join"),
        ("member left", "b", "leave"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(m, i, r)| (m.to_string(), i.to_string(), r.to_string()))
        .collect();
    assert_eq!(summary, want, "20 pings wrote no line");
    assert_eq!(changes[0]["service"], "web");
    assert_eq!(changes[0]["session"].as_u64(), Some(w.session));
    assert_eq!(p.wait_exit(WAIT).await.code(), Some(0));
}
