//! Whether this replica may act for the cluster (SPEC §7.6, CLUSTER.md
//! §2.8): its etcd lease, kept alive by the keeper, judged on this
//! process's monotonic clock from the send time of the last acknowledged
//! keepalive.
//!
//! ```text
//!  Starting ──registered──► OK ──no ack for TTL/2──► DOUBTFUL ──TTL──► LOST
//!                            ▲──────────── ack ─────────┘                │
//!                            └──── new lease, members re-adopted ◄── etcd: TTL 0
//! ```
//!
//! Only etcd saying the lease is gone (TTL 0) makes a new registration:
//! without an answer the lease may still live (etcd extends every lease
//! when a new leader takes over), and the old keeper keeps trying.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::{info, warn};

use super::Replica;
use super::writer::Want;
use crate::cluster::store::StoredReplica;
use crate::etcd::LeaseKeeper;
use crate::liveness::Status;
use crate::server::HEARTBEAT_SERVICE;
use crate::server::state::Shared;

/// What this replica may do (SPEC §7.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Authority {
    /// Not registered yet (etcd not reached since start).
    Starting,
    /// Its lease was acknowledged within half its TTL: it accepts Joins.
    Ok,
    /// No acknowledgement for half the TTL: Joins refused, NOT_SERVING.
    Doubtful,
    /// The lease ended (or must have): as DOUBTFUL, until a new lease.
    Lost,
}

impl Authority {
    pub(crate) fn label(self) -> crate::metrics::AuthorityLabel {
        use crate::metrics::AuthorityLabel as L;
        match self {
            Authority::Starting => L::Starting,
            Authority::Ok => L::Ok,
            Authority::Doubtful => L::Doubtful,
            Authority::Lost => L::Lost,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Authority::Starting => "STARTING",
            Authority::Ok => "OK",
            Authority::Doubtful => "DOUBTFUL",
            Authority::Lost => "LOST",
        }
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64)
}

/// Reads the epoch, registers, and keeps the authority current until the
/// task is aborted (at shutdown).
pub(super) async fn run(shared: Arc<Shared>, r: Arc<Replica>) {
    let epoch = retry("read the cluster's epoch", || r.store.epoch(now_micros())).await;
    let _ = r.epoch.set(epoch);
    r.view_ready.notified().await;
    let ttl = r.cfg.lease_ttl;
    let mut first = true;
    loop {
        let keeper = register(&r).await;
        if !first {
            readopt(&shared, &r);
        }
        first = false;
        let mut states = keeper.subscribe();
        let reg_rev = r.fence().map_or(i64::MAX, |f| f.reg_rev);
        let mut gone = r.key_gone.subscribe();
        loop {
            if *gone.borrow_and_update() > reg_rev {
                // etcd deleted this replica's key (a revoke, or etcd 3.4's
                // stale leader expiring a kept lease): the lease is gone
                // even if a keepalive was just answered. A deletion of an
                // earlier registration's key (seen late) is not this one.
                warn!("this replica's key is gone from etcd; registering again");
                publish(&shared, &r, Authority::Lost);
                break;
            }
            let s = *states.borrow_and_update();
            let now = Instant::now();
            let authority = if s.lost || now >= s.acked + ttl {
                Authority::Lost
            } else if now >= s.acked + ttl / 2 {
                Authority::Doubtful
            } else {
                Authority::Ok
            };
            publish(&shared, &r, authority);
            if s.lost {
                warn!("etcd says this replica's lease is gone; registering again");
                break;
            }
            let next = match authority {
                Authority::Ok => s.acked + ttl / 2,
                _ => s.acked + ttl,
            };
            tokio::select! {
                changed = states.changed() => if changed.is_err() { break },
                _ = tokio::time::sleep_until(next.max(now + Duration::from_millis(10))) => {}
                _ = gone.changed() => {}
            }
        }
    }
}

