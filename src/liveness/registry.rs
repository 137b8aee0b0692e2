//! The member table and its state machine (SPEC §3), with no I/O and no clock:
//! every call takes `now`, and [`Registry::next_deadline`] tells the driver
//! when to call [`Registry::poll`] next (the quinn-proto shape).
//!
//! ```text
//!   Join ──► ALIVE ──(no ping for (interval+timeout)/2)──► SUSPECT
//!              ▲  ◄────────────────(ping)───────────────────┘ │
//!              │                                             (no ping for timeout)
//!            Join                                              ▼
//!              └──────────── LEFT ◄──(Leave)── ALIVE/SUSPECT  DEAD
//!                              └──(retention)──► removed ◄──(retention)──┘
//! ```
//!
//! What the table's changes mean for the outside (events for WatchMembers,
//! health of names, streams to end, a driver to wake) is written to an
//! [`Outbox`] that the caller drains while it still holds the registry, so
//! every consumer sees changes in revision order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::budget::PingBudget;
use super::deadlines::DeadlineQueue;
use super::member::{EventKind, Fenced, MemberId, Reason, State, Status};
use super::timing::{self, Bounds};

mod account;
mod apply;
mod entry;
mod expiry;
mod history;
mod join;
mod outbox;
mod reads;

use entry::{Entry, Protection, ServiceCount};
use history::History;
pub use join::Restored;
#[cfg(feature = "server")]
pub(crate) use join::shared_labels;
pub use outbox::Outbox;

/// Configuration of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Interval and timeout defaults and bounds.
    pub bounds: Bounds,
    /// How long a DEAD or LEFT member stays listed.
    pub retention: Duration,
    /// How many events are kept for `since_revision` resumes.
    pub history: usize,
    /// Revision of the empty table (later changes count up from it).
    pub initial_revision: u64,
    /// First session number handed out.
    pub initial_session: u64,
    /// Mass-failure protection (`None` = off).
    pub mass_failure: Option<MassFailure>,
    /// Pings per second the server is sized for (`None` = unlimited); past
    /// it, intervals stretch and then Joins are refused (see [`PingBudget`]).
    pub max_ping_rate: Option<u32>,
}

/// When more than `threshold` of at least `min_members` live members are
/// silent (SUSPECT) at once, the fault is probably on the server's side of
/// the network: a member whose deadline passes then is held SUSPECT (health
/// unchanged) for one more timeout, once, before normal expiry resumes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MassFailure {
    /// Fraction of live members that must be silent, in (0, 1).
    pub threshold: f64,
    /// Fewest live members for the protection to apply.
    pub min_members: u32,
}

impl Default for MassFailure {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_members: 10,
        }
    }
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            bounds: Bounds::default(),
            retention: Duration::from_secs(60),
            history: 8192,
            initial_revision: 0,
            initial_session: 1,
            mass_failure: Some(MassFailure::default()),
            max_ping_rate: None,
        }
    }
}

/// The member table.
#[derive(Debug)]
pub struct Registry {
    cfg: CoreConfig,
    slots: Vec<Option<Entry>>,
    /// Bumped when a slot is released, so ids of removed members never
    /// match the slot's next occupant.
    gens: Vec<u32>,
    free: Vec<u32>,
    index: HashMap<Arc<str>, u32>,
    services: HashMap<Arc<str>, ServiceCount>,
    queue: DeadlineQueue,
    revision: u64,
    next_session: u64,
    history: History,
    /// Revision of the last event no longer in the history (or of the
    /// empty table): a resume from before it needs a snapshot. Revisions
    /// may have gaps (a cluster's view counts etcd's revisions).
    forgotten: u64,
    outbox: Outbox,
    /// Total time the server itself was stalled (see [`Registry::stalled`]).
    stall: Duration,
    /// Members ALIVE or SUSPECT.
    live: u32,
    /// Members SUSPECT.
    suspect: u32,
    /// Reused by [`Registry::next_wake`].
    scratch: Vec<(Instant, u32)>,
    /// Offered pings/s of the live members, and the stretch that bounds it.
    budget: PingBudget,
}

impl Registry {
    /// An empty table.
    pub fn new(cfg: CoreConfig) -> Self {
        let budget = PingBudget::new(cfg.max_ping_rate, cfg.bounds.max_interval);
        Self {
            revision: cfg.initial_revision,
            next_session: cfg.initial_session,
            history: History::new(cfg.history),
            forgotten: cfg.initial_revision,
            cfg,
            slots: Vec::new(),
            gens: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            services: HashMap::new(),
            queue: DeadlineQueue::new(),
            outbox: Outbox::default(),
            stall: Duration::ZERO,
            live: 0,
            suspect: 0,
            scratch: Vec::new(),
            budget,
        }
    }

    /// The server itself was stalled for `lag` (a pause, CPU starvation,
    /// SIGSTOP): silence during it was not the members' fault. Every pending
    /// liveness deadline moves `lag` later, once; deadlines set after this
    /// call (by a ping or a Join) are unaffected. O(1): each member keeps the
    /// stall clock of its last ping, and its due time adds what accrued since.
    pub fn stalled(&mut self, lag: Duration) {
        self.stall += lag;
    }

