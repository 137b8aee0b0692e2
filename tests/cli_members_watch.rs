//! `heartbeat members` and `heartbeat watch`: readable tables, JSON lines
//! that parse, and a member seen joining and dying; watch resumes after the
//! server restarts.

mod common;

use common::process::Proc;
use common::*;
use serde_json::Value;

#[tokio::test]
async fn members_table_and_json() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let (_a, _) = Beat::join_with(
        &mut client,
        heartbeat::pb::heartbeat::v1::Join {
            service: "web".into(),
            instance: "a-1".into(),
            labels: [("zone".to_owned(), "z1".to_owned())].into(),
            ..Default::default()
        },
    )
    .await;
    let (_b, _) = Beat::join(&mut client, "db", "b-1").await;

    let mut p = Proc::spawn(&["members", "--server", &server.url()]);
    let header = p.next_out().await;
    for col in [
        "SERVICE",
        "INSTANCE",
        "STATE",
        "STATUS",
        "LAST SEEN",
        "SESSION",
        "LABELS",
    ] {
        assert!(header.contains(col), "{header}");
    }
    let db = p.next_out().await;
    let web = p.next_out().await;
    assert!(
        db.starts_with("db ") && db.contains("b-1") && db.contains("ALIVE"),
        "{db}"
    );
    assert!(
        web.contains("zone=z1") && web.contains("SERVING") && web.contains("ago"),
        "{web}"
    );
    assert_eq!(p.wait_exit(WAIT).await.code(), Some(0));

    let mut p = Proc::spawn(&[
        "members",
        "--server",
        &server.url(),
        "--service",
        "web",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&p.next_out().await).expect("JSON line");
    assert_eq!(v["service"], "web");
    assert_eq!(v["instance"], "a-1");
    assert_eq!(v["state"], "ALIVE");
    assert_eq!(v["status"], "SERVING");
    assert_eq!(v["labels"]["zone"], "z1");
    assert_eq!(v["interval"], "1s");
    assert!(v["last_seen_ago_ms"].is_u64());
    assert!(p.out.recv().await.is_none(), "one line per member");
    assert_eq!(p.wait_exit(WAIT).await.code(), Some(0));
    server.stop().await;
}

#[tokio::test]
async fn members_json_shows_a_member_dying() {
    let server = TestServer::with(fast()).await;
    let mut client = server.client().await;
    let mut events = Events::open(&mut client, "", 0).await;
    events.snapshot().await;
    let (beat, _) = Beat::join(&mut client, "web", "a").await;
    let mut p = Proc::spawn(&["members", "--server", &server.url(), "--json"]);
    assert_eq!(json_line(&mut p).await["state"], "ALIVE");
    drop(beat);
    events
        .until(heartbeat::pb::heartbeat::v1::EventType::Dead, "a")
        .await;
    let mut p = Proc::spawn(&["members", "--server", &server.url(), "--json"]);
    let v = json_line(&mut p).await;
    assert_eq!(
        (v["state"].as_str(), v["status"].as_str()),
        (Some("DEAD"), Some("SERVING"))
    );
    server.stop().await;
}

#[tokio::test]
async fn members_cannot_connect_exits_two() {
    let free = free_addr();
    let p = Proc::spawn(&["members", "--server", &free.to_string()]);
    assert_eq!(p.wait_exit(WAIT).await.code(), Some(2));
}

