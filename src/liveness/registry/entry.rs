//! One row of the table and its storage: the entry (a member's view plus
//! what only the core needs), the per-service counts behind the health of a
//! service name, and the slot vector with generations, so that an id of a
//! removed member never matches the slot's next occupant.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Registry;
use crate::liveness::member::{Fenced, Health, MemberId, MemberView, State, Status};

#[derive(Debug)]
pub(super) struct Entry {
    /// `view.interval` is the interval the member was last told; this is
    /// the one negotiated at Join, before any stretch of the ping budget.
    pub(super) base_interval: Duration,
    pub(super) view: MemberView,
    /// When the member became DEAD or LEFT.
    pub(super) ended_at: Option<Instant>,
    /// The registry's stall clock when the last ping (or the Join) was
    /// seen, in nanoseconds ([`mark`]: 8 bytes where a `Duration` takes 16,
    /// in every row).
    pub(super) stall_mark: u64,
    /// Mass-failure protection of this member.
    pub(super) protection: Protection,
}

#[derive(Debug)]
pub(super) struct ServiceCount {
    pub(super) name: Arc<str>,
    pub(super) listed: u32,
    pub(super) serving: u32,
}

/// Mass-failure protection of one member: whether its silence may be
/// stretched to a second timeout while many members fall silent at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protection {
    /// May be held SUSPECT one more timeout when its deadline passes during
    /// a mass failure (once per ping: a ping makes it eligible again).
    Eligible,
    /// Being held: SUSPECT for a second timeout.
    Extended,
    /// Never held (a member restored at start: its one grace is all it gets).
    Exempt,
}

/// A reading of the stall clock as a row keeps it (saturating after 584
/// years of stalls).
pub(super) fn mark(stall: Duration) -> u64 {
    u64::try_from(stall.as_nanos()).unwrap_or(u64::MAX)
}

impl Entry {
    /// The stall credited to this member since its last ping: the stall
    /// clock now, `stall`, minus its reading then.
    pub(super) fn credit(&self, stall: Duration) -> Duration {
        stall.saturating_sub(Duration::from_nanos(self.stall_mark))
    }
}

/// Silence a SUSPECT member is allowed before DEAD: its timeout, or twice
/// that while held by mass-failure protection.
pub(super) fn silence_allowed(e: &Entry) -> Duration {
    if e.protection == Protection::Extended {
        e.view.timeout * 2
    } else {
        e.view.timeout
    }
}

impl ServiceCount {
    pub(super) fn health(&self) -> Health {
        match (self.listed, self.serving) {
            (0, _) => None,
            (_, 0) => Some(Status::NotServing),
            _ => Some(Status::Serving),
        }
    }
}

impl Registry {
    pub(super) fn live_entry_mut(&mut self, id: MemberId) -> Result<&mut Entry, Fenced> {
        Self::live_entry(&mut self.slots, &self.gens, id)
    }

    /// [`Registry::live_entry_mut`] borrowing only the table, so the rest of
    /// the registry stays readable alongside.
    pub(super) fn live_entry<'a>(
        slots: &'a mut [Option<Entry>],
        gens: &[u32],
        id: MemberId,
    ) -> Result<&'a mut Entry, Fenced> {
        if gens.get(id.slot as usize) != Some(&id.generation) {
            return Err(Fenced::Removed);
        }
        let entry = slots[id.slot as usize].as_mut().ok_or(Fenced::Removed)?;
        if entry.view.session != id.session {
            return Err(Fenced::Superseded {
                by: entry.view.session,
            });
        }
        match entry.view.state {
            State::Alive | State::Suspect => Ok(entry),
            State::Dead => Err(Fenced::Dead),
            State::Left => Err(Fenced::Left),
        }
    }

    pub(super) fn entry_mut(&mut self, slot: u32) -> &mut Entry {
        self.slots[slot as usize].as_mut().expect("occupied slot")
    }

    pub(super) fn alloc(&mut self, entry: Entry) -> u32 {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(entry);
                slot
            }
            None => {
                self.slots.push(Some(entry));
                self.gens.push(0);
                (self.slots.len() - 1) as u32
            }
        }
    }

    pub(super) fn release(&mut self, slot: u32) {
        if let Some(entry) = self.slots[slot as usize].take() {
            self.index.remove(&entry.view.name);
            self.gens[slot as usize] = self.gens[slot as usize].wrapping_add(1);
            self.free.push(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_row_stays_small() {
        // Every member holds one for as long as it is listed (BENCHMARKS.md,
        // RSS per member): 200 bytes before the stall mark and the service
        // length were narrowed.
        assert!(std::mem::size_of::<Option<super::Entry>>() <= 184);
    }
}
