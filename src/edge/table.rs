//! The connection table every port of a process shares, because descriptors
//! are a process-wide resource: one limit, and one order of idleness.
//!
//! A connection is *idle* while it has no open stream (an HTTP/2 stream, an
//! HTTP/1 request in flight); one still in its handshake is idle since it was
//! accepted. Idle connections are kept in the order they became idle, so
//! that at the limit a new connection is admitted by closing the one that
//! has been idle the longest (SPEC §6): connections held open and idle can
//! never lock new clients out, and one with a stream (a member's Beat) is
//! never closed for this.
//!
//! Stream counts are one atomic per connection; only the moves between 0 and
//! 1 streams take the table's lock, and they re-read the count under it, so
//! two racing moves always leave the idle order matching the final count.
//!
//! The same order gives the idle timeout: the connection idle the longest
//! is the first whose time can be up, so one task ([`ConnTable::close_idle`])
//! closes them all, instead of a timer in every connection's task.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::control::{CLOSE, Control};
use crate::metrics::EdgeMetrics;

/// Connections being closed to make room may exceed the limit by at most
/// this many while their close completes (the descriptor headroom the
/// default limit leaves covers it).
pub(crate) const EVICTION_HEADROOM: usize = 32;

/// How often an eviction is logged at most (the count goes in the line).
const EVICTION_LOG_EVERY: Duration = Duration::from_secs(1);

/// The connections of a process and their limit.
#[derive(Debug)]
pub(crate) struct ConnTable {
    limit: usize,
    inner: Mutex<Inner>,
    metrics: EdgeMetrics,
}

#[derive(Debug)]
struct Inner {
    /// Admitted and not yet closed (those being evicted included).
    open: usize,
    /// Idle connections by the order they became idle.
    idle: BTreeMap<u64, Arc<Entry>>,
    next_seq: u64,
    /// Every open connection, to signal them all (shutdown).
    all: HashMap<u64, Arc<Entry>>,
    next_id: u64,
    /// Signalled to every connection so far: a connection admitted later
    /// gets them too.
    signalled: u8,
    /// Evictions not yet logged, and when the last line was written.
    unlogged: u64,
    logged_at: Option<Instant>,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    streams: AtomicU32,
    slot: Mutex<Slot>,
    /// What the edge asks of the connection.
    control: Control,
}

#[derive(Debug)]
struct Slot {
    /// Its key in the idle order while it is idle.
    idle_seq: Option<u64>,
    /// When it last became idle.
    idle_since: Instant,
    /// Being closed (evicted, or idle too long): never idle again.
    evicted: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent before it could
    // panic, so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ConnTable {
    pub(crate) fn new(limit: usize, metrics: EdgeMetrics) -> Arc<Self> {
        Arc::new(Self {
            limit,
            inner: Mutex::new(Inner {
                open: 0,
                idle: BTreeMap::new(),
                next_seq: 0,
                all: HashMap::new(),
                next_id: 0,
                signalled: 0,
                unlogged: 0,
                logged_at: None,
            }),
            metrics,
        })
    }

    /// Admits a connection accepted at `now`, closing the longest-idle one
    /// if the table is full; `None` when it is full of busy connections.
    pub(crate) fn admit(self: &Arc<Self>, now: Instant) -> Option<ConnHandle> {
        let mut inner = lock(&self.inner);
        if inner.open >= self.limit {
            let victim = if inner.open < self.limit + EVICTION_HEADROOM {
                inner.idle.pop_first()
            } else {
                None
            };
            let Some((_, victim)) = victim else {
                drop(inner);
                self.metrics
                    .refused(crate::metrics::Refused::ConnectionLimit);
                return None;
            };
            {
                let mut slot = lock(&victim.slot);
                slot.idle_seq = None;
                slot.evicted = true;
            }
            victim.control.signal(CLOSE);
            self.metrics.evicted();
            self.log_eviction(&mut inner, now);
        }
        inner.open += 1;
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let id = inner.next_id;
        inner.next_id += 1;
        let entry = Arc::new(Entry {
            id,
            streams: AtomicU32::new(0),
            slot: Mutex::new(Slot {
                idle_seq: Some(seq),
                idle_since: now,
                evicted: false,
            }),
            control: Control::default(),
        });
        if inner.signalled != 0 {
            entry.control.signal(inner.signalled);
        }
        inner.idle.insert(seq, entry.clone());
        inner.all.insert(id, entry.clone());
        drop(inner);
        self.metrics.opened();
        Some(ConnHandle {
            streams: Streams {
                table: self.clone(),
                entry,
            },
        })
    }

