//! The status of every health name, and Watch subscriptions to them.
//!
//! Why not tonic-health's reporter: it answers Watch on an unknown name with
//! NOT_FOUND instead of streaming SERVICE_UNKNOWN, sends duplicate and merged
//! updates, and has no List. Here each name that has a watcher owns a small
//! broadcast channel; a status is stored and published under one lock, and a
//! watcher subscribes and reads the current status under the same lock, so a
//! watcher sees every transition exactly once, in order. Only a watcher that
//! falls more than [`WATCH_BUFFER`] changes behind one name skips ahead to the
//! current status (a client that does not read cannot see transitions anyway).
//!
//! Member names (`<service>/<instance>`) are the exception once a server
//! hands the map its table ([`HealthMap::serve_members_from`]): their status
//! is read from the table, and the map holds one only while it is watched.
//! A map entry per member was ~55 bytes of every member's memory
//! (BENCHMARKS.md) for a status the table already has. A Watch of a member
//! name subscribes under the table's lock, the lock every change of a
//! member's health is set under, so it still sees each transition once.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::broadcast;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::liveness::{Health, Status};

/// Changes of one name a watcher may fall behind before it skips ahead.
pub const WATCH_BUFFER: usize = 16;

#[derive(Debug)]
struct Entry {
    status: Health,
    tx: Option<broadcast::Sender<Health>>,
}

#[derive(Debug, Default)]
struct Names {
    map: HashMap<Arc<str>, Entry>,
    /// Names with a known status kept in the map (with the table's
    /// members, what List returns).
    known: usize,
}

/// The member table, as [`MemberHealth::read`] lends it.
pub trait MemberTable {
    /// The health of member name `name` (`None`: not listed).
    fn health(&self, name: &str) -> Health;
    /// Listed members (each has a known status).
    fn listed(&self) -> usize;
    /// Every listed member's name and health.
    fn each(&self, f: &mut dyn FnMut(&str, Status));
}

/// Where the health of member names comes from.
pub trait MemberHealth: Send + Sync {
    /// Runs `f` with the table, under the lock under which every change of
    /// a member's health is [`HealthMap::set`]. Never called with the map's
    /// own lock held.
    fn read(&self, f: &mut dyn FnMut(&dyn MemberTable));
}

/// The status map; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct HealthMap {
    names: Arc<Mutex<Names>>,
    closed: CancellationToken,
    members: Arc<OnceLock<Box<dyn MemberHealth>>>,
}

impl std::fmt::Debug for HealthMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthMap")
            .field("names", &self.names)
            .field("members", &self.members.get().is_some())
            .finish_non_exhaustive()
    }
}

