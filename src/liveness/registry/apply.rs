//! The table as a view of changes decided elsewhere (cluster mode, SPEC §7):
//! every replica applies the records committed in etcd, in etcd's revision
//! order, to a registry that runs no deadlines. It is the same table, the
//! same health accounting, history and events as one server's, so
//! ListMembers, WatchMembers and Health have one implementation in both
//! modes; only who decides the changes differs.
//!
//! And the other direction: a replica's own core lets go of a member whose
//! record moved on elsewhere ([`Registry::forget`]).

use std::sync::Arc;

use tokio::time::Instant;

use super::Registry;
use super::entry::{Entry, Protection};
use crate::liveness::member::{EventKind, MemberView, Reason, State};

impl Registry {
    /// Sets the member `view.name` to `view`, as committed at `revision`
    /// (greater than [`Registry::revision`]). The event follows from the
    /// change: a new session is JOINED, DEAD and LEFT are theirs, the rest
    /// UPDATED. No deadline is armed: the replica holding the stream runs it.
    pub fn apply(&mut self, revision: u64, view: MemberView, reason: Reason) {
        let to = view.state;
        let after = Some(view.health());
        let name = view.name.clone();
        let (slot, before, from, kind) = match self.index.get(&*name) {
            Some(&slot) => {
                let entry = self.entry_mut(slot);
                let same = entry.view.session == view.session
                    && entry.view.state == to
                    && entry.view.status == view.status;
                if same {
                    // Only who holds it changed (an adoption): no event.
                    entry.view = view;
                    self.revision = revision.max(self.revision);
                    return;
                }
                let (before, from) = (Some(entry.view.health()), entry.view.state);
                let kind = match to {
                    _ if entry.view.session != view.session => EventKind::Joined,
                    State::Dead => EventKind::Dead,
                    State::Left => EventKind::Left,
                    State::Alive | State::Suspect => EventKind::Updated,
                };
                if from.is_live() && to.is_live() && entry.view.session != view.session {
                    let old = (entry.base_interval, entry.view.timeout);
                    self.budget.remove(old.0, old.1);
                    self.budget.add(view.interval, view.timeout);
                }
                let entry = self.entry_mut(slot);
                entry.base_interval = view.interval;
                entry.view = view;
                (slot, before, Some(from), kind)
            }
            None => {
                let kind = match to {
                    State::Dead => EventKind::Dead,
                    State::Left => EventKind::Left,
                    State::Alive | State::Suspect => EventKind::Joined,
                };
                let slot = self.insert_view(view, None);
                (slot, None, None, kind)
            }
        };
        self.account(slot, before, after);
        if from != Some(to) {
            self.moved(slot, from, Some(to), None);
        }
        self.emit_at(revision, kind, reason, slot);
    }

    /// Removes the member `name`, as committed at `revision`: REMOVED.
    /// Unknown names change nothing.
    pub fn apply_removed(&mut self, revision: u64, name: &str) {
        let Some(&slot) = self.index.get(name) else {
            return;
        };
        let entry = self.entry_mut(slot);
        let (before, from) = (Some(entry.view.health()), entry.view.state);
        self.account(slot, before, None);
        self.emit_at(revision, EventKind::Removed, Reason::Retention, slot);
        self.moved(slot, Some(from), None, None);
        self.release(slot);
    }

    /// Nothing changed up to `revision` (an etcd progress notification):
    /// reads now answer at it.
    pub fn advance(&mut self, revision: u64) {
        if revision > self.revision {
            self.revision = revision;
            if self.history.is_empty() {
                self.forgotten = revision;
            }
        }
    }

    /// Replaces the whole table with `members` as of `revision`, with no
    /// events: the view's source started over (a snapshot after etcd
    /// compacted past it). Health names move to their new values; the
    /// history is dropped, so every resume before `revision` gets a
    /// snapshot.
    pub fn reset(&mut self, revision: u64, members: Vec<MemberView>) {
        let names: Vec<Arc<str>> = self.index.keys().cloned().collect();
        for name in names {
            if let Some(&slot) = self.index.get(&name) {
                let entry = self.entry_mut(slot);
                let (before, from) = (Some(entry.view.health()), entry.view.state);
                self.account(slot, before, None);
                self.moved(slot, Some(from), None, None);
                self.release(slot);
            }
        }
        for view in members {
            let (to, after) = (view.state, Some(view.health()));
            let slot = self.insert_view(view, None);
            self.account(slot, None, after);
            self.moved(slot, None, Some(to), None);
        }
        self.history.clear();
        self.revision = self.revision.max(revision);
        self.forgotten = self.revision;
    }

    /// Takes over a member whose holder is gone (a cluster's reaper, SPEC
    /// §7.5): a live one becomes SUSPECT with one grace of exactly its
    /// timeout from `now` (exempt from mass-failure holds: never more); a
    /// DEAD or LEFT one is removed one retention from `now`. No event: the
    /// caller writes the change. Ignored if the name is listed here.
    pub fn adopt(&mut self, mut view: MemberView, now: Instant) {
        if self.index.contains_key(&*view.name) {
            return;
        }
        let live = view.state.is_live();
        if live {
            view.state = State::Suspect;
        }
        view.last_seen = now;
        let (to, after) = (view.state, Some(view.health()));
        let slot = self.insert_view(view, (!live).then_some(now));
        self.account(slot, None, after);
        self.moved(slot, None, Some(to), None);
        let due = self.due(slot);
        self.arm(slot, due);
    }

    /// Lets go of session `session` of `name` without an event: its record
    /// moved on elsewhere (another replica took it over, or a reaper ended
    /// it), so this table no longer decides for it. Returns whether it was
    /// here. A newer session of the name is kept.
    pub fn forget(&mut self, name: &str, session: u64) -> bool {
        let Some(&slot) = self.index.get(name) else {
            return false;
        };
        let entry = self.entry_mut(slot);
        if entry.view.session > session {
            return false;
        }
        let (before, from) = (Some(entry.view.health()), entry.view.state);
        self.account(slot, before, None);
        self.moved(slot, Some(from), None, None);
        self.release(slot);
        true
    }

    /// Lists `view` (not listed yet) as decided elsewhere: exempt from
    /// mass-failure holds, `ended_at` for a DEAD or LEFT one. Returns its slot.
    fn insert_view(&mut self, view: MemberView, ended_at: Option<Instant>) -> u32 {
        let name = view.name.clone();
        let slot = self.alloc(Entry {
            base_interval: view.interval,
            view,
            ended_at,
            stall_mark: super::entry::mark(self.stall),
            protection: Protection::Exempt,
        });
        self.index.insert(name, slot);
        slot
    }
}
