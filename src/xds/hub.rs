//! The routable endpoints of every service, kept beside the member table
//! and changed in the same critical section as it (so they follow the
//! table's revision order), read by every xDS stream.
//!
//! A member is routable while it is ALIVE or SUSPECT, SERVING, and has an
//! endpoint (SPEC §8). Endpoints that name a host are resolved to
//! addresses off the lock (xDS clients refuse host names in an endpoint):
//! until the answer comes, the member is not routed to; each new session
//! resolves again. One generation number counts every change of any
//! service's set; each service remembers the generation of its last change,
//! so a stream woken by the generation sends only what moved.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Semaphore, watch};
use tracing::warn;

use crate::liveness::{Event, EventKind, MemberView, State, Status};

/// Host-name lookups in flight at once (the rest wait their turn).
const RESOLVERS: usize = 16;

/// One member's advertised endpoint and what it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    endpoint: Arc<str>,
    /// The session that asked for the lookup (answers for an older one are
    /// dropped).
    session: u64,
    /// Empty until a host name is resolved (or when it did not resolve).
    addrs: Vec<SocketAddr>,
}

impl Target {
    fn addrs_from_name(&self) -> bool {
        self.endpoint.parse::<SocketAddr>().is_err()
    }
}

#[derive(Debug, Default)]
struct ServiceSet {
    /// Generation of the last change of what this service routes to.
    changed: u64,
    /// Routable members by instance name.
    members: BTreeMap<Arc<str>, Target>,
}

#[derive(Debug, Default)]
struct Tables {
    generation: u64,
    services: HashMap<Arc<str>, ServiceSet>,
}

/// The endpoints of one service as a stream sends them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoints {
    /// Generation of the service's last change (0: it has no members).
    pub changed: u64,
    /// `(instance, addresses)` in instance order; every entry has at least
    /// one address.
    pub members: Vec<(Arc<str>, Vec<SocketAddr>)>,
}

/// The shared routable-endpoint table.
#[derive(Debug)]
pub struct Hub {
    tables: Mutex<Tables>,
    generation: watch::Sender<u64>,
    resolvers: Arc<Semaphore>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            tables: Mutex::default(),
            generation: watch::Sender::new(0),
            resolvers: Arc::new(Semaphore::new(RESOLVERS)),
        }
    }
}

/// Whether `m` is routed to, and where.
fn routable(m: &MemberView) -> Option<&Arc<str>> {
    let live = matches!(m.state, State::Alive | State::Suspect);
    (live && m.status == Status::Serving)
        .then_some(m.endpoint.as_ref())
        .flatten()
}

impl Hub {
    /// A receiver that changes with every change of any service's set.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Tables> {
        // Every change leaves the tables consistent before it could panic.
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// The endpoints of `service` now (empty when it has none).
    pub fn endpoints(&self, service: &str) -> Endpoints {
        let t = self.lock();
        let Some(set) = t.services.get(service) else {
            return Endpoints::default();
        };
        Endpoints {
            changed: set.changed,
            members: set
                .members
                .iter()
                .filter(|(_, t)| !t.addrs.is_empty())
                .map(|(i, t)| (i.clone(), t.addrs.clone()))
                .collect(),
        }
    }

    /// Generation of `service`'s last change (0: it has no members).
    pub fn changed(&self, service: &str) -> u64 {
        self.lock().services.get(service).map_or(0, |s| s.changed)
    }

    /// Applies one change of the member table.
    pub fn apply(self: &Arc<Self>, event: &Event) {
        let m = &event.member;
        let target = if event.kind == EventKind::Removed {
            None
        } else {
            routable(m)
        };
        self.set(m, target.cloned(), event.kind == EventKind::Joined);
    }

    /// Starts over from `members` (the table was replaced as a whole).
    pub fn reset(self: &Arc<Self>, members: &[MemberView]) {
        let mut t = self.lock();
        let generation = t.generation + 1;
        let mut before = std::mem::take(&mut t.services);
        let mut lookups = Vec::new();
        for m in members {
            let Some(endpoint) = routable(m) else {
                continue;
            };
            let (service, instance) = (m.service(), m.instance());
            let kept = before
                .get_mut(service)
                .and_then(|s| s.members.remove(instance))
                .filter(|old| old.endpoint == *endpoint && old.session == m.session);
            let target = kept.unwrap_or_else(|| {
                let (target, lookup) = fresh(endpoint, m.session);
                if lookup {
                    lookups.push((m.service().into(), m.instance().into(), target.clone()));
                }
                target
            });
            let set = t.services.entry(m.service().into()).or_default();
            set.changed = generation;
            set.members.insert(instance.into(), target);
        }
        // Services that lost everything are absent now: they read as
        // changed (0) to every stream that sent them with members.
        drop(before);
        t.generation = generation;
        drop(t);
        self.generation.send_replace(generation);
        for (service, instance, target) in lookups {
            self.resolve(service, instance, target);
        }
    }