    fn log_eviction(&self, inner: &mut Inner, now: Instant) {
        inner.unlogged += 1;
        if inner
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= EVICTION_LOG_EVERY)
        {
            warn!(
                evicted = inner.unlogged,
                limit = self.limit,
                "connection limit reached: closed the longest-idle connection(s) to admit new ones"
            );
            inner.unlogged = 0;
            inner.logged_at = Some(now);
        }
    }

    /// Signals `flag` to every connection, and to every one admitted later.
    pub(crate) fn signal_all(&self, flag: u8) {
        let mut inner = lock(&self.inner);
        inner.signalled |= flag;
        for entry in inner.all.values() {
            entry.control.signal(flag);
        }
    }

    /// Closes every connection idle for `idle` or longer at `now`; returns
    /// when the next one's time is up, if any is idle.
    pub(crate) fn close_idle(&self, now: Instant, idle: Duration) -> Option<Instant> {
        let mut inner = lock(&self.inner);
        while let Some(entry) = inner.idle.first_entry() {
            let mut slot = lock(&entry.get().slot);
            let due = slot.idle_since + idle;
            if due > now {
                return Some(due);
            }
            slot.idle_seq = None;
            slot.evicted = true;
            drop(slot);
            let entry = entry.remove();
            entry.control.signal(CLOSE);
            self.metrics.idle_closed();
        }
        None
    }

    /// Puts `entry` where its stream count says: in the idle order or not.
    fn reconcile(&self, entry: &Arc<Entry>) {
        let mut inner = lock(&self.inner);
        let mut slot = lock(&entry.slot);
        if slot.evicted {
            return;
        }
        let busy = entry.streams.load(Ordering::Acquire) > 0;
        match (busy, slot.idle_seq) {
            (true, Some(seq)) => {
                inner.idle.remove(&seq);
                slot.idle_seq = None;
            }
            (false, None) => {
                let seq = inner.next_seq;
                inner.next_seq += 1;
                inner.idle.insert(seq, entry.clone());
                slot.idle_seq = Some(seq);
                slot.idle_since = Instant::now();
            }
            _ => {}
        }
    }

    /// Connections admitted and not yet closed.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        lock(&self.inner).open
    }
}

/// A connection's place in the table, held by its task; dropping it frees
/// the place.
#[derive(Debug)]
pub(crate) struct ConnHandle {
    streams: Streams,
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        let Streams { table, entry } = &self.streams;
        let mut inner = lock(&table.inner);
        if let Some(seq) = lock(&entry.slot).idle_seq.take() {
            inner.idle.remove(&seq);
        }
        inner.all.remove(&entry.id);
        inner.open -= 1;
        drop(inner);
        table.metrics.closed();
    }
}

impl ConnHandle {
    /// Counts the connection's streams (for its requests' handlers).
    pub(crate) fn streams(&self) -> Streams {
        self.streams.clone()
    }

    /// What the edge asks of this connection.
    pub(crate) fn control(&self) -> &Control {
        &self.streams.entry.control
    }

    /// Since when the connection has had no open stream (`None`: it has one,
    /// or it is being closed).
    #[cfg(test)]
    pub(crate) fn idle_since(&self) -> Option<Instant> {
        let slot = lock(&self.streams.entry.slot);
        slot.idle_seq.map(|_| slot.idle_since)
    }

    #[cfg(test)]
    fn stream(&self) -> StreamGuard {
        self.streams.open()
    }
}

/// Opens streams of one connection.
#[derive(Debug, Clone)]
pub(crate) struct Streams {
    table: Arc<ConnTable>,
    entry: Arc<Entry>,
}

impl Streams {
    /// Counts one open stream until the guard is dropped.
    pub(crate) fn open(&self) -> StreamGuard {
        if self.entry.streams.fetch_add(1, Ordering::AcqRel) == 0 {
            self.table.reconcile(&self.entry);
        }
        StreamGuard {
            table: self.table.clone(),
            entry: self.entry.clone(),
        }
    }
}