async fn json_line(p: &mut Proc) -> Value {
    let line = p.next_out().await;
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

#[tokio::test]
async fn watch_json_shows_join_and_death_and_resumes_after_restart() {
    let server = TestServer::with(fast()).await;
    let addr = server.addr;
    let mut w = Proc::spawn(&[
        "watch",
        "--server",
        &server.url(),
        "--json",
        "--log-format",
        "json",
    ]);
    let end = json_line(&mut w).await;
    assert_eq!(end["type"], "SNAPSHOT_END");

    let mut client = server.client().await;
    let (mut beat, _) = Beat::join(&mut client, "web", "a").await;
    beat.ping(1).await;
    let joined = json_line(&mut w).await;
    assert_eq!(
        (joined["type"].as_str(), joined["instance"].as_str()),
        (Some("JOINED"), Some("a"))
    );
    assert!(joined["revision"].as_u64().unwrap() > end["revision"].as_u64().unwrap());
    drop(beat);
    let suspect = json_line(&mut w).await;
    assert_eq!(
        (suspect["type"].as_str(), suspect["state"].as_str()),
        (Some("UPDATED"), Some("SUSPECT"))
    );
    let dead = json_line(&mut w).await;
    assert_eq!(
        (dead["type"].as_str(), dead["state"].as_str()),
        (Some("DEAD"), Some("DEAD"))
    );

    // Restart: the watcher reconnects and gets a snapshot of the new run.
    server.stop().await;
    w.wait_log("watch interrupted", |v| {
        v["message"] == "watch interrupted; resuming"
    })
    .await;
    let server = TestServer::on(addr, fast()).await;
    let mut client = server.client().await;
    let again = json_line(&mut w).await;
    assert_eq!(
        again["type"], "SNAPSHOT_END",
        "an empty snapshot of the new run"
    );
    let (_b, _) = Beat::join(&mut client, "web", "b").await;
    let joined = json_line(&mut w).await;
    assert_eq!(
        (joined["type"].as_str(), joined["instance"].as_str()),
        (Some("JOINED"), Some("b"))
    );

    w.signal("-INT");
    assert_eq!(w.wait_exit(WAIT).await.code(), Some(0));
    server.stop().await;
}

#[tokio::test]
async fn watch_text_lines() {
    let server = TestServer::start().await;
    let mut w = Proc::spawn(&["watch", "--server", &server.url(), "--service", "web"]);
    assert!(w.next_out().await.ends_with("SNAPSHOT_END"));
    let mut client = server.client().await;
    let (_a, welcome) = Beat::join(&mut client, "web", "a").await;
    let line = w.next_out().await;
    assert!(
        line.contains(&format!(
            "JOINED web/a ALIVE SERVING session={}",
            welcome.session
        )),
        "{line}"
    );
    w.signal("-TERM");
    assert_eq!(w.wait_exit(WAIT).await.code(), Some(0));
    server.stop().await;
}

/// `heartbeat members | head -1` and `heartbeat watch | head -1`: the reader
/// goes away after one line of ~200 KB of output (more than a pipe holds),
/// and the command exits 0 without a word (no broken-pipe panic).
#[tokio::test]
async fn members_and_watch_exit_quietly_when_the_reader_goes_away() {
    let server = TestServer::start().await;
    let mut client = server.client().await;
    let labels = big_labels();
    let mut beats = Vec::new();
    for i in 0..100 {
        let join = heartbeat::pb::heartbeat::v1::Join {
            service: "web".into(),
            instance: format!("i{i:03}"),
            labels: labels.clone(),
            ..Default::default()
        };
        beats.push(Beat::join_with(&mut client, join).await.0);
    }
    let bin = env!("CARGO_BIN_EXE_heartbeat");
    for (cmd, extra) in [
        ("members", ""),
        ("members", "--json"),
        ("watch", ""),
        ("watch", "--json"),
    ] {
        let script = format!(
            "'{bin}' {cmd} --server {} {extra} | head -1 >/dev/null; echo \"exit=${{PIPESTATUS[0]}}\"",
            server.url()
        );
        let mut p = tokio::process::Command::new("bash")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let out = within(&format!("{cmd} {extra} | head -1"), async {
            let mut stdout = String::new();
            let mut stderr = String::new();
            use tokio::io::AsyncReadExt;
            let (o, e) = (p.stdout.as_mut().unwrap(), p.stderr.as_mut().unwrap());
            let _ = tokio::join!(o.read_to_string(&mut stdout), e.read_to_string(&mut stderr));
            (stdout, stderr)
        })
        .await;
        assert_eq!(out.0.trim(), "exit=0", "{cmd} {extra}: {out:?}");
        assert!(!out.1.contains("panicked"), "{cmd} {extra}: {}", out.1);
    }
    drop(beats);
    server.stop().await;
}
