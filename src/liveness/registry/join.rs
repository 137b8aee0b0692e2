//! Members coming in: a Join (new member, rejoin, or takeover of a live
//! session), the ping budget's admission check before it, and members
//! restored from an earlier run's saved table.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Registry;
use super::entry::{Entry, Protection};
use crate::liveness::Labels;
use crate::liveness::member::{
    EventKind, Health, JoinRequest, Joined, MemberId, MemberView, Reason, State, Status, StreamEnd,
};
use crate::liveness::timing::{negotiate, suspect_after};

/// A member saved by an earlier run, to [`Registry::restore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Service name.
    pub service: String,
    /// Instance name.
    pub instance: String,
    /// Labels.
    pub labels: crate::liveness::Labels,
    /// Its session in the earlier run (a rejoin gets a larger one).
    pub session: u64,
    /// Agreed interval.
    pub interval: Duration,
    /// Agreed timeout.
    pub timeout: Duration,
    /// Last reported status.
    pub status: Status,
    /// The endpoint it advertised, if any.
    pub endpoint: Option<String>,
}

/// What a Join sets on a member, new or known.
struct Fresh {
    base: Duration,
    timeout: Duration,
    labels: Arc<Labels>,
    status: Status,
    endpoint: Option<Arc<str>>,
    session: u64,
    now: Instant,
}

impl Registry {
    /// Whether the ping budget has room for this Join of `name`
    /// (`"<service>/<instance>"`); a takeover of a live member frees that
    /// member's share first.
    pub fn admits(&self, name: &str, req: &JoinRequest) -> bool {
        if self.cfg.max_ping_rate.is_none() {
            return true;
        }
        let (interval, timeout) = negotiate(&self.cfg.bounds, req.interval, req.timeout);
        let replacing = self
            .index
            .get(name)
            .and_then(|&slot| self.slots[slot as usize].as_ref())
            .filter(|e| e.view.state.is_live())
            .map(|e| (e.base_interval, e.view.timeout));
        self.budget.admits(interval, timeout, replacing)
    }

    /// Accepts a validated Join: a new member, or a new session of a known
    /// one (a live older session is superseded and its stream ended).
    pub fn join(&mut self, req: JoinRequest, now: Instant) -> Joined {
        let session = self.next_session;
        self.join_as(req, session, now)
    }

    /// [`Registry::join`] with a session decided elsewhere (a cluster's
    /// commit revision, SPEC §7.3); it must be larger than every session
    /// this table handed out or was given.
    pub fn join_as(&mut self, req: JoinRequest, session: u64, now: Instant) -> Joined {
        let (base, timeout) = negotiate(&self.cfg.bounds, req.interval, req.timeout);
        self.next_session = self.next_session.max(session + 1);
        let name = format!("{}/{}", req.service, req.instance);
        let fresh = Fresh {
            base,
            timeout,
            labels: shared_labels(req.labels),
            status: req.status,
            endpoint: req.endpoint.map(Arc::from),
            session,
            now,
        };
        let (slot, before, from, superseded) = match self.index.get(name.as_str()) {
            Some(&slot) => {
                let (before, from, superseded) = self.renew(slot, fresh);
                (slot, before, Some(from), superseded)
            }
            None => (
                self.insert(name, req.service.len(), fresh),
                None,
                None,
                None,
            ),
        };
        if let Some(old) = superseded {
            self.outbox
                .ends
                .push((old, StreamEnd::Superseded { by: session }));
        }
        self.account(slot, before, Some(req.status));
        let reason = match (from, superseded) {
            (None, _) => Reason::Join,
            (Some(_), Some(_)) => Reason::Takeover,
            (Some(_), None) => Reason::Rejoin,
        };
        // Into the budget (moved) first, so the stretch counts this member.
        self.moved(slot, from, Some(State::Alive), None);
        let interval = self.budget.interval(base, timeout);
        self.entry_mut(slot).view.interval = interval;
        self.emit(EventKind::Joined, reason, slot);
        self.arm(slot, now + suspect_after(interval, timeout));
        Joined {
            id: MemberId {
                slot,
                generation: self.gens[slot as usize],
                session,
            },
            interval,
            base_interval: base,
            timeout,
            superseded,
        }
    }

