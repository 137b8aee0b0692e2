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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::budget::PingBudget;
use super::deadlines::DeadlineQueue;
use super::member::{
    Event, EventKind, Fenced, Health, JoinRequest, Joined, MemberId, MemberView, Reason, State,
    Status, StreamEnd, Transition,
};
use super::timing::{Bounds, negotiate, suspect_after};

mod reads;

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

/// What the last calls changed, for the caller to deliver.
#[derive(Debug, Default)]
pub struct Outbox {
    /// New events, in revision order (also kept in the history).
    pub events: Vec<Arc<Event>>,
    /// Health names whose status changed, in order (`None` = now unknown).
    pub health: Vec<(Arc<str>, Health)>,
    /// Streams (by session) that must end, and why.
    pub ends: Vec<(u64, StreamEnd)>,
    /// State moves, for gauges by state and detection lateness.
    pub transitions: Vec<Transition>,
    /// The earliest deadline moved earlier: a sleeping driver must wake.
    pub wake: bool,
    /// Members held SUSPECT by mass-failure protection, with how many of how
    /// many live members were silent when each was held.
    pub held: Vec<(Arc<str>, u32, u32)>,
}

impl Outbox {
    /// True when there is nothing to deliver.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.health.is_empty()
            && self.ends.is_empty()
            && self.transitions.is_empty()
            && self.held.is_empty()
            && !self.wake
    }
}

#[derive(Debug)]
struct Entry {
    /// `view.interval` is the interval the member was last told; this is
    /// the one negotiated at Join, before any stretch of the ping budget.
    base_interval: Duration,
    view: MemberView,
    /// When the member became DEAD or LEFT.
    ended_at: Option<Instant>,
    /// The registry's stall clock when the last ping (or the Join) was seen.
    stall_mark: Duration,
    /// Mass-failure protection of this member.
    hold: Hold,
}

#[derive(Debug)]
struct ServiceCount {
    name: Arc<str>,
    listed: u32,
    serving: u32,
}

/// Mass-failure protection of one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// May be held when its deadline passes during a mass failure.
    Eligible,
    /// Held SUSPECT one more timeout.
    Held,
    /// Never held (a member restored at start: its one grace is all it gets).
    Exempt,
}

/// Silence a SUSPECT member is allowed before DEAD: its timeout, or twice
/// that while held by mass-failure protection.
fn hold(e: &Entry) -> Duration {
    if e.hold == Hold::Held {
        e.view.timeout * 2
    } else {
        e.view.timeout
    }
}

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
}

