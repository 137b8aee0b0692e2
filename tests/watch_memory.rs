//! WatchMembers streams that never read cost the server their position, not
//! a copy of the table: a real `heartbeat serve` with 2,000 members of 32
//! labels each (a snapshot of about 5 MB), and watchers that open the stream
//! and never read it. Before, 100 of them took the server past 1 GiB. The
//! RSS figures go to BENCHMARKS.md (`HB_WATCHERS=1000` for the larger run).

mod common;

use std::time::Duration;

use common::process::Proc;
use common::*;
use heartbeat::bench::ProcStats;
use heartbeat::pb::heartbeat::v1::{Join, heartbeat_client::HeartbeatClient};

const MEMBERS: usize = 2000;
const PER_CONNECTION: usize = 100;

async fn scrape(addr: &str, key: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// RSS once it has stopped moving (three readings 200 ms apart within
/// 1 MiB), bounded by [`WAIT`] twice over.
async fn settled_rss(pid: u32) -> u64 {
    let read = || ProcStats::read(pid).expect("the server's /proc").rss;
    tokio::time::timeout(WAIT * 2, async {
        let mut last = read();
        let mut steady = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = read();
            if now.abs_diff(last) < 1 << 20 {
                steady += 1;
                if steady == 3 {
                    return now;
                }
            } else {
                steady = 0;
            }
            last = now;
        }
    })
    .await
    .expect("the server's memory settles")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_that_never_read_cost_their_position_not_the_table() {
    let watchers: usize = std::env::var("HB_WATCHERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let (server, addr, metrics) =
        Proc::serve_with_metrics(&["--max-join-rate", "100000", "--drain", "100ms"]).await;
    let pid = server.pid();
    let mut client = HeartbeatClient::new(connect_addr(&addr).await);
    let labels = big_labels();
    let mut members = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        let join = Join {
            service: format!("svc-{}", i % 20),
            instance: format!("member-{i:05}"),
            interval: Some(millis(60_000)),
            timeout: Some(millis(600_000)),
            labels: labels.clone(),
            ..Default::default()
        };
        members.push(Beat::join_with(&mut client, join).await.0);
    }
    let before = settled_rss(pid).await;

    let sock = addr.parse().unwrap();
    let mut conns = Vec::new();
    let mut streams = Vec::with_capacity(watchers);
    for i in 0..watchers {
        if i % PER_CONNECTION == 0 {
            conns.push(raw_h2(sock).await);
        }
        let conn = conns.last_mut().unwrap();
        // An empty WatchMembersRequest: every service, from a snapshot.
        streams.push(
            conn.open_unread("/heartbeat.v1.Heartbeat/WatchMembers", &[])
                .await,
        );
    }
    within("every watch stream open", async {
        while scrape(&metrics, "heartbeat_watch_streams").await < watchers as f64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let after = settled_rss(pid).await;
    let growth = after.saturating_sub(before);
    eprintln!(
        "watch memory: {MEMBERS} members x 32 labels, {watchers} non-reading watchers: \
         RSS {:.1} MiB -> {:.1} MiB (+{:.1} MiB, {:.1} KiB per watcher)",
        mib(before),
        mib(after),
        mib(growth),
        growth as f64 / 1024.0 / watchers as f64
    );
    // One copy of the table as protobuf is about 5 MB; as it was held
    // before, eight times that. The bound is generous: a tenth of a copy.
    assert!(
        growth < watchers as u64 * 512 * 1024,
        "{watchers} watchers grew the server by {:.1} MiB",
        mib(growth)
    );
    // The server still serves, and a reading watcher gets everything.
    let mut events = Events::open(&mut client, "", 0).await;
    let (rows, _) = events.snapshot().await;
    assert_eq!(rows.len(), MEMBERS);
    drop((streams, conns, members));
    server.signal("-TERM");
    assert!(server.wait_exit(WAIT).await.success());
}
