//! ListMembers and WatchMembers.
//!
//! A watcher costs the server its position, never a copy of the table
//! (a client that never reads must not be able to pin memory). It is in one
//! of three phases:
//!
//! ```text
//!   since_revision in history ──► Replay ──(caught up)──► Live
//!   0, too old, foreign ──► Snapshot ──(SNAPSHOT_END)──► queued events ──► Live
//!   Live ──(fell behind the broadcast)──► Replay, or Snapshot if history moved on
//! ```
//!
//! - **Snapshot** is read lazily, a batch of slots at a time under the
//!   registry lock, in slot order (see `Registry::members_from`). Rows carry
//!   the revision the snapshot began at. Before each batch the watcher drains
//!   the event broadcast: an event for a slot it has already sent is kept to
//!   be sent after SNAPSHOT_END (at most the broadcast buffer of them, else
//!   the snapshot starts over); one for a slot still ahead is dropped, since
//!   that row will show it. Every member is thus seen once in its state when
//!   its row was read, then every later change, in revision order.
//! - **Replay** reads the event history a batch at a time from the last
//!   revision sent; if the history no longer holds it, a snapshot follows.
//! - **Live** receives the broadcast (shared `Arc`s, no copy per watcher).
//!
//! What waits to be sent is at most one batch of shared views; flow control
//! (h2's window and send buffer, see `crate::edge`) bounds the bytes.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::Stream;
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::time::Instant;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::Status as GrpcStatus;
use tracing::debug;

use super::convert;
use super::replica::catchup::CatchUp;
use super::state::{Inner, Shared};
use super::watch_limit::WatchSlot;
use crate::liveness::{Event, MemberView};
use crate::pb::heartbeat::v1::{
    ListMembersRequest, ListMembersResponse, MemberEvent, WatchMembersRequest,
};
use crate::validate;

/// The response stream of WatchMembers.
pub type WatchMembersStream = Pin<Box<dyn Stream<Item = Result<MemberEvent, GrpcStatus>> + Send>>;

/// Rows or events read under the lock at a time.
const BATCH: usize = 16;
/// Slots looked at per snapshot batch at most (a filter that matches few
/// members must not hold the lock for a whole large table).
const SCAN: usize = 4096;

pub(crate) fn list(
    shared: &Shared,
    req: ListMembersRequest,
) -> Result<ListMembersResponse, GrpcStatus> {
    let filter = validate::service_filter("service", &req.service)
        .map_err(|e| GrpcStatus::invalid_argument(e.to_string()))?;
    let (members, revision) = shared.with(|i| {
        let members = i.table().members(filter.as_deref());
        let members: Vec<_> = members.into_iter().map(|m| i.seen(m)).collect();
        (members, i.table().revision())
    });
    Ok(ListMembersResponse {
        members: members
            .iter()
            .map(|m| convert::member(m, &shared.clock))
            .collect(),
        revision,
    })
}

pub(crate) fn watch(
    shared: Arc<Shared>,
    req: WatchMembersRequest,
    slot: WatchSlot,
) -> Result<WatchMembersStream, GrpcStatus> {
    let filter = validate::service_filter("service", &req.service)
        .map_err(|e| GrpcStatus::invalid_argument(e.to_string()))?;
    if shared.drain.is_cancelled() {
        return Err(GrpcStatus::unavailable("server is shutting down"));
    }
    let resets = shared.resets.load(Ordering::Relaxed);
    let (rx, phase, last) = shared.with(|i| {
        let rx = shared.events.subscribe();
        let (since, table) = (req.since_revision, i.table());
        let phase = if since == 0 {
            None
        } else if table.events_since(since).is_some() {
            Some(Phase::Replay)
        } else if since > table.revision() && shared.replica.is_some() {
            // From a replica a little ahead of this one: wait for it.
            Some(Phase::Ahead(Instant::now() + super::resume::AHEAD_WAIT))
        } else {
            CatchUp::start(&shared, since, table.revision()).map(|c| Phase::CatchUp(Box::new(c)))
        };
        match phase {
            Some(phase) => (rx, phase, since),
            None => (rx, Phase::snapshot(table.revision()), table.revision()),
        }
    });
    let watch = MemberWatch {
        drained: Box::pin(shared.drain.clone().cancelled_owned()),
        shared,
        filter,
        rx,
        phase,
        out: VecDeque::new(),
        last,
        done: false,
        resets,
        _slot: slot,
    };
    Ok(Box::pin(futures_util::stream::unfold(
        watch,
        |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        },
    )))
}

