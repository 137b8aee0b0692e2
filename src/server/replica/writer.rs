//! The writer: what this replica's core decided (SUSPECT, ALIVE again, a
//! status, DEAD, LEFT, removal) written to etcd, each as one single-key
//! transaction fenced on the record's revision and this replica's
//! registration (CLUSTER.md §2.5).
//!
//! - **Coalesced**: at most one pending change of state within a session
//!   per member: a SUSPECT overtaken by ALIVE before it went out is never
//!   written. DEAD, LEFT and removal are never dropped.
//! - **Pipelined**: up to [`IN_FLIGHT`] transactions at once, one per
//!   member, so a failover burst is written at etcd's pace, not one round
//!   trip at a time.
//! - **Re-decided** on every conflict: the record as etcd has it now says
//!   whether the change still applies. A record whose session moved on, or
//!   that another replica ended, drops it and ends the stream held here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::Replica;
use crate::cluster::records::Record;
use crate::cluster::store::{Expect, Fence, StoredMember, Written};
use crate::etcd::pb::mvccpb::KeyValue;
use crate::liveness::{Event, EventKind, MemberView, Reason, State, Status, StreamEnd};
use crate::pb::heartbeat::v1 as pb;
use crate::server::state::Shared;

/// Most member writes in flight at once.
pub(crate) const IN_FLIGHT: usize = 64;

/// A change the core decided for one session of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Want {
    pub(crate) session: u64,
    /// The state to write; `None` removes the record.
    pub(crate) state: Option<State>,
    pub(crate) status: Status,
    /// Why, when the core said (else derived from the change).
    pub(crate) reason: Option<Reason>,
}

impl Want {
    /// The member as the core has it now.
    pub(crate) fn of(m: &MemberView) -> Self {
        Self {
            session: m.session,
            state: Some(m.state),
            status: m.status,
            reason: None,
        }
    }

    /// A change within a session that a later one may replace.
    fn coalescable(&self) -> bool {
        self.state.is_some_and(State::is_live)
    }
}

/// The writes not yet committed, per member in order.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    wants: HashMap<Arc<str>, VecDeque<Want>>,
    /// Members with a want and no write in flight, oldest first.
    ready: VecDeque<Arc<str>>,
    in_flight: HashSet<Arc<str>>,
}

impl Pending {
    /// Takes in an event of the core; true when it makes a write (a Join
    /// was written before the core saw it).
    pub(crate) fn decided(&mut self, e: &Event) -> bool {
        let state = match e.kind {
            EventKind::Joined => return false,
            EventKind::Removed => None,
            EventKind::Updated | EventKind::Dead | EventKind::Left => Some(e.member.state),
        };
        let want = Want {
            session: e.member.session,
            state,
            status: e.member.status,
            reason: Some(e.reason),
        };
        self.push(e.member.name.clone(), want);
        true
    }

    /// Queues `want` for `name`, replacing a pending change it overtakes.
    pub(crate) fn push(&mut self, name: Arc<str>, want: Want) {
        let busy = self.in_flight.contains(&name);
        let queue = self.wants.entry(name.clone()).or_default();
        // The first want of a member with a write in flight is that write:
        // replacing it would lose the new one when the write completes.
        let pending_behind = queue.len() > usize::from(busy);
        if pending_behind
            && let Some(last) = queue.back_mut()
            && last.coalescable()
            && want.coalescable()
            && last.session == want.session
        {
            *last = want;
            return;
        }
        let was_empty = queue.is_empty();
        queue.push_back(want);
        if was_empty && !self.in_flight.contains(&name) {
            self.ready.push_back(name);
        }
    }

    /// Writes not yet committed (in flight included).
    pub(crate) fn len(&self) -> usize {
        self.wants.values().map(VecDeque::len).sum()
    }

    /// The next member with a want and no write in flight.
    fn next(&mut self) -> Option<(Arc<str>, Want)> {
        while let Some(name) = self.ready.pop_front() {
            if let Some(want) = self.wants.get(&name).and_then(|q| q.front()).cloned() {
                self.in_flight.insert(name.clone());
                return Some((name, want));
            }
        }
        None
    }

