//! Server metrics. Updated where the registry's changes are delivered (under
//! its lock, so gauges move in revision order) and, for pings and streams,
//! with one atomic operation each.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::EdgeMetrics;
pub use super::labels::Rejection;
use super::labels::StateLabel;
use crate::liveness::{Event, EventKind, PingBudget, State, StreamEnd, Transition};

const STATES: [State; 4] = [State::Alive, State::Suspect, State::Dead, State::Left];

/// Most distinct services given their own `service` label value; the rest
/// share [`OTHER_SERVICES`] (service names come from clients).
pub const MAX_SERVICE_LABELS: usize = 1000;
/// The `service` label value shared by services past the limit.
pub const OTHER_SERVICES: &str = "_other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabels {
    service: String,
    state: StateLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: Rejection,
}

/// The metrics of one server; cheap to clone.
#[derive(Clone, Debug)]
pub struct ServerMetrics {
    members: Family<MemberLabels, Gauge>,
    streams: Gauge,
    joins: Counter,
    leaves: Counter,
    expirations: Counter,
    takeovers: Counter,
    removals: Counter,
    rejections: Family<ReasonLabels, Counter>,
    pings: Counter,
    lateness: Histogram,
    lag: Histogram,
    stalls: Counter,
    holds: Counter,
    /// The edge's metrics, registered in the same registry.
    pub(crate) edge: EdgeMetrics,
    /// Cluster mode's metrics.
    pub(crate) cluster: super::ClusterMetrics,
    /// Discovery's metrics.
    pub(crate) xds: super::XdsMetrics,
    offered: Gauge<f64, AtomicU64>,
    state_failures: Counter,
    watches: Gauge,
    lagged: Counter,
    resyncs: Counter,
    state_ok: Gauge,
    stretch: Gauge<f64, AtomicU64>,
    /// Live service -> its label value (own name or `_other`).
    labels: Arc<Mutex<HashMap<Arc<str>, Arc<str>>>>,
}

impl ServerMetrics {
    /// Registers the server metrics in `registry`, under [`super::PREFIX`].
    pub fn new(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix(super::PREFIX);
        let m = Self {
            members: Family::default(),
            streams: Gauge::default(),
            joins: Counter::default(),
            leaves: Counter::default(),
            expirations: Counter::default(),
            takeovers: Counter::default(),
            removals: Counter::default(),
            rejections: Family::default(),
            pings: Counter::default(),
            // 0.1 ms .. ~3.3 s
            lateness: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            // 0.1 ms .. ~3.3 s
            lag: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            stalls: Counter::default(),
            holds: Counter::default(),
            edge: EdgeMetrics::new(registry),
            cluster: super::ClusterMetrics::new(registry),
            xds: super::XdsMetrics::new(registry),
            offered: Gauge::default(),
            state_failures: Counter::default(),
            watches: Gauge::default(),
            lagged: Counter::default(),
            resyncs: Counter::default(),
            state_ok: Gauge::default(),
            stretch: Gauge::default(),
            labels: Arc::default(),
        };
        m.stretch.set(1.0);
        for &reason in Rejection::ALL {
            let _ = m.rejections.get_or_create(&ReasonLabels { reason });
        }
        m.register_members(registry);
        m.register_timing(registry);
        m.register_load(registry);
        m.register_state_dir(registry);
        m
    }

    /// The member table and the Beat streams: counts and lifecycle events.
    fn register_members(&self, registry: &mut Registry) {
        let m = self;
        registry.register(
            "members",
            "Listed members by service and state",
            m.members.clone(),
        );
        registry.register("beat_streams", "Open Beat streams", m.streams.clone());
        registry.register("joins", "Accepted Joins (new sessions)", m.joins.clone());
        registry.register("leaves", "Members that left with Leave", m.leaves.clone());
        registry.register(
            "expirations",
            "Members declared DEAD by their deadline",
            m.expirations.clone(),
        );
        registry.register(
            "takeovers",
            "Sessions superseded by a newer Join of the same identity",
            m.takeovers.clone(),
        );
        registry.register(
            "removals",
            "DEAD or LEFT members removed after retention",
            m.removals.clone(),
        );
        registry.register(
            "rejections",
            format!(
                "Beat streams (and watches) refused or ended for bad input, by reason ({})",
                Rejection::list()
            ),
            m.rejections.clone(),
        );
        registry.register("pings", "Pings received", m.pings.clone());
    }

    /// How timely the server is: detection lateness, its own lag and stalls, mass-failure holds.
    fn register_timing(&self, registry: &mut Registry) {
        let m = self;
        registry.register_with_unit(
            "detection_lateness",
            "Time from a member's deadline to the server declaring it DEAD",
            Unit::Seconds,
            m.lateness.clone(),
        );
        registry.register_with_unit(
            "scheduler_lag",
            "How late the timer driver woke (the server's own scheduling lag)",
            Unit::Seconds,
            m.lag.clone(),
        );
        registry.register(
            "mass_failure_holds",
            "Members held SUSPECT one more timeout because most members fell silent at once",
            m.holds.clone(),
        );
        registry.register(
            "stalls",
            "Server stalls detected and credited to pending member deadlines",
            m.stalls.clone(),
        );
    }