/// Something read and not yet sent (shared, converted when sent).
pub(super) enum Out {
    /// A snapshot row, and the revision the snapshot began at.
    Row(MemberView, u64),
    /// SNAPSHOT_END at that revision.
    End(u64),
    Event(Arc<Event>),
}

pub(super) enum Phase {
    /// Reading the table from `cursor`; rows carry `revision`. `queued`
    /// holds events for slots already sent.
    Snapshot {
        revision: u64,
        cursor: Option<u32>,
        queued: VecDeque<Arc<Event>>,
    },
    /// Sending `queued` (after SNAPSHOT_END), then Live.
    Queued(VecDeque<Arc<Event>>),
    /// Reading the history after `last`.
    Replay,
    /// Receiving the broadcast.
    Live,
    /// Cluster mode: `last` is ahead of this replica's view; waiting (until
    /// the instant) for the view to pass it, else a snapshot.
    Ahead(Instant),
    /// Cluster mode: `last` is older than this replica's history; reading
    /// etcd's until the shared history takes over.
    CatchUp(Box<CatchUp>),
}

impl Phase {
    fn snapshot(revision: u64) -> Self {
        Phase::Snapshot {
            revision,
            cursor: Some(0),
            queued: VecDeque::new(),
        }
    }
}

pub(super) struct MemberWatch {
    pub(super) shared: Arc<Shared>,
    pub(super) filter: Option<String>,
    pub(super) rx: broadcast::Receiver<Arc<Event>>,
    pub(super) phase: Phase,
    pub(super) out: VecDeque<Out>,
    /// Revision of the last event sent (or the snapshot's); older live
    /// events are skipped.
    pub(super) last: u64,
    pub(super) drained: Pin<Box<WaitForCancellationFutureOwned>>,
    done: bool,
    /// The table's resets seen (a reset sends a fresh snapshot).
    resets: u64,
    _slot: WatchSlot,
}

