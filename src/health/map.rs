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

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

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
    /// Names with a known status (what List returns).
    known: usize,
}

/// The status map; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct HealthMap {
    names: Arc<Mutex<Names>>,
    closed: CancellationToken,
}

impl HealthMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Names> {
        // A panic while holding this lock leaves the map consistent (every
        // update is one assignment), so poisoning is ignored.
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the status of `name` (`None` = unknown). Publishes only changes.
    pub fn set(&self, name: impl AsRef<str> + Into<Arc<str>>, status: Health) {
        let mut names = self.lock();
        let names = &mut *names;
        match names.map.get_mut(name.as_ref()) {
            Some(e) if e.status == status => {}
            Some(e) => {
                names.known =
                    names.known + usize::from(status.is_some()) - usize::from(e.status.is_some());
                e.status = status;
                let watched = match &e.tx {
                    Some(tx) => tx.send(status).is_ok(),
                    None => false,
                };
                if status.is_none() && !watched {
                    names.map.remove(name.as_ref());
                }
            }
            None if status.is_some() => {
                names.known += 1;
                names.map.insert(name.into(), Entry { status, tx: None });
            }
            None => {}
        }
    }

    /// The status of `name`; `None` when unknown.
    pub fn get(&self, name: &str) -> Health {
        self.lock().map.get(name).and_then(|e| e.status)
    }

    /// Every known name with its status, sorted; `Err(count)` when there are
    /// more than `limit`.
    pub fn list(&self, limit: usize) -> Result<Vec<(String, Status)>, usize> {
        let names = self.lock();
        if names.known > limit {
            return Err(names.known);
        }
        let mut out: Vec<(String, Status)> = names
            .map
            .iter()
            .filter_map(|(n, e)| e.status.map(|s| (n.to_string(), s)))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Watches `name`: the current status (or unknown) first, then each change.
    pub fn watch(&self, name: &str) -> Watch {
        let mut names = self.lock();
        let entry = names.map.entry(name.into()).or_insert(Entry {
            status: None,
            tx: None,
        });
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
        let mut names = self.map.lock();
        if let Some(e) = names.map.get_mut(&*self.name) {
            // Our own receiver is still alive here.
            let alone = e.tx.as_ref().is_none_or(|tx| tx.receiver_count() <= 1);
            if alone {
                e.tx = None;
                if e.status.is_none() {
                    names.map.remove(&*self.name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::timeout;

    const S: Health = Some(Status::Serving);
    const N: Health = Some(Status::NotServing);

    async fn next(w: &mut Watch) -> Option<Health> {
        timeout(Duration::from_secs(5), w.next())
            .await
            .expect("watch answers")
    }

    #[tokio::test]
    async fn watch_sends_every_transition_once_in_order() {
        let m = HealthMap::new();
        let mut w = m.watch("a");
        assert_eq!(next(&mut w).await, Some(None), "unknown at first");
        for s in [S, S, N, N, S, None, None, N] {
            m.set("a", s);
        }
        for want in [S, N, S, None, N] {
            assert_eq!(next(&mut w).await, Some(want));
        }
        m.close_watches();
        assert_eq!(next(&mut w).await, None);
    }

    #[tokio::test]
    async fn lagging_watcher_skips_to_current_without_duplicates() {
        let m = HealthMap::new();
        m.set("a", S);
        let mut w = m.watch("a");
        assert_eq!(next(&mut w).await, Some(S));
        for i in 0..(WATCH_BUFFER * 3) {
            m.set("a", if i % 2 == 0 { N } else { S });
        }
        m.set("a", N);
        let mut seen = vec![];
        m.close_watches();
        while let Some(s) = next(&mut w).await {
            seen.push(s);
        }
        assert_eq!(seen.last(), Some(&N));
        assert!(
            seen.windows(2).all(|p| p[0] != p[1]),
            "no duplicates: {seen:?}"
        );
    }

    #[test]
    fn unknown_watched_names_are_forgotten_when_the_watch_ends() {
        let m = HealthMap::new();
        let w = m.watch("ghost");
        assert_eq!(m.entries(), 1);
        assert_eq!(m.list(100).unwrap(), vec![]);
        drop(w);
        assert_eq!(m.entries(), 0);
        m.set("a", S);
        m.set("a", None);
        assert_eq!(m.entries(), 0);
    }

    #[test]
    fn list_is_sorted_and_capped() {
        let m = HealthMap::new();
        for i in (0..100).rev() {
            m.set(format!("s{i:03}"), S);
        }
        let l = m.list(100).unwrap();
        assert_eq!(l.len(), 100);
        assert_eq!(l[0].0, "s000");
        m.set("s100", N);
        assert_eq!(m.list(100), Err(101));
        m.set("s100", None);
        assert_eq!(m.list(100).map(|l| l.len()), Ok(100));
    }
}
