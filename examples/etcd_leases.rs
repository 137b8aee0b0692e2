//! The peer a user would pick instead of heartbeat: one etcd lease and one
//! key per member, kept alive every interval, the way `clientv3.Session`
//! (and Kubernetes' node leases) do it. Measures the fleet's false expiries
//! (a keepalive answered TTL 0 for a member that never stopped), the time to
//! grant the whole fleet (cold start), and with `--etcd-pids` etcd's CPU per
//! renewal and RSS per member. With `--hung F`, that fraction of the leases
//! stops being kept alive a third of the way into the measured phase, and a
//! watch times each key's deletion against its lease's deadline (last
//! keepalive sent + TTL): detection lateness, as `heartbeat bench` measures
//! it for heartbeat.
//!
//! ```sh
//! cargo run --release --example etcd_leases -- --etcd 127.0.0.1:2379 \
//!   --members 10000 --ttl 3s --interval 1s --duration 30s --hung 0.01 --etcd-pids 11,12,13
//! ```
//! Keepalives go over `--streams` LeaseKeepAlive streams (clientv3 uses one
//! per client); 32 grants run at a time. One JSON line.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use heartbeat::etcd::pb::etcdserverpb::{
    LeaseKeepAliveRequest, PutRequest, WatchCreateRequest, WatchRequest, lease_client::LeaseClient,
    watch_client::WatchClient, watch_create_request::FilterType, watch_request,
};
use heartbeat::etcd::pb::mvccpb::event::EventType;
use heartbeat::etcd::{Etcd, prefix_end};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