    /// A new session of the listed member in `slot`; returns its health and
    /// state before, and the live session it supersedes, if any.
    fn renew(&mut self, slot: u32, f: Fresh) -> (Health, State, Option<u64>) {
        let stall = self.stall;
        let entry = self.entry_mut(slot);
        let before = Some(entry.view.health());
        let from = entry.view.state;
        let superseded = from.is_live().then_some(entry.view.session);
        let old = (entry.base_interval, entry.view.timeout);
        entry.base_interval = f.base;
        let v = &mut entry.view;
        (v.labels, v.state, v.status, v.session) = (f.labels, State::Alive, f.status, f.session);
        (v.interval, v.timeout, v.joined_at, v.last_seen) = (f.base, f.timeout, f.now, f.now);
        v.endpoint = f.endpoint;
        entry.ended_at = None;
        entry.stall_mark = super::entry::mark(stall);
        entry.protection = Protection::Eligible;
        if superseded.is_some() {
            // A live member stays live: its share of the budget changes
            // hands here rather than in moved().
            self.budget.remove(old.0, old.1);
            self.budget.add(f.base, f.timeout);
        }
        (before, from, superseded)
    }

    /// A member not listed before; returns its slot.
    fn insert(&mut self, name: String, service_len: usize, f: Fresh) -> u32 {
        let name: Arc<str> = name.into();
        let view = MemberView {
            name: name.clone(),
            // Names are validated far below 4 GiB.
            service_len: service_len as u32,
            labels: f.labels,
            state: State::Alive,
            status: f.status,
            session: f.session,
            interval: f.base,
            timeout: f.timeout,
            joined_at: f.now,
            last_seen: f.now,
            replica: None,
            endpoint: f.endpoint,
        };
        let slot = self.alloc(Entry {
            base_interval: f.base,
            view,
            ended_at: None,
            stall_mark: super::entry::mark(self.stall),
            protection: Protection::Eligible,
        });
        self.index.insert(name, slot);
        slot
    }

    /// Restores a member saved by an earlier run: SUSPECT, health from its
    /// saved status, with one grace of exactly one timeout from `now` (never
    /// more: it is exempt from mass-failure holding) to ping or rejoin.
    /// Ignored if the identity is already listed.
    pub fn restore(&mut self, m: Restored, now: Instant) {
        let name = format!("{}/{}", m.service, m.instance);
        if self.index.contains_key(name.as_str()) {
            return;
        }
        let (interval, timeout) = negotiate(&self.cfg.bounds, Some(m.interval), Some(m.timeout));
        self.next_session = self.next_session.max(m.session.saturating_add(1));
        let name: Arc<str> = name.into();
        let view = MemberView {
            name: name.clone(),
            service_len: m.service.len() as u32,
            labels: shared_labels(m.labels),
            state: State::Suspect,
            status: m.status,
            session: m.session,
            interval,
            timeout,
            joined_at: now,
            last_seen: now,
            replica: None,
            endpoint: m.endpoint.map(Arc::from),
        };
        let health = view.health();
        let slot = self.alloc(Entry {
            base_interval: interval,
            view,
            ended_at: None,
            stall_mark: super::entry::mark(self.stall),
            protection: Protection::Exempt,
        });
        self.index.insert(name, slot);
        self.account(slot, None, Some(health));
        self.moved(slot, None, Some(State::Suspect), None);
        self.arm(slot, now + timeout);
    }
}

/// `labels` behind an `Arc`; no labels share one (most members of many
/// fleets carry none: about 48 bytes a member otherwise).
pub(crate) fn shared_labels(labels: Labels) -> Arc<Labels> {
    static NONE: std::sync::LazyLock<Arc<Labels>> = std::sync::LazyLock::new(Arc::default);
    if labels.is_empty() {
        NONE.clone()
    } else {
        Arc::new(labels)
    }
}
