//! One bench member: joins like a real client (RESOURCE_EXHAUSTED retried
//! with backoff within the join window), pings at the agreed interval
//! (adopting `Pong.interval` within SPEC §5's bounds), records RTT and how
//! its stream ended, hangs when told to, and leaves at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

use super::BenchConfig;
use crate::liveness::timing::client_interval;
use crate::pb::heartbeat::v1::{
    BeatRequest, Join, Leave, Ping, beat_request, beat_response, heartbeat_client::HeartbeatClient,
};
use crate::pb::{duration_from_pb as std_duration, duration_to_pb as pb};

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
    pub(super) cfg: BenchConfig,
    pub(super) stats: Arc<Stats>,
    pub(super) stop: CancellationToken,
    pub(super) hang: CancellationToken,
    pub(super) welcomed: mpsc::Sender<Joined>,
}

/// How long members have for their Leave at the end of a run.
pub(super) const LEAVE_WITHIN: Duration = Duration::from_secs(3);

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
        let mut responses = match client
            .beat(self.dial.request(ReceiverStream::new(rx)))
            .await
        {
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

    pub(super) async fn run(self) {
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
