//! State shared by every RPC of one server: the registry behind one mutex,
//! and the places its changes go (health map, member-event broadcast, streams
//! to end, the timer driver).
//!
//! The registry's outbox is delivered while the mutex is still held, so the
//! health map and the event broadcast see changes in revision order. The
//! critical section of a ping that changes nothing is a slot lookup and a
//! store: no allocation, no delivery.

use std::sync::{Arc, Mutex, Weak};
use std::time::SystemTime;

use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::streams::{BeatStreams, Ends};
use crate::config::ServerConfig;
use crate::health::{HealthMap, MemberHealth, MemberTable};
use crate::liveness::timing::TokenBucket;
use crate::liveness::{CoreConfig, Event, EventKind, Health, MemberView, Outbox, Registry, Status};
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

    /// The instant of wall-clock time `micros` (µs since the Unix epoch),
    /// for display fields read from elsewhere (another replica's records).
    pub(crate) fn instant(&self, micros: u64) -> Instant {
        let wall = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(micros);
        match wall.duration_since(self.wall) {
            Ok(after) => self.mono + after,
            Err(e) => self.mono.checked_sub(e.duration()).unwrap_or(self.mono),
        }
    }

    /// µs since the Unix epoch of `at`.
    pub(crate) fn micros(&self, at: Instant) -> u64 {
        let ts = self.timestamp(at);
        (ts.seconds.max(0) as u64) * 1_000_000 + (ts.nanos.max(0) as u64) / 1000
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
    pub(crate) streams: BeatStreams,
    /// Server-wide join rate.
    pub(crate) joins: TokenBucket,
    /// Cluster mode: the cluster's table and this replica's pending writes
    /// (`None`: one server, whose core is the table).
    pub(crate) cluster: Option<Box<super::replica::ClusterInner>>,
}

impl Inner {
    /// The table every read serves (ListMembers, WatchMembers, Health):
    /// the cluster's view in cluster mode, else the core itself.
    pub(crate) fn table(&self) -> &Registry {
        match &self.cluster {
            Some(c) => &c.view,
            None => &self.core,
        }
    }

    /// `m` as read from the table, with the last ping this replica saw of
    /// it when it holds the member's stream (SPEC §7.7: `last_seen` is the
    /// last ping on that replica; elsewhere, the time of the last change).
    pub(crate) fn seen(&self, mut m: MemberView) -> MemberView {
        if self.cluster.is_some()
            && let Some(local) = self.core.get(&m.name)
            && local.session == m.session
        {
            m.last_seen = local.last_seen;
        }
        m
    }
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
    /// Moves whenever a Beat stream is ended (see [`super::streams`]).
    pub(crate) ends: Arc<Ends>,
    pub(crate) metrics: ServerMetrics,
    /// Notified on every change of the table (for the state writer).
    pub(crate) dirty: Arc<Notify>,
    /// Open WatchMembers streams.
    pub(crate) watches: Arc<super::watch_limit::WatchCount>,
    /// Cluster mode: this replica's link to etcd.
    pub(crate) replica: Option<Arc<super::replica::Replica>>,
    /// Bumped when the table started over with no events (a cluster's
    /// view resnapshotted): every WatchMembers stream sends a snapshot.
    pub(crate) resets: std::sync::atomic::AtomicU64,
    /// The routable endpoints xDS streams serve (SPEC §8), changed with
    /// the table.
    pub(crate) xds: Arc<crate::xds::Hub>,
}

impl Shared {
    /// State for a server started at `wall` (which also seeds revisions and
    /// sessions, so both keep increasing across restarts).
    pub(crate) fn new(
        cfg: ServerConfig,
        health: HealthMap,
        metrics: ServerMetrics,
        wall: SystemTime,
    ) -> Result<Arc<Self>, crate::config::ConfigError> {
        let micros = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        let core_cfg = CoreConfig {
            bounds: cfg.bounds(),
            retention: cfg.retention,
            history: cfg.history,
            initial_revision: micros,
            initial_session: micros,
            mass_failure: cfg.mass_failure,
            max_ping_rate: cfg.max_ping_rate,
        };
        let server_id = format!("heartbeat-{}-{micros:x}", std::process::id());
        let (cluster, replica) = match &cfg.cluster {
            Some(c) => {
                let replica = super::replica::Replica::new(c, &server_id)?;
                let view = super::replica::ClusterInner::new(&core_cfg);
                (Some(Box::new(view)), Some(Arc::new(replica)))
            }
            None => (None, None),
        };
        let core = Registry::new(CoreConfig {
            // In cluster mode the view keeps the history every read
            // serves; the core's own would never be read.
            history: if cluster.is_some() {
                0
            } else {
                core_cfg.history
            },
            ..core_cfg
        });
        let ends = Arc::new(Ends::default());
        let shared = Arc::new(Self {
            inner: Mutex::new(Inner {
                core,
                streams: BeatStreams::new(ends.clone()),
                joins: TokenBucket::new(cfg.max_join_rate, cfg.max_join_rate),
                cluster,
            }),
            health,
            events: broadcast::channel(cfg.watch_buffer).0,
            wake: Notify::new(),
            clock: WallClock::new(Instant::now(), wall),
            server_id,
            cfg,
            drain: CancellationToken::new(),
            ends,
            metrics,
            dirty: Arc::new(Notify::new()),
            watches: Arc::default(),
            replica,
            resets: Default::default(),
            xds: Arc::default(),
        });
        shared
            .health
            .serve_members_from(TableHealth(Arc::downgrade(&shared)));
        Ok(shared)
    }