impl HealthMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on, the status of member names (`<service>/<instance>`)
    /// is read from `table` (the first call wins).
    pub fn serve_members_from(&self, table: impl MemberHealth + 'static) {
        let _ = self.members.set(Box::new(table));
    }

    /// The table `name` is read from, when it is a member name.
    fn table_of(&self, name: &str) -> Option<&dyn MemberHealth> {
        if name.contains('/') {
            self.members.get().map(|m| &**m)
        } else {
            None
        }
    }

    fn lock(&self) -> MutexGuard<'_, Names> {
        // A panic while holding this lock leaves the map consistent (every
        // update is one assignment), so poisoning is ignored.
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the status of `name` (`None` = unknown). Publishes only changes.
    /// A member name's status is kept only while it is watched (the table
    /// has it otherwise).
    pub fn set(&self, name: impl AsRef<str> + Into<Arc<str>>, status: Health) {
        let member = self.table_of(name.as_ref()).is_some();
        let mut names = self.lock();
        let names = &mut *names;
        match names.map.get_mut(name.as_ref()) {
            Some(e) if e.status == status => {}
            Some(e) => {
                if !member {
                    names.known = names.known + usize::from(status.is_some())
                        - usize::from(e.status.is_some());
                }
                e.status = status;
                let watched = match &e.tx {
                    Some(tx) => tx.send(status).is_ok(),
                    None => false,
                };
                if (status.is_none() || member) && !watched {
                    names.map.remove(name.as_ref());
                }
            }
            None if status.is_some() && !member => {
                names.known += 1;
                names.map.insert(name.into(), Entry { status, tx: None });
            }
            None => {}
        }
    }

    /// The status of `name`; `None` when unknown.
    pub fn get(&self, name: &str) -> Health {
        if let Some(table) = self.table_of(name) {
            let mut health = None;
            table.read(&mut |t| health = t.health(name));
            return health;
        }
        self.lock().map.get(name).and_then(|e| e.status)
    }

    /// Every known name with its status, sorted; `Err(count)` when there are
    /// more than `limit`.
    pub fn list(&self, limit: usize) -> Result<Vec<(String, Status)>, usize> {
        let Some(table) = self.members.get() else {
            return Self::list_with(&self.lock(), None, limit);
        };
        let mut out = Err(0);
        table.read(&mut |t| out = Self::list_with(&self.lock(), Some(t), limit));
        out
    }

    fn list_with(
        names: &Names,
        table: Option<&dyn MemberTable>,
        limit: usize,
    ) -> Result<Vec<(String, Status)>, usize> {
        let known = names.known + table.map_or(0, |t| t.listed());
        if known > limit {
            return Err(known);
        }
        let mut out: Vec<(String, Status)> = names
            .map
            .iter()
            // With a table, the map's member names are watched copies.
            .filter(|(n, _)| table.is_none() || !n.contains('/'))
            .filter_map(|(n, e)| e.status.map(|s| (n.to_string(), s)))
            .collect();
        if let Some(t) = table {
            t.each(&mut |n, s| out.push((n.to_owned(), s)));
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Watches `name`: the current status (or unknown) first, then each change.
    pub fn watch(&self, name: &str) -> Watch {
        let Some(table) = self.table_of(name) else {
            return self.subscribe(name, None);
        };
        let mut watch = None;
        table.read(&mut |t| watch = Some(self.subscribe(name, Some(t.health(name)))));
        watch.expect("the table was read")
    }

    /// Subscribes to `name`, whose status is `table`'s when it is a member
    /// name (read under the table's lock, which the caller holds).
    fn subscribe(&self, name: &str, table: Option<Health>) -> Watch {
        let mut names = self.lock();
        let entry = names.map.entry(name.into()).or_insert(Entry {
            status: None,
            tx: None,
        });
        if let Some(status) = table {
            entry.status = status;
        }
        let tx = entry
            .tx
            .get_or_insert_with(|| broadcast::channel(WATCH_BUFFER).0);
        let rx = tx.subscribe();
        let current = entry.status;
        drop(names);
        Watch {
            map: self.clone(),
            name: name.into(),
            rx,
            first: Some(current),
            last: current,
            closed: Box::pin(self.closed.clone().cancelled_owned()),
        }
    }

    /// Ends every open watch (after it has delivered what was already set):
    /// used on shutdown.
    pub fn close_watches(&self) {
        self.closed.cancel();
    }

    /// Completes when [`HealthMap::close_watches`] is called.
    pub fn closed(&self) -> WaitForCancellationFutureOwned {
        self.closed.clone().cancelled_owned()
    }

    /// Number of names with an entry (known or watched); for tests.
    pub fn entries(&self) -> usize {
        self.lock().map.len()
    }
}

/// A subscription to one name; see [`HealthMap::watch`].
pub struct Watch {
    map: HealthMap,
    name: Arc<str>,
    rx: broadcast::Receiver<Health>,
    first: Option<Health>,
    last: Health,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Watch {
    /// The next status to send (`None` inside = unknown); `None` when the
    /// map closed its watches.
    pub async fn next(&mut self) -> Option<Health> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            let status = tokio::select! {
                biased;
                r = self.rx.recv() => match r {
                    Ok(status) => status,
                    Err(broadcast::error::RecvError::Lagged(_)) => self.map.get(&self.name),
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = &mut self.closed => return None,
            };
            if status != self.last {
                self.last = status;
                return Some(status);
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let member = self.map.table_of(&self.name).is_some();
        let mut names = self.map.lock();
        if let Some(e) = names.map.get_mut(&*self.name) {
            // Our own receiver is still alive here.
            let alone = e.tx.as_ref().is_none_or(|tx| tx.receiver_count() <= 1);
            if alone {
                e.tx = None;
                if e.status.is_none() || member {
                    names.map.remove(&*self.name);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "map_tests.rs"]
mod tests;
