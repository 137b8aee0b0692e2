//! Bookkeeping of every change: live/suspect counts and the ping budget
//! (`moved`), events with revisions and the bounded history (`emit`), and
//! the health of the member's and its service's names (`account`).

use std::sync::Arc;
use std::time::Duration;

use super::Registry;
use super::entry::ServiceCount;
use crate::liveness::member::{Event, EventKind, Health, Reason, State, Status, Transition};

impl Registry {
    pub(super) fn moved(
        &mut self,
        slot: u32,
        from: Option<State>,
        to: Option<State>,
        late_by: Option<Duration>,
    ) {
        let count = |s: Option<State>| {
            (
                u32::from(s.is_some_and(State::is_live)),
                u32::from(s == Some(State::Suspect)),
            )
        };
        let ((live_from, suspect_from), (live_to, suspect_to)) = (count(from), count(to));
        self.live = self.live + live_to - live_from;
        self.suspect = self.suspect + suspect_to - suspect_from;
        let entry = self.slots[slot as usize].as_ref().expect("occupied");
        match (live_from, live_to) {
            (0, 1) => self.budget.add(entry.base_interval, entry.view.timeout),
            (1, 0) => self.budget.remove(entry.base_interval, entry.view.timeout),
            _ => {}
        }
        let view = &entry.view;
        self.outbox.transitions.push(Transition {
            name: view.name.clone(),
            service_len: view.service_len,
            from,
            to,
            late_by,
        });
    }

    pub(super) fn emit(&mut self, kind: EventKind, reason: Reason, slot: u32) {
        self.emit_at(self.revision + 1, kind, reason, slot);
    }

    /// [`Registry::emit`] at a given revision (greater than the last).
    pub(super) fn emit_at(&mut self, revision: u64, kind: EventKind, reason: Reason, slot: u32) {
        debug_assert!(revision > self.revision, "revisions strictly increase");
        self.revision = revision;
        let member = self.entry_mut(slot).view.clone();
        let event = Arc::new(Event {
            revision: self.revision,
            kind,
            reason,
            member,
            slot,
        });
        if self.cfg.history == 0 {
            self.forgotten = self.revision;
        } else {
            if let Some(old) = self.history.push(&event) {
                self.forgotten = old;
            }
        }
        self.outbox.events.push(event);
    }

    /// Records a change of the member's own health (`None` = unlisted) and
    /// of its service's, and queues the health names that changed.
    pub(super) fn account(&mut self, slot: u32, before: Health, after: Health) {
        if before == after {
            return;
        }
        let view = &self.slots[slot as usize].as_ref().expect("occupied").view;
        let name = view.name.clone();
        let service = view.service();
        let count = match self.services.get_mut(service) {
            Some(c) => c,
            None => {
                let key: Arc<str> = service.into();
                self.services.entry(key.clone()).or_insert(ServiceCount {
                    name: key,
                    listed: 0,
                    serving: 0,
                })
            }
        };
        let service_before = count.health();
        count.listed = count.listed + u32::from(after.is_some()) - u32::from(before.is_some());
        count.serving = count.serving + u32::from(after == Some(Status::Serving))
            - u32::from(before == Some(Status::Serving));
        let service_after = count.health();
        let service_name = count.name.clone();
        if service_after.is_none() {
            self.services.remove(&service_name);
        }
        self.outbox.health.push((name, after));
        if service_before != service_after {
            self.outbox.health.push((service_name, service_after));
        }
    }
}
