//! Health Watch fan-out, seen from the outside: `watchers` streams of
//! `grpc.health.v1.Health/Watch` on one service name, whose only member (the
//! flipper) toggles its status once a second. Each toggle flips the service's
//! health; the time from the flipper's Ping to each watcher's message is the
//! fan-out latency a load balancer or kubelet-style watcher would see.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::client::{BeatStream, Dial, Incoming, JoinAs, StreamOptions};
use crate::liveness::Status;

use crate::pb::health::v1::health_check_response::ServingStatus;
use crate::pb::health::v1::{HealthCheckRequest, health_client::HealthClient};

/// The last flip: its number, when its Ping was sent, and the health it
/// should produce.
#[derive(Debug, Clone, Copy)]
struct Flip {
    n: u64,
    at: Instant,
    expect: i32,
}

/// What the fan-out measured.
#[derive(Debug, Clone)]
pub(super) struct FanoutReport {
    pub watchers: usize,
    pub flips: u64,
    pub deliveries: u64,
    pub latency: Histogram<u64>,
}

/// A running fan-out measurement.
pub(super) struct Fanout {
    flip: Arc<Mutex<Flip>>,
    toggle: mpsc::Sender<()>,
    latency: Arc<Mutex<Histogram<u64>>>,
    deliveries: Arc<AtomicU64>,
    ready: Arc<AtomicUsize>,
    watchers: usize,
    stop: CancellationToken,
}

impl Fanout {
    /// Joins the flipper to `<service>-flip` and opens the watchers over
    /// `channels`; returns once every watcher has seen SERVING.
    pub(super) async fn start(
        channels: &[Channel],
        dial: &Dial,
        service: &str,
        watchers: usize,
        interval: Duration,
        histogram: fn() -> Histogram<u64>,
    ) -> Result<Self, String> {
        let name = format!("{service}-flip");
        let flip = Arc::new(Mutex::new(Flip {
            n: 0,
            at: Instant::now(),
            expect: ServingStatus::Serving as i32,
        }));
        let stop = CancellationToken::new();
        let (toggle, toggles) = mpsc::channel(1);
        flipper(
            channels[0].clone(),
            dial,
            &name,
            interval,
            flip.clone(),
            toggles,
            stop.clone(),
        )
        .await?;
        let me = Self {
            flip,
            toggle,
            latency: Arc::new(Mutex::new(histogram())),
            deliveries: Arc::new(AtomicU64::new(0)),
            ready: Arc::new(AtomicUsize::new(0)),
            watchers,
            stop,
        };
        for i in 0..watchers {
            let channel = channels[i % channels.len()].clone();
            tokio::spawn(me.watcher(channel, dial.clone(), name.clone()));
        }
        let all = async {
            while me.ready.load(Ordering::Relaxed) < watchers {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .map_err(|_| {
                format!(
                    "only {} of {watchers} health watchers got their first status within 60 s",
                    me.ready.load(Ordering::Relaxed)
                )
            })?;
        Ok(me)
    }

    fn watcher(
        &self,
        channel: Channel,
        dial: Dial,
        name: String,
    ) -> impl Future<Output = ()> + use<> {
        let (flip, latency, deliveries, ready, stop) = (
            self.flip.clone(),
            self.latency.clone(),
            self.deliveries.clone(),
            self.ready.clone(),
            self.stop.clone(),
        );
        async move {
            let mut client = HealthClient::new(channel);
            let req = dial.request(HealthCheckRequest { service: name });
            let Ok(resp) = client.watch(req).await else {
                return;
            };
            let mut stream = resp.into_inner();
            let mut seen = 0;
            let mut first = true;
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return,
                    msg = stream.message() => msg,
                };
                let Ok(Some(msg)) = msg else { return };
                let now = Instant::now();
                if first && msg.status == ServingStatus::Serving as i32 {
                    first = false;
                    ready.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let f = *flip.lock().unwrap_or_else(|p| p.into_inner());
                if f.n > seen && msg.status == f.expect {
                    seen = f.n;
                    let us = now.saturating_duration_since(f.at).as_micros() as u64;
                    latency
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .saturating_record(us.max(1));
                    deliveries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Flips the service's health once.
    pub(super) async fn flip(&self) {
        let _ = self.toggle.send(()).await;
    }

    /// Waits (bounded) for the last flip to reach every watcher, stops, and
    /// reports.
    pub(super) async fn finish(self) -> FanoutReport {
        let flips = self.flip.lock().unwrap_or_else(|p| p.into_inner()).n;
        let expected = flips * self.watchers as u64;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.deliveries.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop.cancel();
        FanoutReport {
            watchers: self.watchers,
            flips,
            deliveries: self.deliveries.load(Ordering::Relaxed),
            latency: self
                .latency
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// The flipper: the one member of `name`, pinging every `interval` and
/// toggling its status (and so the service's health) on each `toggles`.
async fn flipper(
    channel: Channel,
    dial: &Dial,
    name: &str,
    interval: Duration,
    flip: Arc<Mutex<Flip>>,
    mut toggles: mpsc::Receiver<()>,
    stop: CancellationToken,
) -> Result<(), String> {
    let join = JoinAs {
        service: name.to_owned(),
        instance: "flipper".into(),
        interval: Some(interval),
        timeout: None,
        labels: Default::default(),
        status: Status::Serving,
        endpoint: None,
    };
    let opts = StreamOptions {
        queue: 4,
        ..StreamOptions::default()
    };
    let mut stream = BeatStream::open(channel, dial, &join, opts)
        .await
        .map_err(|e| format!("flipper: {e}"))?;
    tokio::spawn(async move {
        let mut status = Status::Serving;
        let mut ticker = tokio::time::interval(stream.interval());
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {
                    stream.ping(status);
                }
                Some(()) = toggles.recv() => {
                    status = match status {
                        Status::Serving => Status::NotServing,
                        Status::NotServing => Status::Serving,
                    };
                    let expect = match status {
                        Status::Serving => ServingStatus::Serving,
                        Status::NotServing => ServingStatus::NotServing,
                    } as i32;
                    {
                        let mut f = flip.lock().unwrap_or_else(|p| p.into_inner());
                        *f = Flip { n: f.n + 1, at: Instant::now(), expect };
                    }
                    // A skipped ping only delays the flip to the next tick
                    // (which carries the same status); it is never lost.
                    stream.ping(status);
                }
                msg = stream.next() => {
                    if matches!(msg, Incoming::Ended(_)) { return }
                }
            }
        }
    });
    Ok(())
}
