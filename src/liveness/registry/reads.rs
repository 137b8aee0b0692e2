//! Reading the table: revision, members (sorted, or a batch at a time in
//! slot order for lazy snapshots), one member, its deadline, the health of a
//! name, and the event history. Nothing here changes the table.

use std::sync::Arc;

use tokio::time::Instant;

use super::Registry;
use super::entry::{ServiceCount, silence_allowed};
use crate::liveness::member::{Event, Health, MemberView};

impl Registry {
    /// Revision of the table now.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// Number of listed members (in any state).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no member is listed.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Listed members, of one service or all, ordered by service then instance.
    pub fn members(&self, service: Option<&str>) -> Vec<MemberView> {
        let mut out: Vec<MemberView> = self
            .slots
            .iter()
            .flatten()
            .map(|e| &e.view)
            .filter(|v| service.is_none_or(|s| v.service() == s))
            .cloned()
            .collect();
        out.sort_unstable_by(|a, b| (a.service(), a.instance()).cmp(&(b.service(), b.instance())));
        out
    }

    /// Appends to `out` up to `limit` members of `service` (or all) from slot
    /// `from` on, in slot order, looking at no more than `scan` slots.
    /// Returns the slot to continue from, `None` when the table is done.
    ///
    /// This is how a snapshot is read lazily, a batch at a time, by a reader
    /// that costs the server only its position: a member's slot stays the
    /// same for as long as it is listed, and every event carries its slot.
    pub fn members_from(
        &self,
        from: u32,
        service: Option<&str>,
        limit: usize,
        scan: usize,
        out: &mut Vec<MemberView>,
    ) -> Option<u32> {
        let start = from as usize;
        let end = start.saturating_add(scan).min(self.slots.len());
        let mut taken = 0;
        for (i, slot) in self.slots.iter().enumerate().take(end).skip(start) {
            if taken == limit {
                return Some(i as u32);
            }
            if let Some(e) = slot
                && service.is_none_or(|s| e.view.service() == s)
            {
                out.push(e.view.clone());
                taken += 1;
            }
        }
        (end < self.slots.len()).then_some(end as u32)
    }

    /// One member by `service/instance` name.
    pub fn get(&self, name: &str) -> Option<&MemberView> {
        let slot = *self.index.get(name)?;
        self.slots[slot as usize].as_ref().map(|e| &e.view)
    }

    /// When a live member becomes DEAD unless it pings (stall credit
    /// included); `None` for unknown, DEAD or LEFT members.
    pub fn deadline(&self, name: &str) -> Option<Instant> {
        let e = self.slots[*self.index.get(name)? as usize].as_ref()?;
        let credit = e.credit(self.stall);
        e.view
            .state
            .is_live()
            .then(|| e.view.last_seen + silence_allowed(e) + credit)
    }

    /// Health the table implies for a `<service>` or `<service>/<instance>` name.
    pub fn health(&self, name: &str) -> Health {
        if name.contains('/') {
            self.get(name).map(MemberView::health)
        } else {
            self.services.get(name).and_then(ServiceCount::health)
        }
    }

    /// Every event after `since` (exclusive), or `None` when the history no
    /// longer holds them (or `since` is not of this run): take a snapshot.
    pub fn events_since(&self, since: u64) -> Option<impl Iterator<Item = Arc<Event>> + '_> {
        if since > self.revision || since < self.forgotten {
            return None;
        }
        Some(self.history.after(since))
    }
}