/// One open stream of a connection.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    table: Arc<ConnTable>,
    entry: Arc<Entry>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.entry.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.table.reconcile(&self.entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(limit: usize) -> Arc<ConnTable> {
        ConnTable::new(limit, EdgeMetrics::unregistered())
    }

    #[tokio::test]
    async fn at_the_limit_the_longest_idle_connection_makes_room() {
        let t = table(3);
        let now = Instant::now();
        let a = t.admit(now).unwrap();
        let b = t.admit(now).unwrap();
        let c = t.admit(now).unwrap();
        // a has a stream, so b has been idle the longest.
        let _stream = a.stream();
        let d = t.admit(now).expect("admitted by evicting one");
        assert!(b.idle_since().is_none(), "b was chosen");
        assert_eq!(b.control().get(), CLOSE);
        assert_eq!(a.control().get(), 0);
        assert_eq!(c.control().get(), 0);
        assert_eq!(t.open(), 4, "b counts until it has closed");
        drop(b);
        assert_eq!(t.open(), 3);
        drop((c, d));
        assert_eq!(t.open(), 1);
    }

    #[tokio::test]
    async fn busy_connections_are_never_evicted() {
        let t = table(2);
        let now = Instant::now();
        let a = t.admit(now).unwrap();
        let b = t.admit(now).unwrap();
        let (_sa, _sb) = (a.stream(), b.stream());
        assert!(t.admit(now).is_none(), "refused: nobody is idle");
        assert_eq!(a.control().get(), 0);
    }

    #[tokio::test]
    async fn a_connection_is_idle_again_when_its_last_stream_ends() {
        let t = table(8);
        let a = t.admit(Instant::now()).unwrap();
        assert!(a.idle_since().is_some(), "idle from accept");
        let s1 = a.stream();
        let s2 = a.stream();
        assert!(a.idle_since().is_none());
        drop(s1);
        assert!(a.idle_since().is_none(), "one stream still open");
        drop(s2);
        assert!(a.idle_since().is_some());
    }

    #[tokio::test]
    async fn connections_idle_for_the_timeout_are_closed_oldest_first() {
        let t = table(8);
        let idle = Duration::from_secs(60);
        let start = Instant::now();
        let a = t.admit(start).unwrap();
        let b = t.admit(start + Duration::from_secs(10)).unwrap();
        let busy = t.admit(start).unwrap();
        let _stream = busy.stream();
        // Nothing is due yet: the next is a's, 60 s after it was accepted.
        assert_eq!(t.close_idle(start, idle), Some(start + idle));
        assert_eq!(a.control().get(), 0);
        // At 65 s: a goes, b is due at 70 s; the busy one is never due.
        let at = start + Duration::from_secs(65);
        assert_eq!(
            t.close_idle(at, idle),
            Some(start + Duration::from_secs(70))
        );
        assert_eq!((a.control().get(), b.control().get()), (CLOSE, 0));
        assert_eq!(t.close_idle(start + Duration::from_secs(70), idle), None);
        assert_eq!(b.control().get(), CLOSE);
        assert_eq!(busy.control().get(), 0);
    }

    #[tokio::test]
    async fn a_shutdown_reaches_every_connection_and_later_ones() {
        use super::super::control::SHUTDOWN;
        let t = table(8);
        let a = t.admit(Instant::now()).unwrap();
        let _busy = a.stream();
        t.signal_all(SHUTDOWN);
        assert_eq!(a.control().get(), SHUTDOWN);
        let later = t.admit(Instant::now()).unwrap();
        assert_eq!(later.control().get(), SHUTDOWN);
    }

    #[tokio::test]
    async fn evictions_beyond_the_headroom_are_refused() {
        let t = table(1);
        let now = Instant::now();
        let mut held = vec![t.admit(now).unwrap()];
        for _ in 0..EVICTION_HEADROOM {
            held.push(t.admit(now).expect("evicts the previous one"));
        }
        assert!(
            t.admit(now).is_none(),
            "too many closes still under way: refused"
        );
        // Once the evicted ones have closed, the newest (idle) makes room.
        held.drain(..held.len() - 1);
        assert!(t.admit(now).is_some());
    }
}
