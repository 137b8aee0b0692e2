//! Time passing: the next transition of a member (ALIVE → SUSPECT → DEAD,
//! DEAD/LEFT → removed), when it is due (with the server's own stalls
//! credited), and mass-failure protection, which holds members SUSPECT one
//! more timeout when many fall silent at once.

use tokio::time::Instant;

use super::Registry;
use super::entry::{Protection, silence_allowed};
use crate::liveness::member::{EventKind, Reason, State, Status, StreamEnd};
use crate::liveness::timing::suspect_after;

impl Registry {
    pub(super) fn step(&mut self, slot: u32, now: Instant) -> bool {
        let stall = self.stall;
        let mass_failure = self.mass_failure();
        let (suspect, live) = (self.suspect, self.live);
        let entry = self.entry_mut(slot);
        match entry.view.state {
            State::Alive => {
                entry.view.state = State::Suspect;
                self.emit(EventKind::Updated, Reason::Late, slot);
                self.moved(slot, Some(State::Alive), Some(State::Suspect), None);
                true
            }
            State::Suspect if entry.protection == Protection::Eligible && mass_failure => {
                entry.protection = Protection::Extended;
                let name = entry.view.name.clone();
                self.outbox.held.push((name, suspect, live));
                true
            }
            State::Suspect => {
                let before = Some(entry.view.health());
                let credit = entry.credit(stall);
                let deadline = entry.view.last_seen + silence_allowed(entry) + credit;
                entry.view.state = State::Dead;
                entry.ended_at = Some(now);
                let session = entry.view.session;
                self.account(slot, before, Some(Status::NotServing));
                self.emit(EventKind::Dead, Reason::Timeout, slot);
                let late_by = now.saturating_duration_since(deadline);
                self.moved(slot, Some(State::Suspect), Some(State::Dead), Some(late_by));
                self.outbox.ends.push((session, StreamEnd::Dead));
                true
            }
            state @ (State::Dead | State::Left) => {
                let before = Some(entry.view.health());
                self.account(slot, before, None);
                self.emit(EventKind::Removed, Reason::Retention, slot);
                self.moved(slot, Some(state), None, None);
                self.release(slot);
                false
            }
        }
    }

    /// When the member's next transition is due.
    pub(super) fn due(&self, slot: u32) -> Instant {
        let e = self.slots[slot as usize]
            .as_ref()
            .expect("queued slot is occupied");
        let v = &e.view;
        let credit = e.credit(self.stall);
        match v.state {
            State::Alive => v.last_seen + suspect_after(v.interval, v.timeout) + credit,
            State::Suspect => v.last_seen + silence_allowed(e) + credit,
            State::Dead | State::Left => e.ended_at.unwrap_or(v.last_seen) + self.cfg.retention,
        }
    }

    pub(super) fn arm(&mut self, slot: u32, when: Instant) {
        self.outbox.wake |= self.queue.schedule(slot, when);
    }

    /// Whether mass-failure protection holds members now.
    pub(super) fn mass_failure(&self) -> bool {
        self.cfg.mass_failure.is_some_and(|m| {
            self.live >= m.min_members
                && f64::from(self.suspect) > m.threshold * f64::from(self.live)
        })
    }
}
