//! The cluster's table on this replica: etcd's mirror applied, in revision
//! order, to the view every read serves, and its consequences here:
//!
//! - a record whose session moved past the stream held here ends that
//!   stream ABORTED ("superseded by session N"), as SPEC §7.4 asks, and the
//!   core lets go of it;
//! - a record another replica ended (the reaper's DEAD) ends it too;
//! - on the reaper (the oldest live replica), members whose owner's key is
//!   gone are adopted: SUSPECT, one grace of exactly one timeout, then DEAD
//!   (SPEC §7.5), by the same core and writer as its own streams.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;
use tracing::info;

use super::table::Change;
use super::writer::Want;
use super::{ClusterInner, Replica};
use crate::etcd::{Mirrored, mirror};
use crate::liveness::{Registry, State, StreamEnd};
use crate::server::state::{Inner, Shared};

/// Mirrors the cluster's prefix into the view until aborted.
pub(super) async fn run(shared: Arc<Shared>, r: Arc<Replica>) {
    let epoch = loop {
        if let Some(e) = r.epoch() {
            break e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut feed = mirror(r.etcd.clone(), r.cfg.prefix.clone().into_bytes());
    let mut ready = false;
    while let Some(item) = feed.recv().await {
        let adopted = shared.with(|i| apply(i, &shared, &r, epoch, item));
        if adopted > 0 {
            info!(
                members = adopted,
                "adopted members whose replica is gone: SUSPECT for one timeout unless they rejoin"
            );
        }
        if !ready {
            ready = true;
            r.view_ready.notify_one();
        }
        r.writes.notify_one();
    }
}

/// Applies one item of the mirror; returns how many orphans were adopted.
fn apply(i: &mut Inner, shared: &Shared, r: &Replica, epoch: u64, item: Mirrored) -> usize {
    let Inner {
        core,
        streams,
        cluster,
        ..
    } = i;
    let Some(c) = cluster.as_deref_mut() else {
        return 0;
    };
    let clock = shared.clock;
    let wall = |us: u64| clock.instant(us);
    let mut ends = Vec::new();
    let mut scan = false;
    let lag = match &item {
        Mirrored::Put(kv) => c.applied(kv.mod_revision),
        Mirrored::Delete { revision, .. } => c.applied(*revision),
        _ => None,
    };
    if let Some(lag) = lag {
        shared.metrics.cluster.view_lag(lag);
    }
    let feed = (r.cfg.prefix.as_str(), epoch);
    match super::table::apply(&mut c.records, &mut c.view, feed, item, wall) {
        Change::Reset => {
            let names: Vec<_> = c
                .records
                .as_ref()
                .map(|rs| rs.members.keys().cloned().collect())
                .unwrap_or_default();
            for name in names {
                reconcile(core, c, r, &name, &Held(streams), &mut ends);
            }
            shared.resets.fetch_add(1, Ordering::Relaxed);
            shared.xds.reset(&c.view.members(None));
            scan = true;
        }
        Change::Member(name) => reconcile(core, c, r, &name, &Held(streams), &mut ends),
        Change::Removed(name) => {
            if let Some(m) = core.get(&name).filter(|m| m.state.is_live()) {
                let session = m.session;
                core.forget(&name, session);
                ends.push((session, StreamEnd::Dead));
            }
        }
        Change::Replicas { deleted } => {
            // A deletion of this replica's key: the authority tells the
            // current registration's from an earlier one's by revision.
            if let Some((id, revision)) = deleted
                && id == r.id
            {
                r.key_gone.send_if_modified(|latest| {
                    let newer = revision > *latest;
                    *latest = (*latest).max(revision);
                    newer
                });
            }
            scan = true;
        }
        Change::Nothing => {}
    }
    for (session, end) in ends {
        shared.metrics.end(&end);
        streams.end(session, end);
    }
    if !scan {
        return 0;
    }
    if let Some(records) = &c.records {
        shared.metrics.cluster.replicas(records.replicas.len());
    }
    let adopted = adopt_orphans(core, c, r);
    shared.metrics.cluster.adopted(adopted);
    adopted
}

/// Adopts what is orphaned now (this replica just became able to: its
/// authority is OK again, or it became the reaper).
pub(super) fn rescan(shared: &Shared, r: &Replica) {
    let adopted = shared.with(|i| {
        let Inner { core, cluster, .. } = i;
        cluster
            .as_deref_mut()
            .map_or(0, |c| adopt_orphans(core, c, r))
    });
    if adopted > 0 {
        shared.metrics.cluster.adopted(adopted);
        info!(
            members = adopted,
            "adopted members whose replica is gone: SUSPECT for one timeout unless they rejoin"
        );
        r.writes.notify_one();
    }
}

/// The streams held here, by session.
struct Held<'a>(&'a crate::server::streams::BeatStreams);

impl Held<'_> {
    fn contains(&self, session: &u64) -> bool {
        self.0.contains(*session)
    }
}

/// What the record of `name` means for the core here: a stream it moved
/// past ends; a member it still has but another replica holds is let go.
fn reconcile(
    core: &mut Registry,
    c: &mut ClusterInner,
    r: &Replica,
    name: &str,
    held: &Held<'_>,
    ends: &mut Vec<(u64, StreamEnd)>,
) {
    let Some(local) = core.get(name) else {
        return;
    };
    let (session, live) = (local.session, local.state.is_live());
    let Some(rec) = c.records.as_ref().and_then(|rs| rs.members.get(name)) else {
        return;
    };
    let mine = rec.stored.owner == r.id;
    if rec.session > session {
        core.forget(name, session);
        if live {
            ends.push((session, StreamEnd::Superseded { by: rec.session }));
        }
    } else if rec.session == session && !mine {
        let ended = matches!(rec.state(), State::Dead | State::Left);
        if live && !ended && held.contains(&session) {
            // A reaper adopted a member whose stream is still here (this
            // replica's lease lapsed): claim it back.
            if let Some(m) = core.get(name) {
                c.pending.push(m.name.clone(), Want::of(m));
            }
        } else {
            // Another replica ended it, or holds it now (a peer took over
            // this replica's adoption, or the stream went): this core no
            // longer decides for it.
            core.forget(name, session);
            if live && held.contains(&session) {
                ends.push((session, StreamEnd::Dead));
            }
        }
    }
}

/// On the reaper: every orphan not held here is adopted. Returns how many.
fn adopt_orphans(core: &mut Registry, c: &mut ClusterInner, r: &Replica) -> usize {
    let Some(records) = c.records.as_ref() else {
        return 0;
    };
    if records.reaper() != Some(r.id.as_str()) || r.authority() != super::Authority::Ok {
        return 0;
    }
    let now = Instant::now();
    let mut adopted = 0;
    for name in records.orphans() {
        if core.get(&name).is_some() {
            continue;
        }
        let Some(rec) = records.members.get(&name) else {
            continue;
        };
        let view = records.view(&name, rec, |_| now);
        core.adopt(view, now);
        if let Some(m) = core.get(&name) {
            c.pending.push(m.name.clone(), Want::of(m));
            adopted += 1;
        }
    }
    adopted
}
