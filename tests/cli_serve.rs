//! `heartbeat serve` as a process: logs its bound address (as JSON with
//! `--log-format json`), reads flags from HEARTBEAT_* variables, refuses bad
//! values naming the flag, and exits 0 after SIGTERM / SIGINT.

mod common;

use common::process::Proc;
use common::*;

#[tokio::test]
async fn serve_logs_json_serves_and_exits_zero_on_signals() {
    for sig in ["-TERM", "-INT"] {
        let mut p = Proc::spawn_env(
            &["serve", "--log-format", "json"],
            &[("HEARTBEAT_LISTEN", "127.0.0.1:0")],
        );
        let addr = p.logged_addr("listening").await;
        let channel = within(
            "connect",
            tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect(),
        )
        .await
        .unwrap();
        let mut health = heartbeat::pb::health::v1::health_client::HealthClient::new(channel);
        assert_eq!(check(&mut health, "").await, Ok(1));
        p.signal(sig);
        // Every line up to the end is JSON (wait_log parses each one).
        p.wait_log("shutdown", |v| v["message"] == "shut down")
            .await;
        let status = p.wait_exit(WAIT).await;
        assert_eq!(status.code(), Some(0), "{sig}");
    }
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut p = Proc::spawn_env(args, env);
    let mut err = String::new();
    while let Some(line) = p.logs.recv().await {
        err.push_str(&line);
        err.push('\n');
    }
    (p.wait_exit(WAIT).await.code(), err)
}

#[tokio::test]
async fn env_vars_set_flags_and_bad_values_name_the_flag() {
    let (code, err) = run(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("HEARTBEAT_DEFAULT_TIMEOUT", "1m")],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("--default-timeout"), "{err}");

    let (code, err) = run(&["serve", "--retention", "soon"], &[]).await;
    assert_eq!(code, Some(2), "usage error");
    assert!(err.contains("--retention"), "{err}");

    let (code, err) = run(
        &["serve", "--listen", "127.0.0.1:1", "--min-interval", "10ms"],
        &[],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("--min-interval"), "{err}");

    let (code, err) = run(
        &["serve", "--listen", "127.0.0.1:1", "--max-ping-rate", "0"],
        &[],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("--max-ping-rate"), "{err}");
}

#[tokio::test]
async fn cluster_flags_are_checked_before_anything_starts() {
    // Two sources of truth: refused, naming both flags (SPEC §7).
    let dir = common::temp_dir("etcd-and-state");
    let (code, err) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
            dir.to_str().unwrap(),
            "--etcd-endpoints",
            "127.0.0.1:1",
        ],
        &[],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--state-dir") && err.contains("--etcd-endpoints"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
    for (ttl, ok) in [("1s", false), ("61s", false)] {
        let (code, err) = run(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--etcd-endpoints",
                "127.0.0.1:1",
                "--etcd-lease-ttl",
                ttl,
            ],
            &[],
        )
        .await;
        assert_eq!((code, ok), (Some(1), false), "{ttl}: {err}");
        assert!(err.contains("--etcd-lease-ttl"), "{err}");
    }
    let (code, err) = run(
        &["serve", "--listen", "127.0.0.1:0"],
        &[
            ("HEARTBEAT_ETCD_ENDPOINTS", "127.0.0.1:1"),
            ("HEARTBEAT_ETCD_PREFIX", "no-slash"),
        ],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("--etcd-prefix"), "{err}");
    let (code, err) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--etcd-endpoints",
            "127.0.0.1:1",
            "--etcd-ca",
            "/nonexistent/ca.pem",
        ],
        &[],
    )
    .await;
    assert_eq!(code, Some(1));
    assert!(err.contains("--etcd-ca"), "{err}");
}

#[tokio::test]
async fn help_lists_every_serve_flag() {
    let mut p = Proc::spawn(&["serve", "--help"]);
    let mut help = String::new();
    while let Some(line) = p.out.recv().await {
        help.push_str(&line);
    }
    for flag in [
        "--listen",
        "--default-interval",
        "--default-timeout",
        "--min-interval",
        "--max-interval",
        "--retention",
        "--join-timeout",
        "--drain",
        "--log-format",
        "--idle-timeout",
        "--max-connections",
        "--max-watches",
        "--max-watches-per-connection",
        "HEARTBEAT_LISTEN",
        "HEARTBEAT_IDLE_TIMEOUT",
        "--etcd-endpoints",
        "--etcd-prefix",
        "--etcd-lease-ttl",
        "--advertise",
        "--etcd-ca",
        "--etcd-cert",
        "--etcd-key",
        "HEARTBEAT_ETCD_ENDPOINTS",
    ] {
        assert!(help.contains(flag), "{flag} in help");
    }
}
