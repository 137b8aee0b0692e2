//! Push fan-out of discovery (SPEC §8), side by side with WatchMembers:
//! N subscribers of one service, then a member of it joins (with an
//! endpoint) and leaves, R times; each subscriber notes when the change
//! reached it. ADS subscribers are EDS streams (envoy-types' client, as an
//! xDS client opens them); watch subscribers are WatchMembers streams of the
//! same service. The two kinds alternate, each set opened fresh.
//!
//! ```sh
//! cargo run --release --example xds_fanout -- --server 127.0.0.1:50051 \
//!   --subscribers 1000 --rounds 5 --sets 3
//! ```
//! One JSON line per set on stdout: per-subscriber latency from the Join
//! (or Leave) being sent to the update arriving, p50/p99/max, in ms.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::service::discovery::v3::{
    DiscoveryRequest, aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
};
use heartbeat::pb::heartbeat::v1::{
    BeatRequest, Join, Leave, WatchMembersRequest, beat_request, heartbeat_client::HeartbeatClient,
};
use prost::Message;
use tokio::sync::{Barrier, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const SERVICE: &str = "fanout";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
const WAIT: Duration = Duration::from_secs(30);

struct Args {
    server: String,
    subscribers: usize,
    rounds: usize,
    sets: usize,
    per_connection: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        server: "127.0.0.1:50051".into(),
        subscribers: 1000,
        rounds: 5,
        sets: 3,
        per_connection: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let n = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--server" => a.server = value,
            "--subscribers" => a.subscribers = n(&value)?,
            "--rounds" => a.rounds = n(&value)?,
            "--sets" => a.sets = n(&value)?,
            "--per-connection" => a.per_connection = n(&value)?.max(1),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ads,
    Watch,
}

/// What a subscriber sees: the number of endpoints (ADS) or members
/// joined minus left (watch) after each update, with its arrival time.
type Seen = mpsc::UnboundedSender<(usize, usize, Instant)>;

async fn ads_subscriber(channel: Channel, id: usize, seen: Seen, ready: Arc<Barrier>) {
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(4);
    let ask = |nonce: String| DiscoveryRequest {
        type_url: EDS.into(),
        resource_names: vec![SERVICE.into()],
        response_nonce: nonce,
        ..Default::default()
    };
    tx.send(ask(String::new())).await.unwrap();
    let mut stream = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .expect("ADS stream")
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    tx.send(ask(first.nonce)).await.unwrap();
    ready.wait().await;
    while let Ok(Some(r)) = stream.message().await {
        let at = Instant::now();
        let cla = ClusterLoadAssignment::decode(r.resources[0].value.as_slice()).unwrap();
        let n = cla.endpoints.first().map_or(0, |l| l.lb_endpoints.len());
        let _ = seen.send((id, n, at));
        let _ = tx.send(ask(r.nonce)).await;
    }
}

async fn watch_subscriber(channel: Channel, id: usize, seen: Seen, ready: Arc<Barrier>) {
    let mut client = HeartbeatClient::new(channel);
    let req = WatchMembersRequest {
        service: SERVICE.into(),
        since_revision: 0,
    };
    let mut stream = client.watch_members(req).await.expect("watch").into_inner();
    // Snapshot, up to its end marker.
    while let Ok(Some(e)) = stream.message().await {
        if e.r#type == 2 {
            break;
        }
    }
    ready.wait().await;
    let mut live = 0usize;
    while let Ok(Some(e)) = stream.message().await {
        let at = Instant::now();
        match e.r#type {
            3 => live += 1,
            5..=6 => live = live.saturating_sub(1),
            _ => continue,
        }
        let _ = seen.send((id, live, at));
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn one_set(a: &Args, kind: Kind) -> Vec<f64> {
    let url = format!("http://{}", a.server);
    let conns = a.subscribers.div_ceil(a.per_connection);
    let mut channels = Vec::new();
    for _ in 0..conns {
        channels.push(
            Channel::from_shared(url.clone())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let ready = Arc::new(Barrier::new(a.subscribers + 1));
    let mut tasks = Vec::new();
    for id in 0..a.subscribers {
        let ch = channels[id % conns].clone();
        let (s, r) = (seen_tx.clone(), ready.clone());
        tasks.push(tokio::spawn(async move {
            match kind {
                Kind::Ads => ads_subscriber(ch, id, s, r).await,
                Kind::Watch => watch_subscriber(ch, id, s, r).await,
            }
        }));
    }
    ready.wait().await;
    let mut beat = HeartbeatClient::new(channels[0].clone());
    let mut latencies = Vec::new();
    for round in 0..a.rounds {
        let (tx, rx) = mpsc::channel(4);
        let join = Join {
            service: SERVICE.into(),
            instance: format!("m{round}"),
            endpoint: "10.9.9.9:80".into(),
            ..Default::default()
        };
        let sent = Instant::now();
        let msg = BeatRequest {
            kind: Some(beat_request::Kind::Join(join)),
        };
        tx.send(msg).await.unwrap();
        let stream = beat
            .beat(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        latencies.extend(collect(&mut seen, a.subscribers, 1, sent).await);
        let sent = Instant::now();
        let leave = BeatRequest {
            kind: Some(beat_request::Kind::Leave(Leave::default())),
        };
        tx.send(leave).await.unwrap();
        latencies.extend(collect(&mut seen, a.subscribers, 0, sent).await);
        drop(stream);
    }
    for t in tasks {
        t.abort();
    }
    latencies
}

/// Waits until every subscriber reported `want`; their latencies in ms.
async fn collect(
    seen: &mut mpsc::UnboundedReceiver<(usize, usize, Instant)>,
    n: usize,
    want: usize,
    sent: Instant,
) -> Vec<f64> {
    let mut got = vec![None; n];
    let mut left = n;
    let deadline = Instant::now() + WAIT;
    while left > 0 {
        let (id, count, at) = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .expect("every subscriber sees the update within 30 s")
            .expect("subscribers running");
        if count == want && got[id].is_none() {
            got[id] = Some(at.duration_since(sent).as_secs_f64() * 1e3);
            left -= 1;
        }
    }
    got.into_iter().flatten().collect()
}

#[tokio::main]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    for set in 0..a.sets {
        for kind in [Kind::Ads, Kind::Watch] {
            let mut l = one_set(&a, kind).await;
            l.sort_by(f64::total_cmp);
            println!(
                "{{\"set\":{set},\"kind\":\"{}\",\"subscribers\":{},\"updates\":{},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2}}}",
                if kind == Kind::Ads { "ads" } else { "watch" },
                a.subscribers,
                l.len() / a.subscribers,
                percentile(&l, 0.5),
                percentile(&l, 0.99),
                l[l.len() - 1],
            );
        }
    }
}
