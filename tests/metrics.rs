//! `/metrics` of `heartbeat serve` and `heartbeat beat`, scraped over real
//! HTTP before and after members join, die and leave: the values move as
//! they should and every line of the exposition parses.

mod common;

use std::collections::BTreeMap;

use common::process::Proc;
use common::*;
use heartbeat::pb::heartbeat::v1::EventType;
use tonic::Code;

/// Parses the text exposition strictly: every sample line is
/// `name{labels} value`, comments are HELP/TYPE/UNIT, and it ends in `# EOF`.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.pop(), Some("# EOF"), "exposition ends with # EOF");
    for line in lines {
        if let Some(c) = line.strip_prefix("# ") {
            let kind = c.split(' ').next().unwrap();
            assert!(["HELP", "TYPE", "UNIT"].contains(&kind), "{line}");
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        assert!(
            key.starts_with("heartbeat_") || key.starts_with("process_"),
            "{key}"
        );
        let name_ok = key
            .split('{')
            .next()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
        assert!(name_ok, "{key}");
        assert!(
            samples.insert(key.to_owned(), value).is_none(),
            "duplicate {key}"
        );
    }
    samples
}

struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    fn get(&self, key: &str) -> f64 {
        self.0.get(key).copied().unwrap_or(0.0)
    }

    /// The value of a series that must exist.
    fn has(&self, key: &str) -> f64 {
        *self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("{key} is exported: {:?}", self.0.keys()))
    }
}

async fn scrape(addr: &str) -> Scrape {
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    Scrape(parse(&body))
}

#[tokio::test]
async fn server_metrics_follow_join_death_leave_and_rejections() {
    let (p, grpc, metrics) =
        Proc::serve_with_metrics(&["--default-interval", "100ms", "--default-timeout", "300ms"])
            .await;
    let mut client = heartbeat::pb::heartbeat::v1::heartbeat_client::HeartbeatClient::new(
        connect_addr(&grpc).await,
    );
    let alive = "heartbeat_members{service=\"web\",state=\"alive\"}";
    let dead = "heartbeat_members{service=\"web\",state=\"dead\"}";
    let left = "heartbeat_members{service=\"web\",state=\"left\"}";

    let before = scrape(&metrics).await;
    // Every known label value exists at 0 before the first event, and the
    // standard process metrics are there.
    for reason in heartbeat::metrics::Rejection::ALL {
        let key = format!(
            "heartbeat_rejections_total{{reason=\"{}\"}}",
            reason.as_str()
        );
        assert_eq!(before.has(&key), 0.0);
    }
    for reason in heartbeat::metrics::Refused::ALL {
        let key = format!(
            "heartbeat_connections_refused_total{{reason=\"{}\"}}",
            reason.as_str()
        );
        assert_eq!(before.has(&key), 0.0);
    }
    assert_eq!(before.has("heartbeat_state_save_failures_total"), 0.0);
    assert!(before.has("process_cpu_seconds_total") >= 0.0);
    assert!(before.has("process_resident_memory_bytes") > 1e6);
    assert!(before.has("process_open_fds") >= 3.0);
    assert!(before.has("process_max_fds") >= before.has("process_open_fds"));
    assert!(before.has("process_start_time_seconds") > 1e9);
    assert!(before.has("process_threads") >= 1.0);
    assert!(before.has("process_virtual_memory_bytes") > 0.0);
    assert_eq!(before.get(alive), 0.0);
    assert_eq!(before.get("heartbeat_joins_total"), 0.0);
    assert_eq!(before.get("heartbeat_beat_streams"), 0.0);

    let mut events = Events::open(&mut client, "", 0).await;
    events.snapshot().await;
    let (mut a, _) = Beat::join(&mut client, "web", "a").await;
    a.ping(1).await;
    let joined = scrape(&metrics).await;
    assert_eq!(joined.get(alive), 1.0);
    for state in ["suspect", "dead", "left"] {
        let key = format!("heartbeat_members{{service=\"web\",state=\"{state}\"}}");
        assert_eq!(joined.has(&key), 0.0, "a new service's states start at 0");
    }
    assert_eq!(joined.get("heartbeat_joins_total"), 1.0);
    assert_eq!(joined.get("heartbeat_beat_streams"), 1.0);
    assert!(joined.get("heartbeat_pings_total") >= 1.0);

    drop(a);
    events.until(EventType::Dead, "a").await;
    let died = scrape(&metrics).await;
    assert_eq!((died.get(alive), died.get(dead)), (0.0, 1.0));
    assert_eq!(died.get("heartbeat_expirations_total"), 1.0);
    assert_eq!(died.get("heartbeat_detection_lateness_seconds_count"), 1.0);
    assert_eq!(died.get("heartbeat_beat_streams"), 0.0);

    let (mut b, _) = Beat::join(&mut client, "web", "b").await;
    b.send(leave_req()).await;
    b.expect_ok_end().await;
    let mut bad = Beat::open(&mut client).await;
    bad.send(ping_req(1)).await;
    bad.expect_error(Code::InvalidArgument).await;
    let (_c1, _) = Beat::join(&mut client, "web", "c").await;
    let (_c2, _) = Beat::join(&mut client, "web", "c").await;
    let later = scrape(&metrics).await;
    assert_eq!(later.get(left), 1.0);
    assert_eq!(later.get("heartbeat_leaves_total"), 1.0);
    assert_eq!(later.get("heartbeat_takeovers_total"), 1.0);
    assert_eq!(
        later.get("heartbeat_rejections_total{reason=\"first_message_not_join\"}"),
        1.0
    );
    assert_eq!(later.get(alive), 1.0, "c, once");

    let (code, _) = http_get(&metrics, "/").await;
    assert_eq!(code, 404);
    p.signal("-TERM");
    assert_eq!(p.wait_exit(WAIT).await.code(), Some(0));
}

#[tokio::test]
async fn agent_metrics_show_state_rtt_and_pings() {
    let server = TestServer::with(fast()).await;
    let mut a = Proc::spawn(&[
        "beat",
        "--server",
        &server.url(),
        "--service",
        "web",
        "--instance",
        "a",
        "--metrics-listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]);
    let metrics = a.logged_addr("metrics listening").await;
    a.wait_log("ONLINE", |v| v["state"] == "ONLINE").await;
    // Pongs raise no event anywhere, so re-scrape (bounded) until two are counted.
    let s = within("pongs counted", async {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(10));
        loop {
            tick.tick().await;
            let s = scrape(&metrics).await;
            if s.get("heartbeat_client_pong_rtt_seconds_count") >= 2.0 {
                return s;
            }
        }
    })
    .await;
    assert_eq!(s.get("heartbeat_client_state{state=\"ONLINE\"}"), 1.0);
    assert!(
        s.has("process_resident_memory_bytes") > 1e6,
        "the agent too"
    );
    assert_eq!(s.get("heartbeat_client_state{state=\"OFFLINE\"}"), 0.0);
    assert!(s.get("heartbeat_client_pings_total") >= 2.0);
    assert!(s.get("heartbeat_client_pong_rtt_seconds_sum") > 0.0);
    drop(a);
    server.stop().await;
}