struct Args {
    etcd: Vec<String>,
    members: usize,
    ttl: Duration,
    interval: Duration,
    duration: Duration,
    streams: usize,
    hung: f64,
    pids: Vec<u32>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        etcd: vec!["127.0.0.1:2379".into()],
        members: 10_000,
        ttl: Duration::from_secs(3),
        interval: Duration::from_secs(1),
        duration: Duration::from_secs(30),
        streams: 4,
        hung: 0.0,
        pids: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let d = |v: &str| humantime::parse_duration(v).map_err(|e| format!("{flag}: {e}"));
        let n = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--etcd" => a.etcd = v.split(',').map(String::from).collect(),
            "--members" => a.members = n(&v)? as usize,
            "--ttl" => a.ttl = d(&v)?,
            "--interval" => a.interval = d(&v)?,
            "--duration" => a.duration = d(&v)?,
            "--streams" => a.streams = n(&v)?.max(1) as usize,
            "--hung" => {
                a.hung = v
                    .parse::<f64>()
                    .ok()
                    .filter(|f| (0.0..1.0).contains(f))
                    .ok_or(format!("{flag}: a fraction in [0, 1)"))?
            }
            "--etcd-pids" => {
                a.pids = v
                    .split(',')
                    .map(|p| p.parse().map_err(|e| format!("{flag}: {e}")))
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

/// utime + stime of `pid`, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// VmRSS of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The leases that stop being kept alive, when, and when each was last
/// kept alive.
#[derive(Default)]
struct Hang {
    ids: HashSet<i64>,
    at: Option<Instant>,
    last_sent: Mutex<HashMap<i64, Instant>>,
}

/// Keeps `leases` alive over one stream every `interval`, counting answers
/// and expiries (TTL ≤ 0), until `stop`.
async fn keep(
    channel: Channel,
    leases: Arc<Mutex<Vec<i64>>>,
    interval: Duration,
    stop: Arc<Mutex<Option<Instant>>>,
    hang: Arc<Mutex<Arc<Hang>>>,
    renewals: Arc<AtomicU64>,
    expired: Arc<AtomicU64>,
) {
    let (tx, rx) = mpsc::channel(1024);
    // Requests flow before the call is awaited: etcd sends the response
    // headers with its first answer, so awaiting the call first, with
    // nothing sent, waits forever.
    let sender = tokio::spawn(send_rounds(tx, leases, interval, stop, hang));
    let Ok(resp) = LeaseClient::new(channel)
        .lease_keep_alive(ReceiverStream::new(rx))
        .await
    else {
        sender.abort();
        return;
    };
    let mut answers = resp.into_inner();
    let reader = tokio::spawn(async move {
        while let Ok(Some(a)) = answers.message().await {
            if a.ttl <= 0 {
                expired.fetch_add(1, Ordering::Relaxed);
            } else {
                renewals.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let _ = sender.await;
    let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
}

/// Slices of one round per interval: each lease once per `interval`, spread
/// over it as separate clients would be.
const SLICES: usize = 100;

/// Sends a keepalive for every lease of `leases` once per `interval` until
/// `stop`; dropping `tx` then ends the stream.
async fn send_rounds(
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    leases: Arc<Mutex<Vec<i64>>>,
    interval: Duration,
    stop: Arc<Mutex<Option<Instant>>>,
    hang: Arc<Mutex<Arc<Hang>>>,
) {
    let mut tick = tokio::time::interval(interval / SLICES as u32);
    let mut slice = 0usize;
    while stop.lock().unwrap().is_none_or(|s| Instant::now() < s) {
        tick.tick().await;
        let ids: Vec<i64> = {
            let all = leases.lock().unwrap();
            all.iter().skip(slice).step_by(SLICES).copied().collect()
        };
        let hang = hang.lock().unwrap().clone();
        let now = Instant::now();
        for id in ids {
            if hang.ids.contains(&id) {
                if hang.at.is_some_and(|at| now >= at) {
                    continue;
                }
                hang.last_sent.lock().unwrap().insert(id, now);
            }
            if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                return;
            }
        }
        slice = (slice + 1) % SLICES;
    }
}

/// Watches the fleet's keys for deletions until `stop`: a hung lease's key
/// deleted is a detection (late by so much past its deadline), any other a
/// false expiry. Returns (lateness of each detection, other deletions).
async fn watch_deletions(
    channel: Channel,
    prefix: String,
    keys: Arc<HashMap<Vec<u8>, i64>>,
    hang: Arc<Hang>,
    ttl: Duration,
    until: Instant,
) -> (Vec<Duration>, u64) {
    let (tx, rx) = mpsc::channel(4);
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: prefix.clone().into_bytes(),
                range_end: prefix_end(prefix.as_bytes()),
                filters: vec![FilterType::Noput as i32],
                ..Default::default()
            },
        )),
    };
    let _ = tx.send(create).await;
    let (mut late, mut others) = (Vec::new(), 0u64);
    let Ok(resp) = WatchClient::new(channel)
        .watch(ReceiverStream::new(rx))
        .await
    else {
        return (late, others);
    };
    let mut events = resp.into_inner();
    while let Ok(Ok(Some(r))) = tokio::time::timeout_at(until, events.message()).await {
        let now = Instant::now();
        for e in r.events {
            let Some(kv) = e.kv.filter(|_| e.r#type == EventType::Delete as i32) else {
                continue;
            };
            match keys.get(&kv.key) {
                Some(id) if hang.ids.contains(id) => {
                    let sent = hang.last_sent.lock().unwrap().get(id).copied();
                    if let Some(sent) = sent {
                        late.push(now.saturating_duration_since(sent + ttl));
                    }
                }
                _ => others += 1,
            }
        }
    }
    drop(tx);
    (late, others)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args().map_err(|e| {
        eprintln!("etcd_leases: {e}");
        std::process::exit(2)
    })?;
    let etcd = Arc::new(Etcd::new(&a.etcd, Duration::from_secs(3))?);
    // The keepers run from the first grant: each lease is kept alive from
    // the moment it exists, as each member's own client would.
    let renewals = Arc::new(AtomicU64::new(0));
    let expired = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(Mutex::new(None));
    let hang = Arc::new(Mutex::new(Arc::new(Hang::default())));
    let rss_before: u64 = a.pids.iter().map(|&p| rss(p)).sum();
    let mut shares = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..a.streams {
        let share = Arc::new(Mutex::new(Vec::new()));
        shares.push(share.clone());
        let channel = channel_of(&a.etcd[i % a.etcd.len()]).await?;
        tasks.push(tokio::spawn(keep(
            channel,
            share,
            a.interval,
            stop.clone(),
            hang.clone(),
            renewals.clone(),
            expired.clone(),
        )));
    }
    let prefix = "/leases-bench/fleet/".to_owned();
    let key = |i: usize| format!("{prefix}m-{i:06}").into_bytes();
    let started = Instant::now();
    // 32 grants at a time (each is a grant and a put, both fsynced).
    use futures_util::StreamExt;
    // (key index, lease), in the order the grants completed.
    let outcomes: Vec<(usize, Option<i64>)> = futures_util::stream::iter(0..a.members)
        .map(|i| {
            let etcd = etcd.clone();
            let ttl = a.ttl;
            let key = key(i);
            async move {
                let grant = async {
                    let (id, _) = etcd.lease_grant(ttl).await.ok()?;
                    etcd.put(PutRequest {
                        key,
                        value: b"alive".to_vec(),
                        lease: id,
                        ..Default::default()
                    })
                    .await
                    .ok()?;
                    Some(id)
                };
                (i, grant.await)
            }
        })
        .buffer_unordered(32)
        .enumerate()
        .map(|(n, (i, id))| {
            if let Some(id) = id {
                shares[n % shares.len()].lock().unwrap().push(id);
            }
            (i, id)
        })
        .collect()
        .await;
    let grant_failures = outcomes.iter().filter(|(_, o)| o.is_none()).count();
    let joined = started.elapsed();
    let rss_after: u64 = a.pids.iter().map(|&p| rss(p)).sum();
    // Expiries while granting count too; the measured phase starts now.
    let expired_while_granting = expired.load(Ordering::Relaxed);
    let renewed_before = renewals.load(Ordering::Relaxed);
    let cpu_before: u64 = a.pids.iter().map(|&p| cpu_ticks(p)).sum();
    let t0 = Instant::now();
    // Every k-th granted lease hangs a third of the way in.
    let granted: Vec<(usize, i64)> = outcomes
        .iter()
        .filter_map(|&(i, id)| id.map(|id| (i, id)))
        .collect();
    let every = if a.hung > 0.0 {
        (1.0 / a.hung).round() as usize
    } else {
        0
    };
    let hung = Arc::new(Hang {
        ids: granted
            .iter()
            .filter(|(i, _)| every > 0 && i % every == 0)
            .map(|&(_, id)| id)
            .collect(),
        at: Some(t0 + a.duration / 3),
        last_sent: Mutex::default(),
    });
    *hang.lock().unwrap() = hung.clone();
    let keys: Arc<HashMap<Vec<u8>, i64>> =
        Arc::new(granted.iter().map(|&(i, id)| (key(i), id)).collect());
    let watch = tokio::spawn(watch_deletions(
        channel_of(&a.etcd[0]).await?,
        prefix.clone(),
        keys,
        hung.clone(),
        a.ttl,
        t0 + a.duration,
    ));
    *stop.lock().unwrap() = Some(t0 + a.duration);
    for t in tasks {
        let _ = t.await;
    }
    let (mut late, other_deletions) = watch.await.unwrap_or_default();
    late.sort_unstable();
    let pct = |q: f64| {
        late.get(((late.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let secs = t0.elapsed().as_secs_f64();
    let cpu_after: u64 = a.pids.iter().map(|&p| cpu_ticks(p)).sum();
    let renewed = renewals.load(Ordering::Relaxed) - renewed_before;
    let cpu_s = (cpu_after - cpu_before) as f64 / 100.0;
    println!(
        "{}",
        serde_json::json!({
            "members": a.members,
            "granted_in_s": joined.as_secs_f64(),
            "grant_failures": grant_failures,
            "renewals": renewed,
            "renewals_per_s": renewed as f64 / secs,
            "false_expiries_while_granting": expired_while_granting,
            "false_expiries": expired.load(Ordering::Relaxed) - expired_while_granting,
            "etcd_cpu_s": cpu_s,
            "etcd_cpu_us_per_renewal": if renewed > 0 { cpu_s * 1e6 / renewed as f64 } else { 0.0 },
            "etcd_cores": cpu_s / secs,
            "etcd_rss_per_member_bytes": rss_after.saturating_sub(rss_before) / a.members.max(1) as u64,
            "hung": hung.ids.len(),
            "hung_detected": late.len(),
            "other_deletions": other_deletions,
            "detection_lateness_ms": { "p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0) },
        })
    );
    Ok(())
}

async fn channel_of(endpoint: &str) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("http://{endpoint}"))
        .expect("endpoint URL")
        .connect()
        .await
}
