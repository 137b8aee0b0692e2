//! One bench member: joins like a real client (RESOURCE_EXHAUSTED retried
//! with backoff within the join window), pings at the agreed interval
//! (adopting `Pong.interval` within SPEC §5's bounds), records RTT and how
//! its stream ended, hangs when told to, and leaves at the end. The protocol
//! is the client library's [`BeatStream`]; only the measuring is here.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

use super::BenchConfig;
use crate::client::{BeatStream, Ended, Incoming, JoinAs, JoinError, StreamOptions};
use crate::liveness::{Labels, Status};

#[derive(Debug)]
pub(super) struct Stats {
    pub(super) rtt: Mutex<Histogram<u64>>,
    pub(super) lateness: Mutex<Histogram<u64>>,
    pub(super) pongs: AtomicU64,
    pub(super) false_expiries: AtomicUsize,
    pub(super) hung_detected: AtomicUsize,
    /// Members told a longer interval than their Welcome's (Pong.interval).
    pub(super) slowed: AtomicUsize,
    pub(super) measuring: AtomicBool,
}

/// How a member's joining ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Joined {
    /// Welcomed, after this many RESOURCE_EXHAUSTED answers.
    Welcomed { retries: u32 },
    /// Every attempt within the join window got RESOURCE_EXHAUSTED: the
    /// server is at a limit (join rate, members, ping budget).
    Refused { retries: u32 },
    /// Another error (the server went away, a bad argument).
    Failed,
}

pub(super) struct Member {
    pub(super) channel: Channel,
    pub(super) dial: crate::client::Dial,
    pub(super) instance: String,
    pub(super) hangs: bool,
    pub(super) cfg: Arc<BenchConfig>,
    pub(super) stats: Arc<Stats>,
    pub(super) stop: CancellationToken,
    pub(super) hang: CancellationToken,
    pub(super) welcomed: mpsc::Sender<Joined>,
}

/// How long members have for their Leave at the end of a run.
pub(super) const LEAVE_WITHIN: Duration = Duration::from_secs(3);

/// Why a Join attempt failed.
enum NotWelcomed {
    Refused,
    Failed,
}

impl Member {
    /// Joins like a real client: RESOURCE_EXHAUSTED is retried with the
    /// client's jittered backoff until the join window ends.
    async fn join(&self) -> Result<BeatStream, Joined> {
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

    async fn attempt(&self) -> Result<BeatStream, NotWelcomed> {
        let join = JoinAs {
            service: self.cfg.service.clone(),
            instance: self.instance.clone(),
            interval: Some(self.cfg.interval),
            timeout: self.cfg.timeout,
            labels: Labels::new(),
            status: Status::Serving,
            endpoint: None,
        };
        // Like the old bench: no timestamps on pings (the server decodes
        // less), a few slots so a busy connection does not skip pings.
        let opts = StreamOptions {
            queue: 4,
            stamp: false,
            wait: self.cfg.join_within,
        };
        match BeatStream::open(self.channel.clone(), &self.dial, &join, opts).await {
            Ok(stream) => Ok(stream),
            Err(JoinError::Refused(s)) if s.code() == Code::ResourceExhausted => {
                Err(NotWelcomed::Refused)
            }
            Err(_) => Err(NotWelcomed::Failed),
        }
    }

    pub(super) async fn run(self) {
        let mut stream = match self.join().await {
            Ok(joined) => joined,
            Err(outcome) => {
                let _ = self.welcomed.send(outcome).await;
                return;
            }
        };
        let (joined_at, base, timeout) = (Instant::now(), stream.interval(), stream.timeout());
        let mut slowed = false;
        // Spread the members' pings over the interval.
        let offset = base.mul_f64(rand::random::<f64>());
        let mut ticker = ticker(joined_at + offset, base);
        let mut hung = false;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => {
                    if !hung {
                        let _ = stream.leave("bench done", LEAVE_WITHIN).await;
                    }
                    return;
                }
                _ = self.hang.cancelled(), if self.hangs && !hung => hung = true,
                _ = ticker.tick(), if !hung => {
                    stream.ping(Status::Serving);
                }
                msg = stream.next() => match msg {
                    Incoming::Pong { rtt, interval } => {
                        // Adopt a changed interval, as a real client must.
                        if let Some(new) = interval {
                            ticker = self::ticker(Instant::now() + new, new);
                            if new > base && !slowed {
                                slowed = true;
                                self.stats.slowed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        if let Some(rtt) = rtt && self.stats.measuring.load(Ordering::Relaxed) {
                            self.stats.record_rtt(rtt);
                        }
                    }
                    Incoming::Drain(_) => {}
                    Incoming::Ended(_) if self.stop.is_cancelled() => return,
                    Incoming::Ended(Ended::Status(Code::DeadlineExceeded, _)) if hung => {
                        let last = stream.last_ping().unwrap_or(joined_at);
                        self.stats.record_detection(Instant::now().saturating_duration_since(last + timeout));
                        return;
                    }
                    Incoming::Ended(_) => {
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

fn ticker(start: Instant, period: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(start, period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

impl Stats {
    fn record_rtt(&self, rtt: Duration) {
        let us = (rtt.as_micros() as u64).max(1);
        let mut h = self.rtt.lock().unwrap_or_else(|p| p.into_inner());
        h.saturating_record(us);
        self.pongs.fetch_add(1, Ordering::Relaxed);
    }

    fn record_detection(&self, late: Duration) {
        let us = (late.as_micros() as u64).max(1);
        let mut h = self.lateness.lock().unwrap_or_else(|p| p.into_inner());
        h.saturating_record(us);
        self.hung_detected.fetch_add(1, Ordering::Relaxed);
    }
}