impl MemberWatch {
    pub(super) fn matches(&self, e: &Event) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|s| e.member.service() == s)
    }

    fn convert(&self, out: Out) -> MemberEvent {
        let clock = &self.shared.clock;
        match out {
            Out::Row(m, revision) => convert::snapshot_row(&m, revision, clock),
            Out::End(revision) => convert::snapshot_end(revision),
            Out::Event(e) => convert::event(&e, clock),
        }
    }

    async fn next(&mut self) -> Option<Result<MemberEvent, GrpcStatus>> {
        loop {
            if self.done {
                return None;
            }
            if self.shared.drain.is_cancelled() {
                self.done = true;
                return Some(Err(GrpcStatus::unavailable("server is shutting down")));
            }
            if let Some(out) = self.out.pop_front() {
                return Some(Ok(self.convert(out)));
            }
            let resets = self.shared.resets.load(Ordering::Relaxed);
            if resets != self.resets {
                self.resets = resets;
                let shared = self.shared.clone();
                shared.with(|i| restart(i, &shared, &mut self.rx, &mut self.phase, &mut self.out));
                continue;
            }
            match &mut self.phase {
                Phase::Snapshot { .. } => self.snapshot_batch(),
                Phase::Queued(queued) => match queued.pop_front() {
                    // Queued events match the filter already.
                    Some(e) => {
                        self.last = e.revision;
                        self.out.push_back(Out::Event(e));
                    }
                    None => self.phase = Phase::Live,
                },
                Phase::Replay => self.replay_batch(),
                Phase::Ahead(until) => {
                    let until = *until;
                    self.ahead(until).await;
                }
                Phase::CatchUp(_) => self.catch_up().await,
                Phase::Live => {
                    let received = tokio::select! {
                        biased;
                        r = self.rx.recv() => r,
                        _ = &mut self.drained => continue,
                    };
                    match received {
                        Ok(e) if e.revision > self.last => {
                            self.last = e.revision;
                            if self.matches(&e) {
                                self.out.push_back(Out::Event(e));
                            }
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            debug!(
                                missed,
                                "member watcher fell behind; resuming from the history"
                            );
                            self.shared.metrics.watch_lagged();
                            self.phase = Phase::Replay;
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        }
    }

    /// Reads the next batch of the snapshot (or starts it over when the
    /// watcher fell too far behind meanwhile).
    fn snapshot_batch(&mut self) {
        let shared = self.shared.clone();
        let limit = shared.cfg.watch_buffer;
        shared.with(|i| {
            let Phase::Snapshot {
                revision,
                cursor,
                queued,
            } = &mut self.phase
            else {
                return;
            };
            let Some(at) = *cursor else {
                return;
            };
            // Sorting what happened since the last batch; `at` is the first
            // slot not sent yet.
            let filter = self.filter.as_deref();
            loop {
                match self.rx.try_recv() {
                    Ok(e) if e.slot < at => {
                        if filter.is_none_or(|s| e.member.service() == s) {
                            queued.push_back(e);
                        }
                    }
                    Ok(_) => {}
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Lagged(_)) => {
                        restart(i, &shared, &mut self.rx, &mut self.phase, &mut self.out);
                        return;
                    }
                    Err(TryRecvError::Closed) => break,
                }
                if queued.len() > limit {
                    restart(i, &shared, &mut self.rx, &mut self.phase, &mut self.out);
                    return;
                }
            }
            let mut rows = Vec::with_capacity(BATCH);
            *cursor = i.table().members_from(at, filter, BATCH, SCAN, &mut rows);
            let r = *revision;
            self.out
                .extend(rows.into_iter().map(|m| Out::Row(i.seen(m), r)));
            if cursor.is_none() {
                self.last = r;
                self.out.push_back(Out::End(r));
                let queued = std::mem::take(queued);
                self.phase = Phase::Queued(queued);
            }
        });
    }

    /// Reads the next batch of history after `last`; a snapshot when the
    /// history no longer holds it.
    fn replay_batch(&mut self) {
        let shared = self.shared.clone();
        shared.with(|i| match i.table().events_since(self.last) {
            None => restart(i, &shared, &mut self.rx, &mut self.phase, &mut self.out),
            Some(events) => {
                let mut n = 0;
                for e in events.take(BATCH) {
                    n += 1;
                    self.last = e.revision;
                    if self
                        .filter
                        .as_deref()
                        .is_none_or(|s| e.member.service() == s)
                    {
                        self.out.push_back(Out::Event(e));
                    }
                }
                if n < BATCH {
                    // Caught up: everything later arrives on the broadcast
                    // (older ones there are skipped by revision). A receiver
                    // that already lagged starts from now, losing nothing:
                    // the history up to now was just read.
                    self.rx = self.rx.resubscribe();
                    self.phase = Phase::Live;
                }
            }
        });
    }
}

/// Starts a snapshot over, from the table as it is now.
pub(super) fn restart(
    i: &Inner,
    shared: &Shared,
    rx: &mut broadcast::Receiver<Arc<Event>>,
    phase: &mut Phase,
    out: &mut VecDeque<Out>,
) {
    debug!("member watcher fell behind; sending a fresh snapshot");
    shared.metrics.watch_resynced();
    *rx = rx.resubscribe();
    out.clear();
    *phase = Phase::snapshot(i.table().revision());
}