    /// The write of `name` ended: its want is done (`done`) or stays first.
    fn finished(&mut self, name: &Arc<str>, done: bool) {
        self.in_flight.remove(name);
        if let Some(queue) = self.wants.get_mut(name) {
            if done {
                queue.pop_front();
            }
            if queue.is_empty() {
                self.wants.remove(name);
            } else {
                self.ready.push_back(name.clone());
            }
        }
    }
}

/// One write to make.
struct Op {
    name: Arc<str>,
    session: u64,
    key: Vec<u8>,
    expect: Expect,
    value: Option<StoredMember>,
}

/// A write and how it went, and how long it took.
type Outcome = (Box<Op>, Result<Written, crate::etcd::EtcdError>, Duration);

/// What the record says of a want.
enum Decision {
    Write(Box<Op>),
    /// It no longer applies; the stream here (if any) ends so.
    Drop(Option<StreamEnd>),
}

fn decide(
    name: &Arc<str>,
    want: &Want,
    rec: Option<&Record>,
    r: &Replica,
    fence: &Fence,
    now_us: u64,
) -> Decision {
    let Some(rec) = rec else {
        return Decision::Drop(Some(StreamEnd::Dead));
    };
    if rec.session != want.session {
        return Decision::Drop(Some(StreamEnd::Superseded { by: rec.session }));
    }
    let ended = matches!(rec.state(), State::Dead | State::Left);
    if ended && rec.stored.owner != r.id {
        return Decision::Drop(Some(StreamEnd::Dead));
    }
    let (service, instance) = name.split_once('/').unwrap_or((name, ""));
    let key = r.store.member_key(service, instance);
    let value = want.state.map(|state| {
        let mut v = rec.stored.clone();
        let from = rec.state();
        let reason = want.reason.unwrap_or(match (from, state) {
            (State::Alive, State::Suspect) => Reason::Late,
            (State::Suspect, State::Alive) => Reason::Revived,
            _ if rec.status() != want.status => Reason::Status,
            _ => Reason::parse(&v.reason).unwrap_or(Reason::Status),
        });
        v.state = pb::MemberState::from(state) as i32;
        v.status = pb::MemberStatus::from(want.status) as i32;
        v.session = rec.session;
        v.owner = fence.replica.clone();
        v.owner_reg_rev = fence.reg_rev;
        v.reason = reason.as_str().into();
        v.changed_at_us = now_us;
        v
    });
    if value.is_none() && !ended {
        // A removal of a record that is live again: nothing to do.
        return Decision::Drop(None);
    }
    Decision::Write(Box::new(Op {
        name: name.clone(),
        session: want.session,
        key,
        expect: rec.expect(),
        value,
    }))
}

