//! State shared by every RPC of one server: the registry behind one mutex,
//! and the places its changes go (health map, member-event broadcast, streams
//! to end, the timer driver).
//!
//! The registry's outbox is delivered while the mutex is still held, so the
//! health map and the event broadcast see changes in revision order. The
//! critical section of a ping that changes nothing is a slot lookup and a
//! store: no allocation, no delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::{Notify, broadcast, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::ServerConfig;
use crate::health::HealthMap;
use crate::liveness::timing::TokenBucket;
use crate::liveness::{CoreConfig, Event, EventKind, Outbox, Registry, StreamEnd};
use crate::metrics::ServerMetrics;

/// Maps the monotonic clock to wall-clock timestamps for display fields
/// (`joined_at`, `last_seen`, `server_time`). Read once at start; liveness
/// never looks at it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    mono: Instant,
    wall: SystemTime,
}

impl WallClock {
    pub(crate) fn new(mono: Instant, wall: SystemTime) -> Self {
        Self { mono, wall }
    }

    pub(crate) fn timestamp(&self, at: Instant) -> prost_types::Timestamp {
        let wall = match at.checked_duration_since(self.mono) {
            Some(after) => self.wall + after,
            None => self.wall - self.mono.duration_since(at),
        };
        wall.into()
    }
}

/// What the mutex guards.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) core: Registry,
    /// Open Beat streams by session, to end them on DEAD or takeover.
    pub(crate) streams: HashMap<u64, oneshot::Sender<StreamEnd>>,
    /// Server-wide join rate.
    pub(crate) joins: TokenBucket,
}

/// One server's state.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub(crate) health: HealthMap,
    pub(crate) events: broadcast::Sender<Arc<Event>>,
    pub(crate) wake: Notify,
    pub(crate) clock: WallClock,
    pub(crate) server_id: String,
    pub(crate) cfg: ServerConfig,
    /// Cancelled when shutdown begins: streams drain and end themselves.
    pub(crate) drain: CancellationToken,
    pub(crate) metrics: ServerMetrics,
    /// Notified on every change of the table (for the state writer).
    pub(crate) dirty: Arc<Notify>,
    /// Open WatchMembers streams.
    pub(crate) watches: Arc<super::watch_limit::WatchCount>,
}

impl Shared {
    /// State for a server started at `wall` (which also seeds revisions and
    /// sessions, so both keep increasing across restarts).
    pub(crate) fn new(
        cfg: ServerConfig,
        health: HealthMap,
        metrics: ServerMetrics,
        wall: SystemTime,
    ) -> Arc<Self> {
        let micros = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        let core = Registry::new(CoreConfig {
            bounds: cfg.bounds(),
            retention: cfg.retention,
            history: cfg.history,
            initial_revision: micros,
            initial_session: micros,
            mass_failure: cfg.mass_failure,
            max_ping_rate: cfg.max_ping_rate,
        });
        Arc::new(Self {
            inner: Mutex::new(Inner {
                core,
                streams: HashMap::new(),
                joins: TokenBucket::new(cfg.max_join_rate, cfg.max_join_rate),
            }),
            health,
            events: broadcast::channel(cfg.watch_buffer).0,
            wake: Notify::new(),
            clock: WallClock::new(Instant::now(), wall),
            server_id: format!("heartbeat-{}-{micros:x}", std::process::id()),
            cfg,
            drain: CancellationToken::new(),
            metrics,
            dirty: Arc::new(Notify::new()),
            watches: Arc::default(),
        })
    }

    /// Runs `f` on the registry, then delivers what it changed. Delivery
    /// happens under the lock (so every consumer sees revision order); the
    /// log lines for the changes are written after it is released.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let (r, events) = {
            // Every registry call leaves the table consistent before it could
            // panic, so a poisoned lock is still safe to use.
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let r = f(&mut inner);
            let Inner { core, streams, .. } = &mut *inner;
            if !core.outbox().transitions.is_empty() {
                self.metrics.budget(core.budget());
            }
            let out = core.outbox();
            let events = if out.is_empty() {
                Vec::new()
            } else {
                self.deliver(out, streams)
            };
            (r, events)
        };
        for event in &events {
            log_event(event);
        }
        r
    }

    /// Delivers the outbox; returns its events for logging.
    fn deliver(
        &self,
        out: &mut Outbox,
        streams: &mut HashMap<u64, oneshot::Sender<StreamEnd>>,
    ) -> Vec<Arc<Event>> {
        if !out.events.is_empty() {
            self.dirty.notify_one();
        }
        for event in &out.events {
            self.metrics.event(event);
            // No receiver is fine: nobody is watching.
            let _ = self.events.send(event.clone());
        }
        for t in out.transitions.drain(..) {
            self.metrics.transition(&t);
        }
        for (name, silent, live) in out.held.drain(..) {
            self.metrics.held();
            warn!(
                member = %name,
                silent,
                live,
                "mass failure suspected: most members fell silent at once; holding this one SUSPECT for one more timeout"
            );
        }
        for (name, health) in out.health.drain(..) {
            if health.is_none() && !name.contains('/') {
                self.metrics.service_gone(&name);
            }
            self.health.set(name, health);
        }
        for (session, end) in out.ends.drain(..) {
            self.metrics.end(&end);
            if let Some(tx) = streams.remove(&session) {
                let _ = tx.send(end);
            }
        }
        if std::mem::take(&mut out.wake) {
            self.wake.notify_one();
        }
        std::mem::take(&mut out.events)
    }
}

fn log_event(e: &Event) {
    let m = &e.member;
    let what = match e.kind {
        EventKind::Joined => "member joined",
        EventKind::Updated => "member updated",
        EventKind::Dead => "member dead",
        EventKind::Left => "member left",
        EventKind::Removed => "member removed",
    };
    info!(
        service = m.service(),
        instance = m.instance(),
        session = m.session,
        reason = e.reason.as_str(),
        state = %m.state,
        status = %m.status,
        revision = e.revision,
        "{what}"
    );
}
