//! `--state-dir` when things go wrong under a running `heartbeat serve`: a
//! file with sessions that leave no room to count up, the directory removed,
//! the disk full (a real 64 KiB tmpfs). Nothing wraps, nothing is left
//! behind, the failure is reported, and saving recovers by itself.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::process::Proc;
use common::*;

fn serve(dir: &Path) -> Proc {
    Proc::serve_with_state("127.0.0.1:0", dir.to_str().unwrap(), &[])
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn saved_members(dir: &Path) -> usize {
    let text = std::fs::read(dir.join("members.json")).expect("a snapshot");
    let v: serde_json::Value = serde_json::from_slice(&text).expect("valid JSON");
    v["members"].as_array().expect("members").len()
}

#[tokio::test]
async fn a_state_file_whose_sessions_leave_no_room_is_refused_and_sessions_keep_increasing() {
    let dir = temp_dir("session-max");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("members.json"),
        format!(
            r#"{{"version":1,"members":[{{"service":"web","instance":"a","session":{},"interval_ms":1000,"timeout_ms":3000,"serving":true}}]}}"#,
            u64::MAX - 1
        ),
    )
    .unwrap();
    let mut p = serve(&dir);
    let addr = p.logged_addr("listening").await;
    let err = p.wait_log("the refusal", |v| v["level"] == "ERROR").await;
    assert!(
        err["error"]
            .as_str()
            .unwrap_or_default()
            .contains("session"),
        "{err}"
    );
    let mut client = heartbeat::pb::heartbeat::v1::heartbeat_client::HeartbeatClient::new(
        connect_addr(&addr).await,
    );
    let (_b1, w1) = Beat::join(&mut client, "web", "a").await;
    let (_b2, w2) = Beat::join(&mut client, "web", "b").await;
    assert!(
        w1.session < heartbeat::server::MAX_SAVED_SESSION && w2.session > w1.session,
        "sessions {} then {}",
        w1.session,
        w2.session
    );
    assert!(
        files(&dir)
            .iter()
            .any(|n| n.starts_with("members.json.corrupt-")),
        "the refused file is kept aside"
    );
    p.signal("-TERM");
    assert_eq!(p.wait_exit(WAIT).await.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_state_dir_removed_while_running_is_created_again() {
    let dir = temp_dir("removed");
    let mut p = serve(&dir);
    let addr = p.logged_addr("listening").await;
    let first = spawn_fleet(&addr, "web", 1);
    all_online(&first).await;
    p.wait_log("a save", |v| {
        v["message"] == "state saved" && v["members"] == 1
    })
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
    let second = spawn_fleet(&addr, "api", 1);
    all_online(&second).await;
    p.wait_log("the directory created again", |v| {
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("created it again"))
    })
    .await;
    p.wait_log("a save", |v| {
        v["message"] == "state saved" && v["members"] == 2
    })
    .await;
    assert_eq!(saved_members(&dir), 2);
    assert_eq!(files(&dir), ["members.json"]);
    p.signal("-TERM");
    assert_eq!(p.wait_exit(WAIT).await.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 64 KiB tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount")
            .success();
        assert!(
            ok,
            "mounting a tmpfs needs root: the full-disk test cannot run"
        );
        Self(dir.to_path_buf())
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = [0u8; 4096];
        while std::io::Write::write_all(&mut f, &chunk).is_ok() {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn a_full_disk_leaves_no_temp_file_keeps_the_last_snapshot_and_recovers() {
    let disk = Tmpfs::mount(&temp_dir("full"));
    let mut p = Proc::serve_with_state(
        "127.0.0.1:0",
        disk.0.to_str().unwrap(),
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let addr = p.logged_addr("listening").await;
    let metrics = p.logged_addr("metrics listening").await;
    let first = spawn_fleet(&addr, "web", 1);
    all_online(&first).await;
    p.wait_log("a save", |v| {
        v["message"] == "state saved" && v["members"] == 1
    })
    .await;
    let filler = disk.fill();
    let more = spawn_fleet(&addr, "api", 40);
    all_online(&more).await;
    p.wait_log("the failure", |v| {
        v["level"] == "ERROR"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("cannot save the state"))
    })
    .await;
    assert_eq!(
        files(&disk.0),
        ["filler", "members.json"],
        "no temp file left behind"
    );
    assert_eq!(saved_members(&disk.0), 1, "the last good snapshot stays");
    let (_, scraped) = http_get(&metrics, "/metrics").await;
    assert!(scraped.contains("heartbeat_state_saved 0"), "{scraped}");
    assert!(
        !scraped.contains("heartbeat_state_save_failures_total 0"),
        "{scraped}"
    );
    // Room again: the next try succeeds with no further change.
    std::fs::remove_file(filler).unwrap();
    p.wait_log("the recovery", |v| v["message"] == "state saved again")
        .await;
    assert_eq!(saved_members(&disk.0), 41);
    assert!(
        http_get(&metrics, "/metrics")
            .await
            .1
            .contains("heartbeat_state_saved 1")
    );
    p.signal("-TERM");
    assert_eq!(p.wait_exit(WAIT).await.code(), Some(0));
}
