//! The bench run: connect, join everybody, measure, hang some, report.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use super::watch::Fanout;
use super::{BenchConfig, ProcStats, Report};
use crate::pb::heartbeat::v1::{
    BeatRequest, Join, Leave, Ping, beat_request, beat_response, heartbeat_client::HeartbeatClient,
};

#[derive(Debug)]
struct Stats {
    rtt: Mutex<Histogram<u64>>,
    lateness: Mutex<Histogram<u64>>,
    pongs: AtomicU64,
    false_expiries: AtomicUsize,
    hung_detected: AtomicUsize,
    /// Members told a longer interval than their Welcome's (Pong.interval).
    slowed: AtomicUsize,
    measuring: AtomicBool,
}

/// How a member's joining ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Joined {
    /// Welcomed, after this many RESOURCE_EXHAUSTED answers.
    Welcomed { retries: u32 },
    /// Every attempt within the join window got RESOURCE_EXHAUSTED: the
    /// server is at a limit (join rate, members, ping budget).
    Refused { retries: u32 },
    /// Another error (the server went away, a bad argument).
    Failed,
}

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs .. 1 h, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

use crate::liveness::timing::client_interval;
use crate::pb::{duration_from_pb as std_duration, duration_to_pb as pb};

/// Runs the benchmark described by `cfg`.
pub async fn run(cfg: BenchConfig) -> Result<Report, String> {
    if cfg.members == 0 || cfg.connections == 0 {
        return Err("--members and --connections must be positive".into());
    }
    if !(0.0..=1.0).contains(&cfg.hung) {
        return Err("--hung must be a fraction in [0, 1]".into());
    }
    let before = cfg.server_pid.and_then(ProcStats::read);
    let mut channels = Vec::with_capacity(cfg.connections);
    for _ in 0..cfg.connections.min(cfg.members) {
        let ep = Endpoint::from_shared(cfg.url.clone())
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5));
        channels.push(
            ep.connect()
                .await
                .map_err(|e| format!("connect {}: {e}", cfg.url))?,
        );
    }
    let stats = Arc::new(Stats {
        rtt: Mutex::new(histogram()),
        lateness: Mutex::new(histogram()),
        pongs: AtomicU64::new(0),
        false_expiries: AtomicUsize::new(0),
        hung_detected: AtomicUsize::new(0),
        slowed: AtomicUsize::new(0),
        measuring: AtomicBool::new(false),
    });
    let hung = (cfg.members as f64 * cfg.hung).round() as usize;
    let stop = CancellationToken::new();
    let hang = CancellationToken::new();
    let (welcomed_tx, mut welcomed) = mpsc::channel::<Joined>(cfg.members);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(cfg.members);
    for i in 0..cfg.members {
        let member = Member {
            channel: channels[i % channels.len()].clone(),
            instance: format!("bench-{i:06}"),
            hangs: i < hung,
            cfg: cfg.clone(),
            stats: stats.clone(),
            stop: stop.clone(),
            hang: hang.clone(),
            welcomed: welcomed_tx.clone(),
        };
        tasks.push(tokio::spawn(member.run()));
    }
    drop(welcomed_tx);
    let (mut joined, mut refused, mut failed, mut retries) = (0, 0, 0, 0u64);
    let window = start + cfg.join_within + Duration::from_secs(5);
    while joined + refused + failed < cfg.members {
        match tokio::time::timeout_at(window, welcomed.recv()).await {
            Ok(Some(Joined::Welcomed { retries: r })) => {
                joined += 1;
                retries += u64::from(r);
            }
            Ok(Some(Joined::Refused { retries: r })) => {
                refused += 1;
                retries += u64::from(r);
            }
            Ok(Some(Joined::Failed)) => failed += 1,
            _ => break,
        }
    }
    let join_time = start.elapsed();
    if joined == 0 {
        stop.cancel();
        return Err(format!(
            "none of {} members joined within {} ({refused} refused, {failed} failed)",
            cfg.members,
            humantime::format_duration(cfg.join_within)
        ));
    }

    let after_join = cfg.server_pid.and_then(ProcStats::read);
    let fanout = if cfg.watchers > 0 {
        let f = Fanout::start(
            &channels,
            &cfg.service,
            cfg.watchers,
            cfg.interval,
            histogram,
        )
        .await;
        match f {
            Ok(f) => Some(f),
            Err(e) => {
                stop.cancel();
                return Err(e);
            }
        }
    } else {
        None
    };
    stats.measuring.store(true, Ordering::Relaxed);
    let measured = Instant::now();
    let mut tick =
        tokio::time::interval_at(measured + Duration::from_secs(1), Duration::from_secs(1));
    let mut last_pongs = 0;
    let hang_at = measured + cfg.duration / 3;
    let mut hung_yet = hung == 0;
    while measured.elapsed() < cfg.duration {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(f) = &fanout {
                    f.flip().await;
                }
                let pongs = stats.pongs.load(Ordering::Relaxed);
                if cfg.progress {
                    eprintln!(
                        "[{:>4.0}s] {:>8} pings/s  false expiries {}  hung detected {}/{}  slowed {}",
                        measured.elapsed().as_secs_f64(),
                        pongs - last_pongs,
                        stats.false_expiries.load(Ordering::Relaxed),
                        stats.hung_detected.load(Ordering::Relaxed),
                        hung,
                        stats.slowed.load(Ordering::Relaxed),
                    );
                }
                last_pongs = pongs;
            }
            _ = tokio::time::sleep_until(hang_at), if !hung_yet => {
                hang.cancel();
                hung_yet = true;
            }
            _ = tokio::time::sleep_until(measured + cfg.duration) => {}
        }
    }
    stats.measuring.store(false, Ordering::Relaxed);
    let elapsed = measured.elapsed();
    let end = cfg.server_pid.and_then(ProcStats::read);
    let fanout = match fanout {
        Some(f) => Some(f.finish().await),
        None => None,
    };
    // Every member leaves (LEFT, not DEAD: a bench run leaves no fleet of
    // dead rows behind, nor a mass failure).
    stop.cancel();
    let leave_by = Instant::now() + LEAVE_WITHIN + Duration::from_secs(1);
    for t in tasks {
        let _ = tokio::time::timeout_at(leave_by, t).await;
    }

    let pongs = stats.pongs.load(Ordering::Relaxed);
    let us = |v: u64| Duration::from_micros(v);
    let rtt = stats.rtt.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let late = stats
        .lateness
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let (cpu_per_ping, rss_per_member, rss) = match (before, after_join, end) {
        (Some(b), Some(a), Some(e)) => (
            (pongs > 0).then(|| (e.cpu.saturating_sub(a.cpu)) / pongs as u32),
            Some(a.rss.saturating_sub(b.rss) / joined as u64),
            Some(e.rss),
        ),
        _ => (None, None, None),
    };
    Ok(Report {
        members: cfg.members,
        joined,
        refused,
        failed: cfg.members - joined - refused,
        join_retries: retries,
        slowed: stats.slowed.load(Ordering::Relaxed),
        join_time,
        pongs,
        pings_per_sec: pongs as f64 / elapsed.as_secs_f64(),
        rtt_p50: us(rtt.value_at_quantile(0.5)),
        rtt_p99: us(rtt.value_at_quantile(0.99)),
        rtt_p999: us(rtt.value_at_quantile(0.999)),
        rtt_max: us(rtt.max()),
        false_expiries: stats.false_expiries.load(Ordering::Relaxed),
        hung,
        hung_detected: stats.hung_detected.load(Ordering::Relaxed),
        lateness_p50: us(late.value_at_quantile(0.5)),
        lateness_p99: us(late.value_at_quantile(0.99)),
        lateness_max: us(late.max()),
        cpu_per_ping,
        rss_per_member,
        rss,
        watch: fanout.map(|f| super::WatchReport {
            watchers: f.watchers,
            flips: f.flips,
            deliveries: f.deliveries,
            p50: us(f.latency.value_at_quantile(0.5)),
            p99: us(f.latency.value_at_quantile(0.99)),
            max: us(f.latency.max()),
        }),
    })
}

