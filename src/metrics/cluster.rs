//! Cluster mode's metrics (SPEC §7): this replica's authority, the
//! replicas it sees, its etcd writes (latency, errors, backlog), the lag of
//! its view behind its own commits, and the orphans it adopted. Registered
//! in every server, at 0 in embedded mode, so dashboards need no mode.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

label_values! {
    /// A replica's authority (SPEC §7.6).
    pub enum AuthorityLabel {
        /// Not registered in etcd yet.
        Starting => "STARTING",
        /// Lease acknowledged within half its TTL.
        Ok => "OK",
        /// No acknowledgement for half the TTL.
        Doubtful => "DOUBTFUL",
        /// The lease ended (or must have).
        Lost => "LOST",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: AuthorityLabel,
}

/// Cluster mode's metrics; cheap to clone.
#[derive(Clone, Debug)]
pub struct ClusterMetrics {
    authority: Family<StateLabels, Gauge>,
    replicas: Gauge,
    writes: Histogram,
    write_errors: Counter,
    pending: Gauge,
    view_lag: Histogram,
    adopted: Counter,
}

impl ClusterMetrics {
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("cluster");
        let m = Self {
            authority: Family::default(),
            replicas: Gauge::default(),
            // 0.1 ms .. ~3.3 s
            writes: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            write_errors: Counter::default(),
            pending: Gauge::default(),
            view_lag: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            adopted: Counter::default(),
        };
        for &state in AuthorityLabel::ALL {
            let _ = m.authority.get_or_create(&StateLabels { state });
        }
        registry.register(
            "authority",
            format!(
                "1 for this replica's authority now ({})",
                AuthorityLabel::list()
            ),
            m.authority.clone(),
        );
        registry.register(
            "replicas",
            "Live replicas (keys in etcd) this replica sees",
            m.replicas.clone(),
        );
        registry.register_with_unit(
            "etcd_write",
            "Duration of this replica's member writes to etcd",
            Unit::Seconds,
            m.writes.clone(),
        );
        registry.register(
            "etcd_write_errors",
            "Member writes to etcd that got no answer or an error",
            m.write_errors.clone(),
        );
        registry.register(
            "pending_writes",
            "Member changes decided here and not yet committed to etcd",
            m.pending.clone(),
        );
        registry.register_with_unit(
            "view_lag",
            "From this replica's commit to its view applying it (the watch lag)",
            Unit::Seconds,
            m.view_lag.clone(),
        );
        registry.register(
            "orphans_adopted",
            "Members whose replica was gone, adopted by this one as the reaper",
            m.adopted.clone(),
        );
        m
    }

    pub(crate) fn authority(&self, to: AuthorityLabel) {
        for &state in AuthorityLabel::ALL {
            let on = i64::from(state == to);
            self.authority.get_or_create(&StateLabels { state }).set(on);
        }
    }

    pub(crate) fn replicas(&self, n: usize) {
        self.replicas.set(n as i64);
    }

    pub(crate) fn write(&self, ok: bool, took: Duration) {
        self.writes.observe(took.as_secs_f64());
        if !ok {
            self.write_errors.inc();
        }
    }

    pub(crate) fn pending(&self, n: usize) {
        self.pending.set(n as i64);
    }

    pub(crate) fn view_lag(&self, lag: Duration) {
        self.view_lag.observe(lag.as_secs_f64());
    }

    pub(crate) fn adopted(&self, n: usize) {
        self.adopted.inc_by(n as u64);
    }
}