    /// Begins the shutdown: every stream watching `drain` ends itself, and
    /// every joined Beat stream is woken to read its fate, as for any other
    /// end: a stream polls no cancellation future per ping. A Join checks
    /// `drain` under the lock this wakes the streams under, so none is
    /// missed.
    pub(crate) fn begin_drain(&self) {
        self.drain.cancel();
        self.with(|i| i.streams.drain());
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
            let Inner {
                core,
                streams,
                cluster,
                ..
            } = &mut *inner;
            if !core.outbox().transitions.is_empty() {
                self.metrics.budget(core.budget());
            }
            let events = match cluster {
                None => self.deliver(core.outbox(), streams),
                Some(c) => {
                    self.hand_over(core.outbox(), streams, c);
                    self.deliver(c.view.outbox(), streams)
                }
            };
            (r, events)
        };
        for event in &events {
            log_event(event);
        }
        r
    }

    /// Cluster mode: what this replica's core decided becomes writes to
    /// etcd (the table changes when the mirror shows them committed); the
    /// core still ends its streams, wakes the driver, and measures
    /// detection lateness.
    fn hand_over(
        &self,
        out: &mut Outbox,
        streams: &mut BeatStreams,
        cluster: &mut super::replica::ClusterInner,
    ) {
        if out.is_empty() {
            return;
        }
        let mut wrote = false;
        for event in out.events.drain(..) {
            wrote |= cluster.pending.decided(&event);
        }
        if wrote && let Some(r) = &self.replica {
            r.writes.notify_one();
        }
        out.health.clear();
        for t in out.transitions.drain(..) {
            if let Some(late) = t.late_by {
                self.metrics.lateness(late);
            }
        }
        self.log_held(out);
        for (session, end) in out.ends.drain(..) {
            self.metrics.end(&end);
            streams.end(session, end);
        }
        if std::mem::take(&mut out.wake) {
            self.wake.notify_one();
        }
    }

    fn log_held(&self, out: &mut Outbox) {
        for (name, silent, live) in out.held.drain(..) {
            self.metrics.held();
            warn!(
                member = %name,
                silent,
                live,
                "mass failure suspected: most members fell silent at once; holding this one SUSPECT for one more timeout"
            );
        }
    }

    /// Delivers the outbox; returns its events for logging.
    fn deliver(&self, out: &mut Outbox, streams: &mut BeatStreams) -> Vec<Arc<Event>> {
        if out.is_empty() {
            return Vec::new();
        }
        if !out.events.is_empty() {
            self.dirty.notify_one();
        }
        for event in &out.events {
            self.metrics.event(event);
            self.xds.apply(event);
            // No receiver is fine: nobody is watching.
            let _ = self.events.send(event.clone());
        }
        for t in out.transitions.drain(..) {
            self.metrics.transition(&t);
        }
        self.log_held(out);
        for (name, health) in out.health.drain(..) {
            if health.is_none() && !name.contains('/') {
                self.metrics.service_gone(&name);
            }
            self.health.set(name, health);
        }
        for (session, end) in out.ends.drain(..) {
            self.metrics.end(&end);
            streams.end(session, end);
        }
        if std::mem::take(&mut out.wake) {
            self.wake.notify_one();
        }
        std::mem::take(&mut out.events)
    }
}

/// The health of member names, read from the table every read serves
/// (the health map keeps them only while watched).
struct TableHealth(Weak<Shared>);

impl MemberHealth for TableHealth {
    fn read(&self, f: &mut dyn FnMut(&dyn MemberTable)) {
        match self.0.upgrade() {
            Some(shared) => shared.with(|i| f(i.table())),
            None => f(&NoMembers),
        }
    }
}

/// The table of a server that is gone: no member is listed.
struct NoMembers;

impl MemberTable for NoMembers {
    fn health(&self, _: &str) -> Health {
        None
    }

    fn listed(&self) -> usize {
        0
    }

    fn each(&self, _: &mut dyn FnMut(&str, Status)) {}
}

impl MemberTable for Registry {
    fn health(&self, name: &str) -> Health {
        Registry::health(self, name)
    }

    fn listed(&self) -> usize {
        Registry::len(self)
    }

    fn each(&self, f: &mut dyn FnMut(&str, Status)) {
        for m in self.members(None) {
            f(&m.name, m.health());
        }
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