/// Sets the authority; logs and shows a change (`heartbeat.v1.Heartbeat`
/// is SERVING only while it is OK and the server is not shutting down).
fn publish(shared: &Shared, r: &Replica, to: Authority) {
    let mut from = to;
    r.authority.send_if_modified(|a| {
        from = std::mem::replace(a, to);
        from != to
    });
    if from == to {
        return;
    }
    shared.metrics.cluster.authority(to.label());
    let ttl = humantime::format_duration(r.cfg.lease_ttl);
    match to {
        Authority::Ok => info!(from = from.name(), "cluster authority OK: accepting joins"),
        Authority::Doubtful => warn!(
            from = from.name(),
            "cluster authority DOUBTFUL: no keepalive answer from etcd for half the lease TTL ({ttl}); refusing joins"
        ),
        Authority::Lost | Authority::Starting => warn!(
            from = from.name(),
            "cluster authority {}: this replica's lease ended or must have; refusing joins",
            to.name()
        ),
    }
    if !shared.drain.is_cancelled() {
        let status = if to == Authority::Ok {
            Status::Serving
        } else {
            Status::NotServing
        };
        shared.health.set(HEARTBEAT_SERVICE, Some(status));
    }
    if to == Authority::Ok {
        // Writes that waited for a registration can go, and orphans that
        // waited for a reaper with authority are adopted.
        r.writes.notify_one();
        super::view::rescan(shared, r);
    }
}

/// Grants a lease and registers this replica's key on it, retrying until
/// both succeed; keeps the lease alive from then on.
async fn register(r: &Replica) -> LeaseKeeper {
    let advertise = r.cfg.advertise.clone().unwrap_or_default();
    loop {
        let granted = Instant::now();
        let (lease, ttl) = retry("grant a lease", || r.etcd.lease_grant(r.cfg.lease_ttl)).await;
        let value = StoredReplica {
            advertise: advertise.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            lease,
        };
        match r.store.register(&r.id, &value).await {
            Ok(Some(fence)) => {
                info!(
                    replica = %r.id,
                    lease,
                    ttl = %humantime::format_duration(ttl),
                    registration = fence.reg_rev,
                    "registered this replica in etcd"
                );
                *r.fence.lock().unwrap_or_else(|p| p.into_inner()) = Some(fence);
                *r.lease.lock().unwrap_or_else(|p| p.into_inner()) = Some(lease);
                return LeaseKeeper::start(r.etcd.clone(), lease, ttl, granted);
            }
            Ok(None) => {
                warn!(replica = %r.id, "this replica's key is still in etcd; waiting for it to end")
            }
            Err(e) => warn!(error = %e, "could not register this replica; retrying"),
        }
        let _ = r.etcd.lease_revoke(lease).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// After a new registration: every stream still held here claims its
/// record again under the new registration (no event, no new session).
/// Records that moved on meanwhile fail their compare and end the stream.
fn readopt(shared: &Shared, r: &Replica) {
    let n = shared.with(|i| {
        let live = i.core.members(None);
        let Some(c) = &mut i.cluster else { return 0 };
        let mut n = 0;
        for m in live.iter().filter(|m| m.state.is_live()) {
            c.pending.push(m.name.clone(), Want::of(m));
            n += 1;
        }
        n
    });
    if n > 0 {
        info!(
            members = n,
            "re-adopting the members held here under the new registration"
        );
        r.writes.notify_one();
    }
}

/// Runs `call` until it succeeds, logging the first failure of a streak.
async fn retry<T, F>(what: &str, mut call: impl FnMut() -> F) -> T
where
    F: Future<Output = Result<T, crate::etcd::EtcdError>>,
{
    let mut failed = false;
    loop {
        match call().await {
            Ok(v) => {
                if failed {
                    info!("etcd reached: {what} succeeded");
                }
                return v;
            }
            Err(e) => {
                if !failed {
                    warn!(error = %e, "cannot {what} in etcd; retrying");
                }
                failed = true;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
