//! One replica of a cluster (SPEC §7, CLUSTER.md §2.2): the server's side
//! of cluster mode.
//!
//! ```text
//!  members ──Beat──► core (deadlines of the streams held here)
//!                      │ decided changes
//!                      ▼
//!                   writer (coalesced, ≤64 in flight, CAS + fence) ──► etcd
//!  authority: lease, keeper, OK / DOUBTFUL / LOST, re-registration ──► etcd
//!  view: mirror of etcd ──► the table every read serves, in etcd's order
//!          └─► core: a record that moved on ends the stream held here
//!          └─► reaper (oldest replica): orphans adopted for one timeout
//! ```
//!
//! The core never changes the served table itself: a change is visible
//! when etcd has it, on every replica at once, in one order. The Join is
//! the one write a stream waits for (its session is the commit revision).

mod authority;
pub(crate) mod catchup;
mod handoff;
mod join;
mod table;
mod view;
mod writer;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{Notify, watch};

pub(crate) use authority::Authority;
pub(crate) use join::commit_join;
pub(crate) use writer::Pending;

use super::state::Shared;
use crate::cluster::records::Records;
use crate::cluster::store::{Fence, Store};
use crate::config::{ClusterConfig, ConfigError};
use crate::etcd::Etcd;
use crate::liveness::{CoreConfig, Registry};

/// Deadline of one etcd call (CLUSTER.md: 1.5 s kept a lease through a
/// frozen leader; none lost it).
const ETCD_DEADLINE: Duration = Duration::from_millis(1500);

/// What the registry lock guards in cluster mode, besides the core.
#[derive(Debug)]
pub(crate) struct ClusterInner {
    /// The cluster's table, in etcd's revision order.
    pub(crate) view: Registry,
    /// The records behind it (`None` until the first snapshot).
    pub(crate) records: Option<Records>,
    /// This replica's writes not yet committed.
    pub(crate) pending: Pending,
    /// Revisions this replica committed and its view has not applied yet,
    /// with when (for the view's lag).
    pub(crate) committed: std::collections::BTreeMap<i64, tokio::time::Instant>,
}

impl ClusterInner {
    /// This replica committed `revision` now.
    pub(crate) fn committed(&mut self, revision: i64) {
        self.committed.insert(revision, tokio::time::Instant::now());
    }

    /// The view applied `revision`: how long after its commit here, if it
    /// was this replica's. Older entries (a resnapshot skipped them) go.
    pub(crate) fn applied(&mut self, revision: i64) -> Option<std::time::Duration> {
        let later = self.committed.split_off(&(revision + 1));
        let at = std::mem::replace(&mut self.committed, later).remove(&revision);
        at.map(|t| t.elapsed())
    }
}

impl ClusterInner {
    pub(crate) fn new(core: &CoreConfig) -> Self {
        Self {
            view: Registry::new(CoreConfig {
                initial_revision: 0,
                initial_session: 1,
                mass_failure: None,
                max_ping_rate: None,
                ..core.clone()
            }),
            records: None,
            pending: Pending::default(),
            committed: Default::default(),
        }
    }
}