    /// Total stall credited so far.
    pub fn stall(&self) -> Duration {
        self.stall
    }

    /// The configuration.
    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// The ping budget: offered load and stretch, for metrics.
    pub fn budget(&self) -> &PingBudget {
        &self.budget
    }

    /// A ping of session `id` observed at `now`. O(1), allocation-free unless
    /// the state or status changes. Returns the member's new interval when
    /// the ping budget changed it (for `Pong.interval`).
    pub fn ping(
        &mut self,
        id: MemberId,
        status: Status,
        now: Instant,
    ) -> Result<Option<Duration>, Fenced> {
        let stall = self.stall;
        let budget = &self.budget;
        let entry = Self::live_entry(&mut self.slots, &self.gens, id)?;
        entry.stall_mark = entry::mark(stall);
        entry.protection = Protection::Eligible;
        let target = budget.interval(entry.base_interval, entry.view.timeout);
        let v = &mut entry.view;
        v.last_seen = now;
        let told = (target != v.interval).then(|| {
            v.interval = target;
            target
        });
        if v.state == State::Alive && v.status == status {
            return Ok(told);
        }
        let before = Some(v.health());
        let revived = v.state == State::Suspect;
        (v.state, v.status) = (State::Alive, status);
        let after = Some(v.health());
        self.account(id.slot, before, after);
        if revived {
            self.emit(EventKind::Updated, Reason::Revived, id.slot);
            self.moved(id.slot, Some(State::Suspect), Some(State::Alive), None);
        } else {
            self.emit(EventKind::Updated, Reason::Status, id.slot);
        }
        Ok(told)
    }

    /// Session `id` leaves on purpose: LEFT at once.
    pub fn leave(&mut self, id: MemberId, now: Instant) -> Result<(), Fenced> {
        let entry = self.live_entry_mut(id)?;
        let before = Some(entry.view.health());
        let from = entry.view.state;
        entry.view.state = State::Left;
        entry.ended_at = Some(now);
        self.account(id.slot, before, Some(Status::NotServing));
        self.emit(EventKind::Left, Reason::Leave, id.slot);
        self.moved(id.slot, Some(from), Some(State::Left), None);
        self.arm(id.slot, now + self.cfg.retention);
        Ok(())
    }

    /// Applies every transition due at `now`.
    pub fn poll(&mut self, now: Instant) {
        while let Some((_, slot)) = self.queue.pop_due(now) {
            // A member forgotten while queued leaves its entry behind.
            if self.slots[slot as usize].is_none() {
                continue;
            }
            loop {
                let due = self.due(slot);
                if due > now {
                    // The driver that polls reads next_deadline() itself.
                    self.queue.schedule(slot, due);
                    break;
                }
                if !self.step(slot, now) {
                    break;
                }
            }
        }
    }

    /// When [`Registry::poll`] has work next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.peek()
    }

    /// The exact instant the driver should wake for, if one comes before
    /// `until` (its next grid point): the deadline of a member that looks
    /// really silent. Entries are lazy (a ping does not move its member's
    /// entry), so most of them fall due only to be re-armed: every entry
    /// queued before `until` whose member has pinged since is re-armed here,
    /// at its true deadline, as [`Registry::poll`] would do when it fell due.
    /// A true deadline before `until` is woken for exactly when its member
    /// is SUSPECT, or ALIVE and silent for half-way between its interval and
    /// its SUSPECT deadline; one of a member that just pinged is left to the
    /// grid (it will most likely ping again and go stale). `now` is the
    /// driver's clock.
    pub fn next_wake(&mut self, now: Instant, until: Instant) -> Option<Instant> {
        let mut found = std::mem::take(&mut self.scratch);
        found.clear();
        self.queue.before(until, &mut found);
        let mut exact: Option<Instant> = None;
        for &(queued, slot) in &found {
            // A member forgotten while queued leaves its entry behind.
            if self.slots[slot as usize].is_none() {
                continue;
            }
            let due = self.due(slot);
            if due > queued {
                self.queue.reschedule(slot, due);
            }
            if due < until && self.looks_silent(slot, now) {
                exact = Some(exact.map_or(due, |e| e.min(due)));
            }
        }
        self.scratch = found;
        exact
    }

    /// Whether the member in `slot` is likely to reach its next deadline
    /// without a ping.
    fn looks_silent(&self, slot: u32, now: Instant) -> bool {
        let Some(e) = &self.slots[slot as usize] else {
            return false;
        };
        let v = &e.view;
        match v.state {
            State::Suspect => true,
            State::Alive => {
                let suspect = timing::suspect_after(v.interval, v.timeout);
                now >= v.last_seen + (v.interval + suspect) / 2
            }
            State::Dead | State::Left => false,
        }
    }

    /// The pending outputs; drain them after every call.
    pub fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// Takes the pending outputs.
    pub fn take_outbox(&mut self) -> Outbox {
        std::mem::take(&mut self.outbox)
    }
}
