//! A WatchMembers resume from further back than this replica's own
//! history (SPEC §7.3: a `since_revision` read on one replica resumes on
//! any other, even one that started after it): the table as etcd had it at
//! that revision, and the changes after it from etcd's own history, applied
//! to a private view by the same code as the shared one, so the client gets
//! exactly the events every replica delivered. Caught up at the shared
//! view's revision, the watcher continues from the shared history. When
//! etcd compacted past the revision, the watcher gets a snapshot, as SPEC
//! says for a revision that is too old.
//!
//! A private view holds a copy of the table, so at most [`CATCH_UPS`] run
//! at once; a resume beyond that gets a snapshot.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::table;
use crate::cluster::records::Records;
use crate::etcd::{Mirrored, history};
use crate::liveness::{CoreConfig, Event, Registry};
use crate::server::state::{Shared, WallClock};

/// Catch-ups at once, per replica.
pub(crate) const CATCH_UPS: usize = 4;

/// One watcher catching up from etcd's history.
pub(crate) struct CatchUp {
    feed: mpsc::Receiver<Mirrored>,
    records: Option<Records>,
    view: Registry,
    prefix: String,
    epoch: u64,
    clock: WallClock,
    /// The shared view's revision when it began: where it hands over.
    until: u64,
    _permit: OwnedSemaphorePermit,
}

/// What the next step of a catch-up gave.
pub(crate) enum Step {
    /// Events, in revision order (none is fine).
    Events(Vec<Arc<Event>>),
    /// Caught up: continue from the shared history after the revision.
    Done(u64),
    /// etcd cannot give the history (compacted, unreachable): a snapshot.
    Failed,
}

impl CatchUp {
    /// A catch-up from `since` to `until` (the shared view's revision),
    /// when this replica can run one: cluster mode, `since` of this
    /// cluster's epoch, and a free slot.
    pub(crate) fn start(shared: &Shared, since: u64, until: u64) -> Option<Self> {
        let r = shared.replica.as_ref()?;
        let epoch = r.epoch()?;
        if since < epoch || since >= until {
            return None;
        }
        let permit = r.catch_ups.clone().try_acquire_owned().ok()?;
        let at = (since - epoch) as i64;
        Some(Self {
            feed: history(r.etcd.clone(), r.cfg.prefix.clone().into_bytes(), at),
            records: None,
            view: Registry::new(CoreConfig {
                history: 0,
                mass_failure: None,
                max_ping_rate: None,
                ..CoreConfig::default()
            }),
            prefix: r.cfg.prefix.clone(),
            epoch,
            clock: shared.clock,
            until,
            _permit: permit,
        })
    }

    /// The next step.
    pub(crate) async fn next(&mut self) -> Step {
        if self.view.revision() >= self.until && self.records.is_some() {
            return Step::Done(self.view.revision());
        }
        let Some(item) = self.feed.recv().await else {
            return Step::Failed;
        };
        let past = match &item {
            Mirrored::Put(kv) => self.epoch + kv.mod_revision.max(0) as u64 > self.until,
            Mirrored::Delete { revision, .. } => {
                self.epoch + (*revision).max(0) as u64 > self.until
            }
            Mirrored::Progress(revision) => self.epoch + (*revision).max(0) as u64 >= self.until,
            Mirrored::Snapshot { .. } => false,
        };
        if past {
            return Step::Done(self.until);
        }
        let clock = self.clock;
        let feed = (self.prefix.as_str(), self.epoch);
        table::apply(&mut self.records, &mut self.view, feed, item, |us| {
            clock.instant(us)
        });
        Step::Events(self.view.take_outbox().events)
    }
}