/// This replica's link to etcd.
#[derive(Debug)]
pub(crate) struct Replica {
    pub(crate) etcd: Arc<Etcd>,
    pub(crate) store: Store,
    pub(crate) cfg: ClusterConfig,
    /// This replica's id (the server id).
    pub(crate) id: String,
    epoch: OnceLock<u64>,
    fence: Mutex<Option<Fence>>,
    lease: Mutex<Option<i64>>,
    authority: watch::Sender<Authority>,
    /// Wakes the writer.
    pub(crate) writes: Notify,
    /// The revision of the latest deletion of this replica's key the view
    /// saw: once above the current registration's revision, the lease is
    /// gone (revoked, or expired unnoticed), whatever the keeper says. A
    /// revision, not a wake-up: a one-shot notification stored while the
    /// replica was registering again was taken for the deletion of the new
    /// key, and the replica dropped its fresh registration, in a loop.
    pub(crate) key_gone: watch::Sender<i64>,
    /// Join writes in flight at once: a failover burst of thousands of
    /// re-Joins is pipelined to etcd at its pace instead of all at once
    /// (which made etcd miss the call deadline for half of 10k Joins).
    pub(crate) join_slots: Arc<tokio::sync::Semaphore>,
    /// Joins waiting for a slot or holding one (bounded: `join::JOIN_QUEUE`).
    pub(crate) joins_waiting: std::sync::atomic::AtomicUsize,
    /// Slots for WatchMembers catch-ups from etcd's history.
    pub(crate) catch_ups: Arc<tokio::sync::Semaphore>,
    /// Told when the view has its first snapshot (registration waits for
    /// it: a replica that accepts Joins knows the records).
    pub(crate) view_ready: Notify,
}

impl Replica {
    pub(crate) fn new(cfg: &ClusterConfig, id: &str) -> Result<Self, ConfigError> {
        let etcd = Etcd::with_tls(&cfg.endpoints, ETCD_DEADLINE, cfg.tls.as_ref())
            .map_err(|e| ConfigError(format!("--etcd-endpoints: {e}")))?;
        let etcd = Arc::new(etcd);
        Ok(Self {
            store: Store::new(etcd.clone(), &cfg.prefix),
            etcd,
            cfg: cfg.clone(),
            id: id.to_owned(),
            epoch: OnceLock::new(),
            fence: Mutex::new(None),
            lease: Mutex::new(None),
            authority: watch::channel(Authority::Starting).0,
            writes: Notify::new(),
            view_ready: Notify::new(),
            key_gone: watch::channel(0).0,
            join_slots: Arc::new(tokio::sync::Semaphore::new(writer::IN_FLIGHT)),
            joins_waiting: Default::default(),
            catch_ups: Arc::new(tokio::sync::Semaphore::new(catchup::CATCH_UPS)),
        })
    }

    /// The cluster's epoch, once read.
    pub(crate) fn epoch(&self) -> Option<u64> {
        self.epoch.get().copied()
    }

    /// This replica's current registration.
    pub(crate) fn fence(&self) -> Option<Fence> {
        self.fence.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Its authority now.
    pub(crate) fn authority(&self) -> Authority {
        *self.authority.borrow()
    }

    /// Ends this replica's lease (shutdown): its key goes at once, so the
    /// reaper starts the grace of members that did not move (SPEC §7.5).
    pub(crate) async fn revoke(&self) {
        let lease = self.lease.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(lease) = lease {
            match self.etcd.lease_revoke(lease).await {
                Ok(()) => tracing::info!(lease, "revoked this replica's etcd lease"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not revoke this replica's etcd lease; it ends at its TTL")
                }
            }
        }
    }
}

/// Runs this replica's tasks until shutdown: authority (epoch, lease,
/// registration), the view, and the writer.
pub(crate) fn start(shared: &Arc<Shared>) -> Option<tokio::task::JoinHandle<()>> {
    let replica = shared.replica.clone()?;
    let shared = shared.clone();
    Some(tokio::spawn(async move {
        let authority = tokio::spawn(authority::run(shared.clone(), replica.clone()));
        let view = tokio::spawn(view::run(shared.clone(), replica.clone()));
        let writer = tokio::spawn(writer::run(shared.clone(), replica.clone()));
        let handoff = tokio::spawn(handoff::run(shared.clone(), replica.clone()));
        shared.drain.cancelled().await;
        handoff.abort();
        // The writer flushes what the drain decided (LEFT, DEAD) first.
        let _ = tokio::time::timeout(shared.cfg.drain.max(Duration::from_secs(1)), writer).await;
        view.abort();
        authority.abort();
        replica.revoke().await;
    }))
}