struct Member {
    channel: Channel,
    instance: String,
    hangs: bool,
    cfg: BenchConfig,
    stats: Arc<Stats>,
    stop: CancellationToken,
    hang: CancellationToken,
    welcomed: mpsc::Sender<Joined>,
}

/// How long members have for their Leave at the end of a run.
const LEAVE_WITHIN: Duration = Duration::from_secs(3);

type Responses = tonic::Streaming<crate::pb::heartbeat::v1::BeatResponse>;

/// A welcomed member's stream and agreed timing.
struct Welcomed {
    tx: mpsc::Sender<BeatRequest>,
    responses: Responses,
    interval: Duration,
    timeout: Duration,
}

/// Why a Join attempt failed.
enum NotWelcomed {
    Refused,
    Failed,
}

impl Member {
    /// Joins like a real client: RESOURCE_EXHAUSTED is retried with the
    /// client's jittered backoff until the join window ends.
    async fn join(&self) -> Result<Welcomed, Joined> {
        let backoff = crate::client::Backoff::default();
        let until = Instant::now() + self.cfg.join_within;
        let mut retries = 0;
        loop {
            match self.attempt().await {
                Ok(welcomed) => {
                    let _ = self.welcomed.send(Joined::Welcomed { retries }).await;
                    return Ok(welcomed);
                }
                Err(NotWelcomed::Failed) => return Err(Joined::Failed),
                Err(NotWelcomed::Refused) => {
                    retries += 1;
                    let wait = backoff.delay(retries, rand::random());
                    if Instant::now() + wait > until {
                        return Err(Joined::Refused { retries });
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.stop.cancelled() => return Err(Joined::Refused { retries }),
                    }
                }
            }
        }
    }

