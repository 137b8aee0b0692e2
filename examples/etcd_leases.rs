//! The peer a user would pick instead of heartbeat's cluster mode: one etcd
//! lease and one key per member, kept alive every interval, the way
//! `clientv3.Session` (and Kubernetes' node leases) do it. Measures the
//! fleet's false expiries (a keepalive answered TTL 0 for a member that never
//! stopped) and, with `--etcd-pids`, etcd's CPU per renewal.
//!
//! ```sh
//! cargo run --release --example etcd_leases -- --etcd 127.0.0.1:2379 \
//!   --members 10000 --ttl 3s --interval 1s --duration 30s --etcd-pids 11,12,13
//! ```
//! Keepalives go over `--streams` LeaseKeepAlive streams (clientv3 uses one
//! per client); grants are paced at `--grant-rate` per second. One JSON line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use heartbeat::etcd::Etcd;
use heartbeat::etcd::pb::etcdserverpb::{
    LeaseKeepAliveRequest, PutRequest, lease_client::LeaseClient,
};
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
    grant_rate: u64,
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
        grant_rate: 1000,
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
            "--grant-rate" => a.grant_rate = n(&v)?.max(1),
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

/// Keeps `leases` alive over one stream every `interval`, counting answers
/// and expiries (TTL ≤ 0), until `stop`.
async fn keep(
    channel: Channel,
    leases: Vec<i64>,
    interval: Duration,
    stop: Instant,
    renewals: Arc<AtomicU64>,
    expired: Arc<AtomicU64>,
) {
    let (tx, rx) = mpsc::channel(1024);
    let Ok(resp) = LeaseClient::new(channel)
        .lease_keep_alive(ReceiverStream::new(rx))
        .await
    else {
        expired.fetch_add(leases.len() as u64, Ordering::Relaxed);
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
    let mut tick = tokio::time::interval(interval);
    while Instant::now() < stop {
        tick.tick().await;
        // Spread each round over the interval, as separate clients would.
        let gap = interval / (leases.len() as u32).max(1);
        for &id in &leases {
            if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                break;
            }
            if !gap.is_zero() {
                tokio::time::sleep(gap / 2).await;
            }
        }
    }
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args().map_err(|e| {
        eprintln!("etcd_leases: {e}");
        std::process::exit(2)
    })?;
    let etcd = Arc::new(Etcd::new(&a.etcd, Duration::from_secs(3))?);
    let started = Instant::now();
    let mut leases = Vec::with_capacity(a.members);
    let mut grant_failures = 0u64;
    let pace = Duration::from_secs(1) / a.grant_rate as u32;
    for i in 0..a.members {
        match etcd.lease_grant(a.ttl).await {
            Ok((id, _)) => {
                let put = etcd
                    .put(PutRequest {
                        key: format!("/leases-bench/fleet/m-{i:06}").into_bytes(),
                        value: b"alive".to_vec(),
                        lease: id,
                        ..Default::default()
                    })
                    .await;
                if put.is_err() {
                    grant_failures += 1;
                }
                leases.push(id);
            }
            Err(_) => grant_failures += 1,
        }
        tokio::time::sleep(pace).await;
    }
    let joined = started.elapsed();
    // A first round of keepalives right away: the earliest leases were
    // granted a while ago.
    let renewals = Arc::new(AtomicU64::new(0));
    let expired = Arc::new(AtomicU64::new(0));
    let cpu_before: u64 = a.pids.iter().map(|&p| cpu_ticks(p)).sum();
    let t0 = Instant::now();
    let stop = t0 + a.duration;
    let chunk = leases.len().div_ceil(a.streams);
    let mut tasks = Vec::new();
    for (i, part) in leases.chunks(chunk.max(1)).enumerate() {
        let (_, channel) = (i, channel_of(&a.etcd[i % a.etcd.len()]).await?);
        tasks.push(tokio::spawn(keep(
            channel,
            part.to_vec(),
            a.interval,
            stop,
            renewals.clone(),
            expired.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_after: u64 = a.pids.iter().map(|&p| cpu_ticks(p)).sum();
    let renewed = renewals.load(Ordering::Relaxed);
    let cpu_s = (cpu_after - cpu_before) as f64 / 100.0;
    println!(
        "{}",
        serde_json::json!({
            "members": a.members,
            "granted_in_s": joined.as_secs_f64(),
            "grant_failures": grant_failures,
            "renewals": renewed,
            "renewals_per_s": renewed as f64 / secs,
            "false_expiries": expired.load(Ordering::Relaxed),
            "etcd_cpu_s": cpu_s,
            "etcd_cpu_us_per_renewal": if renewed > 0 { cpu_s * 1e6 / renewed as f64 } else { 0.0 },
            "etcd_cores": cpu_s / secs,
        })
    );
    for id in leases {
        let _ = etcd.lease_revoke(id).await;
    }
    Ok(())
}

async fn channel_of(endpoint: &str) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("http://{endpoint}"))
        .expect("endpoint URL")
        .connect()
        .await
}
