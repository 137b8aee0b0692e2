//! The bench run: connect, join everybody, measure, hang some, report.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::Dial;

use super::member::{Joined, LEAVE_WITHIN, Member, Stats};
use super::watch::Fanout;
use super::{BenchConfig, ProcStats, Report};

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs .. 1 h, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// Runs the benchmark described by `cfg`.
pub async fn run(cfg: BenchConfig) -> Result<Report, String> {
    if cfg.members == 0 || cfg.connections == 0 {
        return Err("--members and --connections must be positive".into());
    }
    if !(0.0..=1.0).contains(&cfg.hung) {
        return Err("--hung must be a fraction in [0, 1]".into());
    }
    let before = cfg.server_pid.and_then(ProcStats::read);
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
    let hung = (cfg.members as f64 * cfg.hung).round() as usize;
    let stop = CancellationToken::new();
    let hang = CancellationToken::new();
    let (welcomed_tx, mut welcomed) = mpsc::channel::<Joined>(cfg.members);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(cfg.members);
    for i in 0..cfg.members {
        let member = Member {
            channel: channels[i % channels.len()].clone(),
            dial: dial.clone(),
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
            &dial,
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
