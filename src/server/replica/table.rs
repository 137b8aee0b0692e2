//! The cluster's table from a mirror of etcd: the records and the view
//! they make, changed by one item of the feed at a time. Pure (no lock, no
//! replica), so the shared view of a replica and a private view catching a
//! WatchMembers client up from the past run the same code and deliver the
//! same events.

use std::sync::Arc;

use tokio::time::Instant;

use crate::cluster::records::{Key, Record, Records, reason};
use crate::cluster::store::{revision, session};
use crate::etcd::Mirrored;
use crate::liveness::Registry;

/// What an item of the feed changed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Everything (a snapshot).
    Reset,
    /// A member's record, now at this name.
    Member(Arc<str>),
    /// A member's record was deleted.
    Removed(Arc<str>),
    /// A replica key came or went (`deleted`: the id and revision of a
    /// deletion).
    Replicas { deleted: Option<(String, i64)> },
    /// Nothing the view shows (progress, other keys, an unreadable value).
    Nothing,
}

/// Applies `item` to `records` and `view`; `wall` maps stored wall-clock
/// µs to this process's clock.
pub(crate) fn apply(
    records: &mut Option<Records>,
    view: &mut Registry,
    (prefix, epoch): (&str, u64),
    item: Mirrored,
    wall: impl Fn(u64) -> Instant,
) -> Change {
    match item {
        Mirrored::Snapshot { revision, kvs } => {
            let mut fresh = Records::new(prefix, epoch);
            for kv in &kvs {
                match fresh.key(&kv.key) {
                    Key::Member(name) => {
                        fresh.put_member(name, kv);
                    }
                    Key::Replica(id) => fresh.put_replica(id, kv),
                    Key::Other => {}
                }
            }
            let views = fresh
                .members
                .iter()
                .map(|(name, rec)| fresh.view(name, rec, &wall))
                .collect();
            view.reset(epoch + revision.max(0) as u64, views);
            *records = Some(fresh);
            Change::Reset
        }
        Mirrored::Put(kv) => {
            let Some(records) = records.as_mut() else {
                return Change::Nothing;
            };
            match records.key(&kv.key) {
                Key::Member(name) => {
                    let name: Arc<str> = name.into();
                    records.put_member(&name, &kv);
                    // The view takes the feed's record even when a commit
                    // of this replica told the records first.
                    let Ok(stored) = prost::Message::decode(kv.value.as_slice()) else {
                        return Change::Nothing;
                    };
                    let rec = Record {
                        mod_rev: kv.mod_revision,
                        session: session(epoch, &kv, &stored),
                        stored,
                    };
                    let member = records.view(&name, &rec, wall);
                    view.apply(revision(epoch, &kv), member, reason(&rec));
                    Change::Member(name)
                }
                Key::Replica(id) => {
                    records.put_replica(id, &kv);
                    Change::Replicas { deleted: None }
                }
                Key::Other => Change::Nothing,
            }
        }
        Mirrored::Delete { key, revision } => {
            let Some(records) = records.as_mut() else {
                return Change::Nothing;
            };
            match records.key(&key) {
                Key::Member(name) => {
                    let name: Arc<str> = name.into();
                    records.members.remove(&name);
                    view.apply_removed(epoch + revision.max(0) as u64, &name);
                    Change::Removed(name)
                }
                Key::Replica(id) => {
                    records.replicas.remove(id);
                    Change::Replicas {
                        deleted: Some((id.to_owned(), revision)),
                    }
                }
                Key::Other => Change::Nothing,
            }
        }
        Mirrored::Progress(revision) => {
            view.advance(epoch + revision.max(0) as u64);
            Change::Nothing
        }
    }
}
