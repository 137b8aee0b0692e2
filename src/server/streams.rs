//! The joined Beat streams of this server, by session, so that the registry
//! can end one (DEAD, superseded, moved) and the shutdown can end them all.
//!
//! Each stream was a `oneshot` channel kept in a map by session: an 80-byte
//! heap block per member besides the map entry, held for the stream's whole
//! life to deliver at most one value. Here a stream is only its task's
//! waker in the map. Ending a stream stores the reason aside (only ended
//! streams have one), bumps a shared counter and wakes the task; a stream
//! polls the counter, one atomic load, and takes the lock to read its fate
//! only when the counter moved. The waker is the one the stream was last
//! polled with when it held the lock (the Join, every ping): hyper polls a
//! response body from one task for its whole life, so it does not change
//! between pings.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;

use crate::liveness::StreamEnd;

/// Counts every end delivered; read without the lock.
#[derive(Debug, Default)]
pub(crate) struct Ends(AtomicU64);

impl Ends {
    /// The count now: a stream that saw this count has nothing to read
    /// until it moves.
    pub(crate) fn seen(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// What the server's lock guards of the open streams.
#[derive(Debug)]
pub(crate) struct BeatStreams {
    wakers: HashMap<u64, Waker>,
    /// Ended streams that have not read their end yet.
    ended: HashMap<u64, StreamEnd>,
    ends: Arc<Ends>,
    /// Set by the shutdown: every stream has been told, and no Join may
    /// register a new one.
    draining: bool,
}

impl BeatStreams {
    pub(crate) fn new(ends: Arc<Ends>) -> Self {
        Self {
            wakers: HashMap::new(),
            ended: HashMap::new(),
            ends,
            draining: false,
        }
    }

    /// A joined stream, woken by `waker` when it ends.
    pub(crate) fn open(&mut self, session: u64, waker: &Waker) {
        self.wakers.insert(session, waker.clone());
    }

    /// The stream is gone (or read its end): forgets it.
    pub(crate) fn close(&mut self, session: u64) {
        self.wakers.remove(&session);
        self.ended.remove(&session);
    }

    /// Whether `session`'s stream is open here and not ended.
    pub(crate) fn contains(&self, session: u64) -> bool {
        self.wakers.contains_key(&session)
    }

    /// Keeps `waker` as the one to wake `session` with, if it is another.
    pub(crate) fn poll_with(&mut self, session: u64, waker: &Waker) {
        if let Some(w) = self.wakers.get_mut(&session)
            && !w.will_wake(waker)
        {
            w.clone_from(waker);
        }
    }

    /// Ends `session`'s stream with `end`; false when no such stream is
    /// open here.
    pub(crate) fn end(&mut self, session: u64, end: StreamEnd) -> bool {
        let Some(waker) = self.wakers.remove(&session) else {
            return false;
        };
        self.ended.insert(session, end);
        self.ends.0.fetch_add(1, Ordering::AcqRel);
        waker.wake();
        true
    }

    /// Ends every open stream with `end`; returns how many.
    pub(crate) fn end_all(&mut self, end: StreamEnd) -> usize {
        let sessions: Vec<u64> = self.wakers.keys().copied().collect();
        for &session in &sessions {
            self.end(session, end);
        }
        sessions.len()
    }

    /// The shutdown: wakes every stream, which then sees the drain.
    pub(crate) fn drain(&mut self) {
        self.draining = true;
        self.ends.0.fetch_add(1, Ordering::AcqRel);
        for (_, waker) in self.wakers.drain() {
            waker.wake();
        }
    }

    /// What became of `session`'s stream, read by the stream itself after
    /// the end count moved: its end, `Some(None)` when the server is
    /// shutting down, `None` when nothing happened to it.
    pub(crate) fn fate(&mut self, session: u64) -> Option<Option<StreamEnd>> {
        if let Some(end) = self.ended.remove(&session) {
            return Some(Some(end));
        }
        self.draining.then_some(None)
    }
}
