//! The bench run: connect, join everybody, measure, hang some, report.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::member::{Joined, LEAVE_WITHIN, Member, Stats};
use super::watch::Fanout;
use super::{BenchConfig, ProcStats, Report};
use crate::client::Dial;

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs .. 1 h, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// Runs the benchmark described by `cfg`: connect, join everybody (within
/// the join window), open the watchers, measure (hanging some members a
/// third of the way in), leave, report.
pub async fn run(cfg: BenchConfig) -> Result<Report, String> {
    if cfg.members == 0 || cfg.connections == 0 {
        return Err("--members and --connections must be positive".into());
    }
    if !(0.0..=1.0).contains(&cfg.hung) {
        return Err("--hung must be a fraction in [0, 1]".into());
    }
    let before = cfg.server_pid.and_then(ProcStats::read);
    let bench = Bench::connect(cfg).await?;
    let cfg = bench.cfg.clone();
    let start = Instant::now();
    let (tasks, welcomed) = bench.spawn_members();
    let tally = tally_joins(welcomed, &cfg, start).await;
    let join_time = start.elapsed();
    if tally.joined == 0 {
        bench.stop.cancel();
        return Err(format!(
            "none of {} members joined within {} ({} refused, {} failed)",
            cfg.members,
            humantime::format_duration(cfg.join_within),
            tally.refused,
            tally.failed
        ));
    }
    let after_join = cfg.server_pid.and_then(ProcStats::read);
    let fanout = if cfg.watchers > 0 {
        let f = Fanout::start(
            &bench.channels,
            &bench.dial,
            &cfg.service,
            cfg.watchers,
            cfg.interval,
            histogram,
        )
        .await;
        Some(f.inspect_err(|_| bench.stop.cancel())?)
    } else {
        None
    };
    let elapsed = bench.measure(fanout.as_ref()).await;
    let end = cfg.server_pid.and_then(ProcStats::read);
    let fanout = match fanout {
        Some(f) => Some(f.finish().await),
        None => None,
    };
    // Every member leaves (LEFT, not DEAD: a bench run leaves no fleet of
    // dead rows behind, nor a mass failure).
    bench.stop.cancel();
    let leave_by = Instant::now() + LEAVE_WITHIN + Duration::from_secs(1);
    for t in tasks {
        let _ = tokio::time::timeout_at(leave_by, t).await;
    }
    let server = [before, after_join, end];
    Ok(bench.report(tally, join_time, elapsed, server, fanout))
}

/// How the Joins went.
#[derive(Debug, Default)]
struct Tally {
    joined: usize,
    refused: usize,
    failed: usize,
    retries: u64,
}

/// Counts the members' join outcomes until all are in or the join window
/// (plus a little) is over.
async fn tally_joins(
    mut welcomed: mpsc::Receiver<Joined>,
    cfg: &BenchConfig,
    start: Instant,
) -> Tally {
    let mut t = Tally::default();
    let window = start + cfg.join_within + Duration::from_secs(5);
    while t.joined + t.refused + t.failed < cfg.members {
        match tokio::time::timeout_at(window, welcomed.recv()).await {
            Ok(Some(Joined::Welcomed { retries })) => {
                t.joined += 1;
                t.retries += u64::from(retries);
            }
            Ok(Some(Joined::Refused { retries })) => {
                t.refused += 1;
                t.retries += u64::from(retries);
            }
            Ok(Some(Joined::Failed)) => t.failed += 1,
            _ => break,
        }
    }
    t
}

/// A run's shared parts: connections, statistics, and the signals to the
/// members.
struct Bench {
    cfg: Arc<BenchConfig>,
    dial: Dial,
    channels: Vec<Channel>,
    stats: Arc<Stats>,
    stop: CancellationToken,
    hang: CancellationToken,
    hung: usize,
}

