//! CI smoke runs of `heartbeat bench` (1k members and 200 health watchers for
//! 10 s; 200 members past a ping budget): it works and its JSON says what a
//! user relies on. How fast is measured in BENCHMARKS.md, never asserted here.

mod common;

use common::process::Proc;
use common::*;

/// Runs `heartbeat bench --json --quiet ARGS` to the end; its report.
async fn bench(args: &[&str]) -> serde_json::Value {
    let (code, report) = bench_exit(args).await;
    assert_eq!(code, 0);
    report
}

/// [`bench`], returning the exit code too.
async fn bench_exit(args: &[&str]) -> (i32, serde_json::Value) {
    let mut p = Proc::spawn(&[&["bench", "--json", "--quiet"], args].concat());
    // Joining, then the measured phase: a bound of its own.
    let report = async {
        loop {
            let line = p.out.recv().await.expect("bench printed its report");
            if line.starts_with('{') {
                return line;
            }
        }
    };
    let line = tokio::time::timeout(std::time::Duration::from_secs(60), report)
        .await
        .expect("the bench report within 60 s");
    let code = p.wait_exit(WAIT).await.code().expect("exit code");
    (code, serde_json::from_str(&line).expect("one JSON object"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_run_reports_json() {
    let server = TestServer::start().await;
    let pid = std::process::id().to_string();
    let r = bench(&[
        "--server",
        &server.url(),
        "--members",
        "1000",
        "--connections",
        "10",
        "--duration",
        "10s",
        "--interval",
        "1s",
        "--timeout",
        "2s",
        "--hung",
        "0.01",
        "--watchers",
        "200",
        "--server-pid",
        &pid,
    ])
    .await;
    assert_eq!(r["joined"], 1000);
    assert_eq!(r["false_expiries"], 0);
    assert_eq!(
        (r["hung"].as_u64(), r["hung_detected"].as_u64()),
        (Some(10), Some(10))
    );
    assert!(r["pongs"].as_u64().unwrap() > 0);
    assert!(r["rtt_us"]["p99"].as_f64().unwrap() > 0.0);
    assert!(r["server_rss_bytes"].as_u64().is_some(), "the PID was read");
    // Every flip of the watched service's health reached every watcher.
    let w = &r["watch"];
    assert_eq!(w["watchers"], 200);
    let flips = w["flips"].as_u64().expect("flips");
    assert!(flips > 0, "{w}");
    assert_eq!(w["deliveries"].as_u64(), Some(flips * 200), "{w}");
    server.stop().await;
}

/// The overload behaviour shows in the bench: past `--max-ping-rate` the
/// server slows members down and then refuses Joins, and kills nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_shows_refused_and_slowed_members_past_the_ping_budget() {
    // 100 pings/s; members at 1 s with a 3 s timeout can go to 1.5 s, so
    // exactly 150 fit.
    let server = TestServer::with(heartbeat::config::ServerConfig {
        max_ping_rate: Some(100),
        ..quick_drain()
    })
    .await;
    let r = bench(&[
        "--server",
        &server.url(),
        "--members",
        "200",
        "--connections",
        "4",
        "--duration",
        "4s",
        "--interval",
        "1s",
        "--timeout",
        "3s",
        "--join-within",
        "2s",
        "--allow-partial",
    ])
    .await;
    assert_eq!(
        (r["joined"].as_u64(), r["refused"].as_u64()),
        (Some(150), Some(50))
    );
    assert!(
        r["slowed"].as_u64().unwrap() > 0,
        "early joiners were slowed: {r}"
    );
    assert_eq!(r["false_expiries"], 0);
    server.stop().await;
}

/// Members that bench could not get in: the run says so and exits 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_that_cannot_get_its_fleet_in_exits_non_zero() {
    let server = TestServer::with(heartbeat::config::ServerConfig {
        max_members: 100,
        ..quick_drain()
    })
    .await;
    let (code, r) = bench_exit(&[
        "--server",
        &server.url(),
        "--members",
        "150",
        "--duration",
        "1s",
        "--join-within",
        "1s",
    ])
    .await;
    assert_eq!(code, 2, "{r}");
    assert_eq!(
        (r["joined"].as_u64(), r["members"].as_u64()),
        (Some(100), Some(150))
    );
    assert_eq!(r["refused"], 50);
    server.stop().await;
}

/// Bench joins like a real client (backoff on RESOURCE_EXHAUSTED), so the
/// join rate limit only slows it down; at the end every member leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_gets_its_fleet_through_the_join_rate_limit_and_leaves() {
    let server = TestServer::with(heartbeat::config::ServerConfig {
        max_join_rate: 300,
        ..quick_drain()
    })
    .await;
    let r = bench(&[
        "--server",
        &server.url(),
        "--members",
        "1000",
        "--duration",
        "2s",
    ])
    .await;
    assert_eq!(r["joined"], 1000, "{r}");
    assert!(
        r["join_retries"].as_u64().unwrap() > 0,
        "some were refused first: {r}"
    );
    let listed = members(&mut server.client().await).await;
    assert_eq!(listed.len(), 1000);
    assert!(
        listed
            .iter()
            .all(|m| m.state == heartbeat::pb::heartbeat::v1::MemberState::Left as i32),
        "every bench member left: {:?}",
        listed
            .iter()
            .map(|m| m.state)
            .collect::<std::collections::BTreeSet<_>>()
    );
    server.stop().await;
}