impl ServiceCount {
    fn health(&self) -> Health {
        match (self.listed, self.serving) {
            (0, _) => None,
            (_, 0) => Some(Status::NotServing),
            _ => Some(Status::Serving),
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
    history: VecDeque<Arc<Event>>,
    outbox: Outbox,
    /// Total time the server itself was stalled (see [`Registry::stalled`]).
    stall: Duration,
    /// Members ALIVE or SUSPECT.
    live: u32,
    /// Members SUSPECT.
    suspect: u32,
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
            history: VecDeque::with_capacity(cfg.history.min(1024)),
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
        let (base, timeout) = negotiate(&self.cfg.bounds, req.interval, req.timeout);
        let session = self.next_session;
        self.next_session += 1;
        let name = format!("{}/{}", req.service, req.instance);
        let labels = Arc::new(req.labels);
        let status = req.status;
        let stall = self.stall;
        let mut superseded = None;
        let mut from = None;
        let (slot, before) = match self.index.get(name.as_str()) {
            Some(&slot) => {
                let entry = self.entry_mut(slot);
                let before = Some(entry.view.health());
                from = Some(entry.view.state);
                if entry.view.state.is_live() {
                    superseded = Some(entry.view.session);
                    // A live member stays live: its share of the budget
                    // changes hands here rather than in moved().
                    let old = (entry.base_interval, entry.view.timeout);
                    self.budget.remove(old.0, old.1);
                    self.budget.add(base, timeout);
                }
                let entry = self.entry_mut(slot);
                entry.base_interval = base;
                let v = &mut entry.view;
                (v.labels, v.state, v.status, v.session) = (labels, State::Alive, status, session);
                (v.interval, v.timeout, v.joined_at, v.last_seen) = (base, timeout, now, now);
                entry.ended_at = None;
                entry.stall_mark = stall;
                entry.hold = Hold::Eligible;
                (slot, before)
            }
            None => {
                let name: Arc<str> = name.into();
                let view = MemberView {
                    name: name.clone(),
                    service_len: req.service.len(),
                    labels,
                    state: State::Alive,
                    status,
                    session,
                    interval: base,
                    timeout,
                    joined_at: now,
                    last_seen: now,
                };
                let slot = self.alloc(Entry {
                    base_interval: base,
                    view,
                    ended_at: None,
                    stall_mark: self.stall,
                    hold: Hold::Eligible,
                });
                self.index.insert(name, slot);
                (slot, None)
            }
        };
        if let Some(old) = superseded {
            self.outbox
                .ends
                .push((old, StreamEnd::Superseded { by: session }));
        }
        self.account(slot, before, Some(status));
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
        entry.stall_mark = stall;
        entry.hold = Hold::Eligible;
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

    /// The pending outputs; drain them after every call.
    pub fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// Takes the pending outputs.
    pub fn take_outbox(&mut self) -> Outbox {
        std::mem::take(&mut self.outbox)
    }

    fn step(&mut self, slot: u32, now: Instant) -> bool {
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
            State::Suspect if entry.hold == Hold::Eligible && mass_failure => {
                entry.hold = Hold::Held;
                let name = entry.view.name.clone();
                self.outbox.held.push((name, suspect, live));
                true
            }
            State::Suspect => {
                let before = Some(entry.view.health());
                let credit = stall.saturating_sub(entry.stall_mark);
                let deadline = entry.view.last_seen + hold(entry) + credit;
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
    fn due(&self, slot: u32) -> Instant {
        let e = self.slots[slot as usize]
            .as_ref()
            .expect("queued slot is occupied");
        let v = &e.view;
        let credit = self.stall.saturating_sub(e.stall_mark);
        match v.state {
            State::Alive => v.last_seen + suspect_after(v.interval, v.timeout) + credit,
            State::Suspect => v.last_seen + hold(e) + credit,
            State::Dead | State::Left => e.ended_at.unwrap_or(v.last_seen) + self.cfg.retention,
        }
    }

    fn arm(&mut self, slot: u32, when: Instant) {
        self.outbox.wake |= self.queue.schedule(slot, when);
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
            service_len: m.service.len(),
            labels: Arc::new(m.labels),
            state: State::Suspect,
            status: m.status,
            session: m.session,
            interval,
            timeout,
            joined_at: now,
            last_seen: now,
        };
        let health = view.health();
        let slot = self.alloc(Entry {
            base_interval: interval,
            view,
            ended_at: None,
            stall_mark: self.stall,
            hold: Hold::Exempt,
        });
        self.index.insert(name, slot);
        self.account(slot, None, Some(health));
        self.moved(slot, None, Some(State::Suspect), None);
        self.arm(slot, now + timeout);
    }

    /// Whether mass-failure protection holds members now.
    fn mass_failure(&self) -> bool {
        self.cfg.mass_failure.is_some_and(|m| {
            self.live >= m.min_members
                && f64::from(self.suspect) > m.threshold * f64::from(self.live)
        })
    }

    fn moved(
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

    fn emit(&mut self, kind: EventKind, reason: Reason, slot: u32) {
        self.revision += 1;
        let member = self.entry_mut(slot).view.clone();
        let event = Arc::new(Event {
            revision: self.revision,
            kind,
            reason,
            member,
            slot,
        });
        if self.cfg.history > 0 {
            if self.history.len() == self.cfg.history {
                self.history.pop_front();
            }
            self.history.push_back(event.clone());
        }
        self.outbox.events.push(event);
    }

    /// Records a change of the member's own health (`None` = unlisted) and
    /// of its service's, and queues the health names that changed.
    fn account(&mut self, slot: u32, before: Health, after: Health) {
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

    fn live_entry_mut(&mut self, id: MemberId) -> Result<&mut Entry, Fenced> {
        Self::live_entry(&mut self.slots, &self.gens, id)
    }

    /// [`Registry::live_entry_mut`] borrowing only the table, so the rest of
    /// the registry stays readable alongside.
    fn live_entry<'a>(
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

    fn entry_mut(&mut self, slot: u32) -> &mut Entry {
        self.slots[slot as usize].as_mut().expect("occupied slot")
    }

    fn alloc(&mut self, entry: Entry) -> u32 {
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

    fn release(&mut self, slot: u32) {
        if let Some(entry) = self.slots[slot as usize].take() {
            self.index.remove(&entry.view.name);
            self.gens[slot as usize] = self.gens[slot as usize].wrapping_add(1);
            self.free.push(slot);
        }
    }
}
