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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::warn;

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
    /// Evictions not yet logged, and when the last line was written.
    unlogged: u64,
    logged_at: Option<Instant>,
}

#[derive(Debug)]
struct Entry {
    streams: AtomicU32,
    slot: Mutex<Slot>,
    /// Cancelled when the table closes the connection to make room.
    evict: CancellationToken,
}

#[derive(Debug)]
struct Slot {
    /// Its key in the idle order while it is idle.
    idle_seq: Option<u64>,
    /// When it last became idle.
    idle_since: Instant,
    /// Chosen for eviction: never idle again.
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
            victim.evict.cancel();
            self.metrics.evicted();
            self.log_eviction(&mut inner, now);
        }
        inner.open += 1;
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let entry = Arc::new(Entry {
            streams: AtomicU32::new(0),
            slot: Mutex::new(Slot {
                idle_seq: Some(seq),
                idle_since: now,
                evicted: false,
            }),
            evict: CancellationToken::new(),
        });
        inner.idle.insert(seq, entry.clone());
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

    /// Completes when the table closes this connection to make room.
    pub(crate) fn evicted(&self) -> WaitForCancellationFuture<'_> {
        self.streams.entry.evict.cancelled()
    }

    /// Since when the connection has had no open stream (`None`: it has one,
    /// or it is being evicted).
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
        assert!(futures_util::FutureExt::now_or_never(b.evicted()).is_some());
        assert!(futures_util::FutureExt::now_or_never(a.evicted()).is_none());
        assert!(futures_util::FutureExt::now_or_never(c.evicted()).is_none());
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
        assert!(futures_util::FutureExt::now_or_never(a.evicted()).is_none());
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