impl Bench {
    async fn connect(cfg: BenchConfig) -> Result<Self, String> {
        let dial = Dial::new(cfg.tls.clone(), cfg.token.as_deref())?;
        let mut channels = Vec::with_capacity(cfg.connections);
        for _ in 0..cfg.connections.min(cfg.members) {
            let channel = dial.channel(&cfg.url, Duration::from_secs(5)).await;
            channels.push(channel.map_err(|e| e.to_string())?);
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
        Ok(Self {
            hung: (cfg.members as f64 * cfg.hung).round() as usize,
            cfg: Arc::new(cfg),
            dial,
            channels,
            stats,
            stop: CancellationToken::new(),
            hang: CancellationToken::new(),
        })
    }

    /// Starts every member; each reports how its joining went.
    fn spawn_members(&self) -> (Vec<JoinHandle<()>>, mpsc::Receiver<Joined>) {
        let (welcomed_tx, welcomed) = mpsc::channel::<Joined>(self.cfg.members);
        let tasks = (0..self.cfg.members)
            .map(|i| {
                let member = Member {
                    channel: self.channels[i % self.channels.len()].clone(),
                    dial: self.dial.clone(),
                    instance: format!("bench-{i:06}"),
                    hangs: i < self.hung,
                    cfg: self.cfg.clone(),
                    stats: self.stats.clone(),
                    stop: self.stop.clone(),
                    hang: self.hang.clone(),
                    welcomed: welcomed_tx.clone(),
                };
                tokio::spawn(member.run())
            })
            .collect();
        (tasks, welcomed)
    }

    /// The measured phase: a progress line (and a health flip) every
    /// second, the hung members told to hang a third of the way in.
    /// Returns how long it lasted.
    async fn measure(&self, fanout: Option<&Fanout>) -> Duration {
        let (cfg, stats) = (&self.cfg, &self.stats);
        stats.measuring.store(true, Ordering::Relaxed);
        let measured = Instant::now();
        let second = Duration::from_secs(1);
        let mut tick = tokio::time::interval_at(measured + second, second);
        let mut last_pongs = 0;
        let hang_at = measured + cfg.duration / 3;
        let mut hung_yet = self.hung == 0;
        while measured.elapsed() < cfg.duration {
            tokio::select! {
                _ = tick.tick() => {
                    if let Some(f) = fanout {
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
                            self.hung,
                            stats.slowed.load(Ordering::Relaxed),
                        );
                    }
                    last_pongs = pongs;
                }
                _ = tokio::time::sleep_until(hang_at), if !hung_yet => {
                    self.hang.cancel();
                    hung_yet = true;
                }
                _ = tokio::time::sleep_until(measured + cfg.duration) => {}
            }
        }
        stats.measuring.store(false, Ordering::Relaxed);
        measured.elapsed()
    }

    /// The figures. `server` is the server's /proc readings before the
    /// run, after the joins and at the end of the measured phase.
    fn report(
        &self,
        tally: Tally,
        join_time: Duration,
        elapsed: Duration,
        server: [Option<ProcStats>; 3],
        fanout: Option<super::watch::FanoutReport>,
    ) -> Report {
        let stats = &self.stats;
        let pongs = stats.pongs.load(Ordering::Relaxed);
        let us = |v: u64| Duration::from_micros(v);
        let rtt = stats.rtt.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let late = stats
            .lateness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let (cpu_per_ping, rss_per_member, rss) = match server {
            [Some(b), Some(a), Some(e)] => (
                (pongs > 0).then(|| (e.cpu.saturating_sub(a.cpu)) / pongs as u32),
                Some(a.rss.saturating_sub(b.rss) / tally.joined as u64),
                Some(e.rss),
            ),
            _ => (None, None, None),
        };
        Report {
            members: self.cfg.members,
            joined: tally.joined,
            refused: tally.refused,
            failed: self.cfg.members - tally.joined - tally.refused,
            join_retries: tally.retries,
            slowed: stats.slowed.load(Ordering::Relaxed),
            join_time,
            pongs,
            pings_per_sec: pongs as f64 / elapsed.as_secs_f64(),
            rtt_p50: us(rtt.value_at_quantile(0.5)),
            rtt_p99: us(rtt.value_at_quantile(0.99)),
            rtt_p999: us(rtt.value_at_quantile(0.999)),
            rtt_max: us(rtt.max()),
            false_expiries: stats.false_expiries.load(Ordering::Relaxed),
            hung: self.hung,
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
        }
    }
}