    /// Load: the ping budget and the WatchMembers streams.
    fn register_load(&self, registry: &mut Registry) {
        let m = self;
        registry.register(
            "offered_ping_rate",
            "Pings per second the live members would send at their negotiated intervals",
            m.offered.clone(),
        );
        registry.register(
            "interval_stretch",
            "Factor by which members' intervals are stretched to stay within --max-ping-rate (1 = none)",
            m.stretch.clone(),
        );
        registry.register(
            "watch_streams",
            "Open WatchMembers streams",
            m.watches.clone(),
        );
        registry.register(
            "watch_lagged",
            "WatchMembers streams that fell behind the live events (they resume from the history)",
            m.lagged.clone(),
        );
        registry.register(
            "watch_resyncs",
            "WatchMembers streams that fell too far behind and were sent a fresh snapshot",
            m.resyncs.clone(),
        );
    }

    /// Saving the table to --state-dir.
    fn register_state_dir(&self, registry: &mut Registry) {
        let m = self;
        registry.register(
            "state_save_failures",
            "Snapshots of the member table to --state-dir that failed (a full disk, a removed directory that cannot be created)",
            m.state_failures.clone(),
        );
        registry.register(
            "state_saved",
            "1 when the last snapshot to --state-dir succeeded, 0 when saving is failing",
            m.state_ok.clone(),
        );
    }

    /// Metrics registered nowhere (for servers nobody scrapes).
    pub fn unregistered() -> Self {
        Self::new(&mut Registry::default())
    }

    pub(crate) fn budget(&self, b: &PingBudget) {
        self.offered.set(b.offered());
        self.stretch.set(b.stretch());
    }

    pub(crate) fn ping(&self) {
        self.pings.inc();
    }

    pub(crate) fn scheduler_lag(&self, lag: std::time::Duration) {
        self.lag.observe(lag.as_secs_f64());
    }

    pub(crate) fn watch_opened(&self) {
        self.watches.inc();
    }

    pub(crate) fn watch_closed(&self) {
        self.watches.dec();
    }

    pub(crate) fn watch_lagged(&self) {
        self.lagged.inc();
    }

    pub(crate) fn watch_resynced(&self) {
        self.resyncs.inc();
    }

    pub(crate) fn state_saved(&self, ok: bool) {
        self.state_ok.set(i64::from(ok));
        if !ok {
            self.state_failures.inc();
        }
    }

    pub(crate) fn held(&self) {
        self.holds.inc();
    }

    pub(crate) fn stalled(&self) {
        self.stalls.inc();
    }

    pub(crate) fn stream_opened(&self) {
        self.streams.inc();
    }

    pub(crate) fn stream_closed(&self) {
        self.streams.dec();
    }

    pub(crate) fn rejected(&self, reason: Rejection) {
        self.rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub(crate) fn event(&self, e: &Event) {
        match e.kind {
            EventKind::Joined => self.joins.inc(),
            EventKind::Left => self.leaves.inc(),
            EventKind::Dead => self.expirations.inc(),
            EventKind::Removed => self.removals.inc(),
            EventKind::Updated => 0,
        };
    }

    pub(crate) fn end(&self, end: &StreamEnd) {
        if let StreamEnd::Superseded { .. } = end {
            self.takeovers.inc();
        }
    }

    pub(crate) fn transition(&self, t: &Transition) {
        let mut labels = self.labels.lock().unwrap_or_else(|p| p.into_inner());
        let service = match labels.get(t.service()) {
            Some(l) => l.clone(),
            None => {
                let own = labels.values().filter(|l| &***l != OTHER_SERVICES).count();
                let label: Arc<str> = if own < MAX_SERVICE_LABELS {
                    t.service().into()
                } else {
                    OTHER_SERVICES.into()
                };
                labels.insert(t.service().into(), label.clone());
                // Every state of a new service starts at 0.
                for state in STATES {
                    let _ = self.members.get_or_create(&MemberLabels {
                        service: label.to_string(),
                        state: StateLabel(state),
                    });
                }
                label
            }
        };
        drop(labels);
        let key = |s: State| MemberLabels {
            service: service.to_string(),
            state: StateLabel(s),
        };
        if let Some(from) = t.from {
            self.members.get_or_create(&key(from)).dec();
        }
        if let Some(to) = t.to {
            self.members.get_or_create(&key(to)).inc();
        }
        if let Some(late) = t.late_by {
            self.lateness.observe(late.as_secs_f64());
        }
    }

    /// How late a DEAD was detected (cluster mode, where state gauges
    /// follow the cluster's table and not this replica's core).
    pub(crate) fn lateness(&self, late: std::time::Duration) {
        self.lateness.observe(late.as_secs_f64());
    }

    /// A service has no member left: drop its series.
    pub(crate) fn service_gone(&self, service: &str) {
        let mut labels = self.labels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(label) = labels.remove(service)
            && &*label != OTHER_SERVICES
        {
            {
                for state in STATES {
                    self.members.remove(&MemberLabels {
                        service: label.to_string(),
                        state: StateLabel(state),
                    });
                }
            }
        }
    }
}