    async fn attempt(&self) -> Result<Welcomed, NotWelcomed> {
        let (tx, rx) = mpsc::channel(4);
        let join = Join {
            service: self.cfg.service.clone(),
            instance: self.instance.clone(),
            interval: Some(pb(self.cfg.interval)),
            timeout: self.cfg.timeout.map(pb),
            ..Default::default()
        };
        let _ = tx.try_send(BeatRequest {
            kind: Some(beat_request::Kind::Join(join)),
        });
        let mut client = HeartbeatClient::new(self.channel.clone());
        let refused = |s: &tonic::Status| s.code() == Code::ResourceExhausted;
        let mut responses = match client.beat(ReceiverStream::new(rx)).await {
            Ok(resp) => resp.into_inner(),
            Err(s) if refused(&s) => return Err(NotWelcomed::Refused),
            Err(_) => return Err(NotWelcomed::Failed),
        };
        match responses.message().await {
            Ok(Some(m)) => match m.kind {
                Some(beat_response::Kind::Welcome(w)) => {
                    let timeout = std_duration(w.timeout)
                        .filter(|t| !t.is_zero())
                        .unwrap_or(Duration::from_secs(3));
                    let told = std_duration(w.interval).unwrap_or(self.cfg.interval);
                    Ok(Welcomed {
                        tx,
                        responses,
                        interval: client_interval(told, timeout),
                        timeout,
                    })
                }
                _ => Err(NotWelcomed::Failed),
            },
            Err(s) if refused(&s) => Err(NotWelcomed::Refused),
            _ => Err(NotWelcomed::Failed),
        }
    }

    async fn run(self) {
        let Welcomed {
            tx,
            mut responses,
            interval,
            timeout,
        } = match self.join().await {
            Ok(joined) => joined,
            Err(outcome) => {
                let _ = self.welcomed.send(outcome).await;
                return;
            }
        };

        let mut slowed = false;
        // Spread the members' pings over the interval.
        let offset = interval.mul_f64(rand::random::<f64>());
        let mut ticker = tokio::time::interval_at(Instant::now() + offset, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (mut seq, mut sent): (u64, Option<(u64, Instant)>) = (0, None);
        let mut last_ping = Instant::now();
        let mut hung = false;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => {
                    if !hung {
                        leave(tx, &mut responses).await;
                    }
                    return;
                }
                _ = self.hang.cancelled(), if self.hangs && !hung => hung = true,
                _ = ticker.tick(), if !hung => {
                    seq += 1;
                    let ping = Ping { seq, status: 0, sent_at: None };
                    if tx.try_send(BeatRequest { kind: Some(beat_request::Kind::Ping(ping)) }).is_ok() {
                        last_ping = Instant::now();
                        sent = Some((seq, last_ping));
                    }
                }
                msg = responses.message() => match msg {
                    Ok(Some(m)) => {
                        // Adopt a changed interval, as a real client must.
                        if let Some(beat_response::Kind::Pong(p)) = &m.kind
                            && let Some(new) = std_duration(p.interval)
                                .filter(|d| !d.is_zero())
                                .map(|d| client_interval(d, timeout))
                                .filter(|d| *d != ticker.period())
                        {
                            ticker = tokio::time::interval_at(Instant::now() + new, new);
                            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                            if new > interval && !slowed {
                                slowed = true;
                                self.stats.slowed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        if let Some(beat_response::Kind::Pong(p)) = m.kind
                            && let Some((s, at)) = sent
                            && s == p.seq
                            && self.stats.measuring.load(Ordering::Relaxed)
                        {
                            let rtt = at.elapsed().as_micros() as u64;
                            self.stats.rtt.lock().unwrap_or_else(|p| p.into_inner()).saturating_record(rtt.max(1));
                            self.stats.pongs.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(None) | Err(_) if self.stop.is_cancelled() => return,
                    Err(s) if hung && s.code() == Code::DeadlineExceeded => {
                        let late = Instant::now().saturating_duration_since(last_ping + timeout);
                        self.stats.lateness.lock().unwrap_or_else(|p| p.into_inner()).saturating_record((late.as_micros() as u64).max(1));
                        self.stats.hung_detected.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    _ => {
                        if !hung {
                            self.stats.false_expiries.fetch_add(1, Ordering::Relaxed);
                        }
                        return;
                    }
                },
            }
        }
    }
}

/// Sends Leave and waits (bounded) for the server to end the stream.
async fn leave(tx: mpsc::Sender<BeatRequest>, responses: &mut Responses) {
    let leave = BeatRequest {
        kind: Some(beat_request::Kind::Leave(Leave {
            reason: "bench done".into(),
        })),
    };
    let done = async {
        if tx.send(leave).await.is_err() {
            return;
        }
        while let Ok(Some(_)) = responses.message().await {}
    };
    let _ = tokio::time::timeout(LEAVE_WITHIN, done).await;
}