    fn set(self: &Arc<Self>, m: &MemberView, endpoint: Option<Arc<str>>, joined: bool) {
        let mut t = self.lock();
        let (service, instance) = (m.service(), m.instance());
        let current = t
            .services
            .get(service)
            .and_then(|s| s.members.get(instance));
        let same = match (&endpoint, current) {
            (None, None) => true,
            // A new session of a host name resolves it again.
            (Some(e), Some(c)) => *e == c.endpoint && !(joined && c.addrs_from_name()),
            _ => false,
        };
        if same {
            return;
        }
        let generation = t.generation + 1;
        let mut lookup = None;
        let set = t.services.entry(service.into()).or_default();
        let shown = |set: &ServiceSet| set.members.get(instance).map(|t| t.addrs.clone());
        let before = shown(set).unwrap_or_default();
        match endpoint {
            None => {
                set.members.remove(instance);
            }
            Some(e) => {
                let (mut target, resolve) = fresh(&e, m.session);
                if resolve {
                    // The old answer serves until the new one comes.
                    if let Some(old) = set.members.get(instance).filter(|o| o.endpoint == e) {
                        target.addrs = old.addrs.clone();
                    }
                    lookup = Some(target.clone());
                }
                set.members.insert(instance.into(), target);
            }
        }
        // Only what clients are sent counts as a change: a name not resolved
        // yet, or a new session keeping its addresses, pushes nothing.
        let moved = shown(set).unwrap_or_default() != before;
        if moved {
            set.changed = generation;
        }
        if set.members.is_empty() {
            // Streams compare generations for inequality: an absent service
            // reads as 0, which differs from what they last sent.
            t.services.remove(service);
        }
        if moved {
            t.generation = generation;
            drop(t);
            self.generation.send_replace(generation);
        } else {
            drop(t);
        }
        if let Some(target) = lookup {
            self.resolve(service.into(), instance.into(), target);
        }
    }

    /// Resolves `target`'s host name and, if the member still advertises
    /// it in the same session, records the addresses.
    fn resolve(self: &Arc<Self>, service: Arc<str>, instance: Arc<str>, target: Target) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let hub = self.clone();
        rt.spawn(async move {
            let Ok(_turn) = hub.resolvers.clone().acquire_owned().await else {
                return;
            };
            let addrs = match tokio::net::lookup_host(&*target.endpoint).await {
                Ok(a) => a.collect::<Vec<_>>(),
                Err(e) => {
                    warn!(member = %format!("{service}/{instance}"), endpoint = %target.endpoint, error = %e,
                        "the member's endpoint does not resolve; it gets no xDS traffic until it joins again");
                    Vec::new()
                }
            };
            hub.resolved(&service, &instance, &target, dedup(addrs));
        });
    }

    fn resolved(&self, service: &str, instance: &str, asked: &Target, addrs: Vec<SocketAddr>) {
        let mut t = self.lock();
        let generation = t.generation + 1;
        let Some(set) = t.services.get_mut(service) else {
            return;
        };
        let Some(target) = set.members.get_mut(instance) else {
            return;
        };
        if target.endpoint != asked.endpoint || target.session != asked.session {
            return;
        }
        if target.addrs == addrs {
            return;
        }
        target.addrs = addrs;
        set.changed = generation;
        t.generation = generation;
        drop(t);
        self.generation.send_replace(generation);
    }
}

/// A target for `endpoint`; whether it names a host to resolve.
fn fresh(endpoint: &Arc<str>, session: u64) -> (Target, bool) {
    let ip = endpoint.parse::<SocketAddr>().ok();
    let target = Target {
        endpoint: endpoint.clone(),
        session,
        addrs: ip.into_iter().collect(),
    };
    (target, ip.is_none())
}

/// Addresses in the resolver's order, each once.
fn dedup(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for a in addrs {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
