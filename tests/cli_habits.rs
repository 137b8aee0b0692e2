//! The CLI's kubectl/etcdctl habits: one spelling of states (logs, table,
//! JSON), `members --state/--label` filters, timestamped `watch` lines,
//! `--version` with commit and profile, shell completions and a man page.

mod common;

use common::process::Proc;
use common::*;
use heartbeat::pb::heartbeat::v1::Join;
use serde_json::Value;

fn join(service: &str, instance: &str, zone: Option<&str>) -> Join {
    Join {
        service: service.into(),
        instance: instance.into(),
        labels: zone
            .map(|z| [("zone".to_owned(), z.to_owned())].into())
            .unwrap_or_default(),
        ..Default::default()
    }
}

async fn instances(args: &[&str]) -> Vec<String> {
    let (code, out) = Proc::run(args).await;
    assert_eq!(code, 0, "{out}");
    let mut names: Vec<String> = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            v["instance"].as_str().unwrap().to_owned()
        })
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn members_filters_by_state_and_label() {
    let server = TestServer::with(fast()).await;
    let mut client = server.client().await;
    let (_a, _) = Beat::join_with(&mut client, join("web", "a", Some("z1"))).await;
    let (_b, _) = Beat::join_with(&mut client, join("web", "b", Some("z2"))).await;
    let (_c, _) = Beat::join_with(&mut client, join("web", "c", None)).await;
    let (mut left, _) = Beat::join_with(&mut client, join("web", "d", Some("z1"))).await;
    left.send(leave_req()).await;
    left.expect_ok_end().await;

    let url = server.url();
    let base = ["members", "--server", url.as_str(), "--json"];
    let with = |extra: &[&'static str]| {
        let mut v = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    assert_eq!(instances(&base).await, ["a", "b", "c", "d"]);
    assert_eq!(
        instances(&with(&["--state", "alive"])).await,
        ["a", "b", "c"]
    );
    assert_eq!(instances(&with(&["--state", "LEFT"])).await, ["d"]);
    assert_eq!(instances(&with(&["--state", "dead,left"])).await, ["d"]);
    assert_eq!(instances(&with(&["--label", "zone=z1"])).await, ["a", "d"]);
    assert_eq!(
        instances(&with(&["--label", "zone"])).await,
        ["a", "b", "d"]
    );
    assert_eq!(
        instances(&with(&["--label", "zone=z1", "--state", "alive"])).await,
        ["a"]
    );
    let (code, out) = Proc::run(&with(&["--state", "gone"])).await;
    assert_eq!(code, 2, "a bad state is a usage error: {out}");
    assert!(out.contains("ALIVE"), "the error lists the states: {out}");
    server.stop().await;
}

#[tokio::test]
async fn watch_lines_carry_the_time_they_arrived() {
    let server = TestServer::start().await;
    let url = server.url();
    let mut text = Proc::spawn(&["watch", "--server", &url, "--label", "zone=z1"]);
    let mut json = Proc::spawn(&["watch", "--server", &url, "--json"]);
    assert!(text.next_out().await.ends_with("SNAPSHOT_END"));
    assert!(json.next_out().await.contains("SNAPSHOT_END"));
    let mut client = server.client().await;
    let (_other, _) = Beat::join_with(&mut client, join("web", "other", Some("z2"))).await;
    let (_a, _) = Beat::join_with(&mut client, join("web", "a", Some("z1"))).await;
    // The text watch skips the z2 member: its next line is a's.
    let line = text.next_out().await;
    let (time, rest) = line.split_once(' ').unwrap();
    assert!(
        humantime::parse_rfc3339(time).is_ok(),
        "{line}: starts with an RFC 3339 time"
    );
    assert!(rest.contains("JOINED web/a ALIVE SERVING"), "{line}");
    let v: Value = serde_json::from_str(&json.next_out().await).unwrap();
    assert!(
        humantime::parse_rfc3339(v["time"].as_str().unwrap()).is_ok(),
        "{v}"
    );
    assert_eq!(
        (v["type"].as_str(), v["state"].as_str()),
        (Some("JOINED"), Some("ALIVE"))
    );
    for p in [text, json] {
        p.signal("-TERM");
        assert_eq!(p.wait_exit(WAIT).await.code(), Some(0));
    }
    server.stop().await;
}

#[tokio::test]
async fn logs_spell_states_as_the_table_does() {
    let mut server = Proc::spawn(&["serve", "--listen", "127.0.0.1:0", "--log-format", "json"]);
    let addr = server.logged_addr("listening").await;
    let mut client = heartbeat::pb::heartbeat::v1::heartbeat_client::HeartbeatClient::new(
        connect_addr(&addr).await,
    );
    let (_a, _) = Beat::join(&mut client, "web", "a").await;
    let v = server
        .wait_log("member joined", |v| v["message"] == "member joined")
        .await;
    assert_eq!(
        (v["state"].as_str(), v["status"].as_str()),
        (Some("ALIVE"), Some("SERVING")),
        "{v}"
    );
}

#[tokio::test]
async fn version_completions_and_man_page() {
    let (code, out) = Proc::run(&["--version"]).await;
    assert_eq!(code, 0);
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .expect("git");
    let commit = String::from_utf8(commit.stdout).unwrap();
    assert!(
        out.starts_with("heartbeat 0.") && out.contains(commit.trim()) && out.contains("build"),
        "{out}"
    );

    for shell in ["bash", "zsh", "fish"] {
        let (code, out) = Proc::run(&["completions", shell]).await;
        assert_eq!(code, 0, "{shell}: {out}");
        assert!(out.contains("members") && out.contains("tls-ca"), "{shell}");
    }
    // The bash script parses.
    let (_, script) = Proc::run(&["completions", "bash"]).await;
    let path = temp_dir("completion");
    std::fs::write(&path, script).unwrap();
    let ok = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .status()
        .unwrap();
    assert!(ok.success());
    let _ = std::fs::remove_file(&path);

    let (code, out) = Proc::run(&["man"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(".TH heartbeat 1") && out.contains("members"),
        "{out}"
    );
}
