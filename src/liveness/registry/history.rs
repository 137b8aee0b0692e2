//! The bounded event history behind `since_revision` resumes, kept compact.
//!
//! The history holds the last [`CoreConfig::history`] events (8192 by
//! default) for as long as the server runs, whatever the fleet's size: at
//! 10k members it was the largest fixed cost after the table itself, each
//! event an `Arc<Event>` of 176 bytes in a 192-byte heap block plus its
//! pointer. An entry here is the same event inline, with the durations
//! split into seconds and nanoseconds so that the four 4-byte fields pack
//! together: 144 bytes, no allocation of its own, and exact (names, labels,
//! replica and endpoint are the same `Arc`s the table holds). A replay
//! builds the `Event` back, one at a time; live delivery is untouched.
//!
//! [`CoreConfig::history`]: super::CoreConfig::history

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::liveness::member::{Event, EventKind, Labels, MemberView, Reason, State, Status};

/// One past event (see the module docs for why not `Arc<Event>`).
#[derive(Debug, Clone)]
struct Past {
    revision: u64,
    session: u64,
    name: Arc<str>,
    labels: Arc<Labels>,
    replica: Option<Arc<str>>,
    endpoint: Option<Arc<str>>,
    joined_at: Instant,
    last_seen: Instant,
    interval_secs: u64,
    timeout_secs: u64,
    interval_nanos: u32,
    timeout_nanos: u32,
    slot: u32,
    service_len: u32,
    kind: EventKind,
    reason: Reason,
    state: State,
    status: Status,
}

impl Past {
    fn of(e: &Event) -> Self {
        let m = &e.member;
        Self {
            revision: e.revision,
            session: m.session,
            name: m.name.clone(),
            labels: m.labels.clone(),
            replica: m.replica.clone(),
            endpoint: m.endpoint.clone(),
            joined_at: m.joined_at,
            last_seen: m.last_seen,
            interval_secs: m.interval.as_secs(),
            timeout_secs: m.timeout.as_secs(),
            interval_nanos: m.interval.subsec_nanos(),
            timeout_nanos: m.timeout.subsec_nanos(),
            slot: e.slot,
            service_len: m.service_len,
            kind: e.kind,
            reason: e.reason,
            state: m.state,
            status: m.status,
        }
    }

    fn event(&self) -> Event {
        Event {
            revision: self.revision,
            kind: self.kind,
            reason: self.reason,
            member: MemberView {
                name: self.name.clone(),
                service_len: self.service_len,
                labels: self.labels.clone(),
                state: self.state,
                status: self.status,
                session: self.session,
                interval: Duration::new(self.interval_secs, self.interval_nanos),
                timeout: Duration::new(self.timeout_secs, self.timeout_nanos),
                joined_at: self.joined_at,
                last_seen: self.last_seen,
                replica: self.replica.clone(),
                endpoint: self.endpoint.clone(),
            },
            slot: self.slot,
        }
    }
}

/// The last `cap` events, oldest first.
#[derive(Debug)]
pub(super) struct History {
    past: VecDeque<Past>,
    cap: usize,
}

impl History {
    pub(super) fn new(cap: usize) -> Self {
        Self {
            // Grows to `cap` as events come: a small server never pays for
            // the whole history.
            past: VecDeque::with_capacity(cap.min(1024)),
            cap,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.past.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.past.clear();
    }

    /// Records `e`; returns the revision of the event it pushed out, if the
    /// history was full.
    pub(super) fn push(&mut self, e: &Event) -> Option<u64> {
        let old = if self.past.len() == self.cap {
            self.past.pop_front().map(|p| p.revision)
        } else {
            None
        };
        self.past.push_back(Past::of(e));
        old
    }

    /// Every event after `since` (exclusive), oldest first.
    pub(super) fn after(&self, since: u64) -> impl Iterator<Item = Arc<Event>> + '_ {
        let skip = self.past.partition_point(|p| p.revision <= since);
        self.past.iter().skip(skip).map(|p| Arc::new(p.event()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_smaller_than_the_shared_event_it_replaces() {
        // Arc<Event>: 16 bytes of counts + the event, in a 192-byte block
        // of glibc's, and 8 bytes of pointer in the deque.
        assert!(std::mem::size_of::<Past>() <= 144);
        assert!(std::mem::size_of::<Past>() < std::mem::size_of::<Event>() + 16);
    }

    #[test]
    fn an_event_comes_back_exactly() {
        let t0 = Instant::now();
        let mut labels = Labels::new();
        labels.insert("zone".into(), "a".into());
        let e = Event {
            revision: 7,
            kind: EventKind::Updated,
            reason: Reason::Late,
            member: MemberView {
                name: "db/i1".into(),
                service_len: 2,
                labels: Arc::new(labels),
                state: State::Suspect,
                status: Status::NotServing,
                session: 42,
                interval: Duration::new(1, 500_000_001),
                timeout: Duration::new(u64::MAX, 999_999_999),
                joined_at: t0,
                last_seen: t0 + Duration::from_nanos(3),
                replica: Some("r1".into()),
                endpoint: Some("10.0.0.1:80".into()),
            },
            slot: 9,
        };
        let mut h = History::new(2);
        assert_eq!(h.push(&e), None);
        let back: Vec<_> = h.after(6).collect();
        assert_eq!(back.len(), 1);
        assert_eq!(*back[0], e);
        assert_eq!(h.after(7).count(), 0);
    }
}