/// Writes what the core decides until shutdown, then flushes what is
/// pending (bounded by the caller).
pub(super) async fn run(shared: Arc<Shared>, r: Arc<Replica>) {
    let mut flight: JoinSet<Outcome> = JoinSet::new();
    let mut pause = false;
    loop {
        if !pause && r.authority() != super::Authority::Starting {
            start_writes(&shared, &r, &mut flight);
        }
        if shared.drain.is_cancelled()
            && flight.is_empty()
            && shared.with(|i| i.cluster.as_ref().is_none_or(|c| c.pending.len() == 0))
        {
            return;
        }
        tokio::select! {
            _ = r.writes.notified() => pause = false,
            Some(done) = flight.join_next(), if !flight.is_empty() => {
                if let Ok((op, result, took)) = done {
                    pause |= finish(&shared, op, result, took);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(250)), if pause => pause = false,
        }
    }
}

/// Starts as many writes as there is room for.
fn start_writes(shared: &Arc<Shared>, r: &Arc<Replica>, flight: &mut JoinSet<Outcome>) {
    let Some(fence) = r.fence() else { return };
    let now_us = shared.clock.micros(tokio::time::Instant::now());
    let ops = shared.with(|i| {
        let mut ops = Vec::new();
        let mut ends = Vec::new();
        let Some(c) = i.cluster.as_deref_mut() else {
            return ops;
        };
        while flight.len() + ops.len() < IN_FLIGHT {
            let Some((name, want)) = c.pending.next() else {
                break;
            };
            let rec = c.records.as_ref().and_then(|rs| rs.members.get(&name));
            match decide(&name, &want, rec, r, &fence, now_us) {
                Decision::Write(op) => ops.push(op),
                Decision::Drop(end) => {
                    c.pending.finished(&name, true);
                    if i.core.forget(&name, want.session)
                        && let Some(end) = end
                    {
                        ends.push((want.session, end));
                    }
                }
            }
        }
        for (session, end) in ends {
            i.streams.end(session, end);
        }
        shared.metrics.cluster.pending(c.pending.len());
        ops
    });
    for op in ops {
        let store = r.store.clone();
        let fence = fence.clone();
        flight.spawn(async move {
            let started = tokio::time::Instant::now();
            let result = store
                .write(&fence, &op.key, op.expect, op.value.as_ref())
                .await;
            (op, result, started.elapsed())
        });
    }
}

/// Takes in a write's outcome; true when the writer should pause (etcd
/// unreachable, or this replica fenced off until it registers again).
fn finish(
    shared: &Shared,
    op: Box<Op>,
    result: Result<Written, crate::etcd::EtcdError>,
    took: Duration,
) -> bool {
    shared.metrics.cluster.write(result.is_ok(), took);
    shared.with(|i| {
        let Some(c) = i.cluster.as_deref_mut() else {
            return false;
        };
        match result {
            Ok(Written::Committed(rev)) => {
                c.committed(rev);
                let records = c.records.as_mut();
                match (records, &op.value) {
                    (Some(records), Some(value)) => {
                        let kv = KeyValue {
                            key: op.key.clone(),
                            mod_revision: rev,
                            value: prost::Message::encode_to_vec(value),
                            ..Default::default()
                        };
                        records.put_member(&op.name, &kv);
                    }
                    (Some(records), None) => {
                        records.members.remove(&op.name);
                    }
                    (None, _) => {}
                }
                c.pending.finished(&op.name, true);
                false
            }
            Ok(Written::Conflict(kv)) => {
                debug!(member = %op.name, session = op.session, "write conflicted; re-deciding on the record as it is");
                if let Some(records) = c.records.as_mut() {
                    match kv {
                        Some(kv) => {
                            records.put_member(&op.name, &kv);
                        }
                        None => {
                            records.members.remove(&op.name);
                        }
                    }
                }
                c.pending.finished(&op.name, false);
                false
            }
            Ok(Written::Fenced) => {
                c.pending.finished(&op.name, false);
                true
            }
            Err(e) => {
                warn!(member = %op.name, error = %e, "etcd write failed; will retry");
                c.pending.finished(&op.name, false);
                true
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(session: u64, state: State) -> Want {
        Want {
            session,
            state: Some(state),
            status: Status::Serving,
            reason: None,
        }
    }

    #[test]
    fn a_change_never_replaces_the_write_in_flight() {
        let mut p = Pending::default();
        let name: Arc<str> = "web/a".into();
        p.push(name.clone(), want(7, State::Suspect));
        let (_, first) = p.next().expect("the SUSPECT goes out");
        assert_eq!(first.state, Some(State::Suspect));
        // ALIVE again while the SUSPECT is in flight: queued behind it.
        p.push(name.clone(), want(7, State::Alive));
        assert!(p.next().is_none(), "one write per member at a time");
        p.finished(&name, true);
        let (_, second) = p.next().expect("the ALIVE follows");
        assert_eq!(second.state, Some(State::Alive));
        p.finished(&name, true);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn pending_changes_coalesce_but_endings_stay() {
        let mut p = Pending::default();
        let name: Arc<str> = "web/a".into();
        p.push(name.clone(), want(7, State::Suspect));
        p.push(name.clone(), want(7, State::Alive));
        assert_eq!(
            p.len(),
            1,
            "a SUSPECT overtaken before it went out is never written"
        );
        p.push(name.clone(), want(7, State::Dead));
        p.push(name.clone(), want(7, State::Alive));
        assert_eq!(p.len(), 3, "DEAD is never dropped");
    }
}
