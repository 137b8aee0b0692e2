//! What a replica knows of the records in etcd: every member's record with
//! the revision that wrote it, and every live replica's key. Fed by the
//! mirror (in revision order) and by this replica's own commits (which may
//! arrive before the mirror shows them), it answers the questions the
//! writer and the reaper ask: what must a write expect, who owns a member,
//! which members are orphans (their owner's key is gone), and which replica
//! is the reaper (the oldest live one, CLUSTER.md §2.3).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::store::{Expect, Fence, StoredMember, StoredReplica, session};
use crate::etcd::pb::mvccpb::KeyValue;
use crate::liveness::{Labels, MemberView, Reason, State, Status};
use crate::pb::heartbeat::v1 as pb;

/// A member's record as last known.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `mod_revision` of the write that made it.
    pub mod_rev: i64,
    /// Its session (resolved: never 0).
    pub session: u64,
    /// The stored value.
    pub stored: StoredMember,
}

impl Record {
    /// What a write replacing this record must expect.
    pub fn expect(&self) -> Expect {
        Expect::At(self.mod_rev)
    }

    /// The record's state (`Dead` for an unreadable one, which no write
    /// made).
    pub fn state(&self) -> State {
        pb::MemberState::try_from(self.stored.state)
            .ok()
            .and_then(|s| State::try_from(s).ok())
            .unwrap_or(State::Dead)
    }

    /// The record's status.
    pub fn status(&self) -> Status {
        pb::MemberStatus::try_from(self.stored.status)
            .map(Status::from)
            .unwrap_or(Status::NotServing)
    }

    /// Whether replica `fence` wrote it (under that registration).
    pub fn owned_by(&self, fence: &Fence) -> bool {
        self.stored.owner == fence.replica && self.stored.owner_reg_rev == fence.reg_rev
    }
}

/// A live replica's key.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    /// Its id, shared by the views of every member it holds.
    pub id: Arc<str>,
    /// Its `create_revision`: the registration revision writes fence on.
    pub reg_rev: i64,
    /// The stored value.
    pub stored: StoredReplica,
}

/// Which key of the prefix.
#[derive(Debug, PartialEq, Eq)]
pub enum Key<'a> {
    /// `members/<service>/<instance>`: the member's name.
    Member(&'a str),
    /// `replicas/<id>`.
    Replica(&'a str),
    /// Anything else (the epoch, or keys of a later version).
    Other,
}

/// The records under one prefix.
#[derive(Debug)]
pub struct Records {
    prefix: String,
    epoch: u64,
    /// Members by `service/instance`.
    pub members: HashMap<Arc<str>, Record>,
    /// Live replicas by id.
    pub replicas: BTreeMap<String, Replica>,
}

impl Records {
    /// Nothing known yet, under `prefix`, of the cluster with `epoch`.
    pub fn new(prefix: &str, epoch: u64) -> Self {
        Self {
            prefix: prefix.to_owned(),
            epoch,
            members: HashMap::new(),
            replicas: BTreeMap::new(),
        }
    }

    /// The cluster's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Which key `key` is.
    pub fn key<'a>(&self, key: &'a [u8]) -> Key<'a> {
        let Some(rest) = key.strip_prefix(self.prefix.as_bytes()) else {
            return Key::Other;
        };
        let Ok(rest) = std::str::from_utf8(rest) else {
            return Key::Other;
        };
        if let Some(name) = rest.strip_prefix("members/")
            && name.split('/').count() == 2
        {
            Key::Member(name)
        } else if let Some(id) = rest.strip_prefix("replicas/") {
            Key::Replica(id)
        } else {
            Key::Other
        }
    }

    /// Takes in a member's record (from the mirror or a commit); an older
    /// one than known is ignored. Returns whether it was newer.
    pub fn put_member(&mut self, name: &str, kv: &KeyValue) -> Option<&Record> {
        let stored: StoredMember = prost::Message::decode(kv.value.as_slice()).ok()?;
        if self
            .members
            .get(name)
            .is_some_and(|r| r.mod_rev >= kv.mod_revision)
        {
            return None;
        }
        let record = Record {
            mod_rev: kv.mod_revision,
            session: session(self.epoch, kv, &stored),
            stored,
        };
        self.members.insert(name.into(), record);
        self.members.get(name)
    }

    /// Takes in a replica's key.
    pub fn put_replica(&mut self, id: &str, kv: &KeyValue) {
        let stored = prost::Message::decode(kv.value.as_slice()).unwrap_or_default();
        self.replicas.insert(
            id.to_owned(),
            Replica {
                id: id.into(),
                reg_rev: kv.create_revision,
                stored,
            },
        );
    }

    /// Whether the owner of `record` is gone: its key was deleted or made
    /// again under another registration.
    pub fn orphaned(&self, record: &Record) -> bool {
        self.replicas
            .get(&record.stored.owner)
            .is_none_or(|r| r.reg_rev != record.stored.owner_reg_rev)
    }

    /// Every member whose owner is gone, in name order.
    pub fn orphans(&self) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = self
            .members
            .iter()
            .filter(|(_, r)| self.orphaned(r))
            .map(|(n, _)| n.clone())
            .collect();
        out.sort_unstable();
        out
    }

    /// The reaper: the live replica registered first.
    pub fn reaper(&self) -> Option<&str> {
        self.replicas
            .iter()
            .min_by_key(|(_, r)| r.reg_rev)
            .map(|(id, _)| id.as_str())
    }

    /// The view every replica serves of `name`'s record. `wall` maps a
    /// stored wall-clock time (µs) to this process's clock, for display.
    pub fn view(&self, name: &str, record: &Record, wall: impl Fn(u64) -> Instant) -> MemberView {
        let s = &record.stored;
        let service_len = name.find('/').unwrap_or(name.len());
        let labels: Labels = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        MemberView {
            name: name.into(),
            service_len: service_len as u32,
            labels: crate::liveness::shared_labels(labels),
            state: record.state(),
            status: record.status(),
            session: record.session,
            interval: Duration::from_millis(s.interval_ms),
            timeout: Duration::from_millis(s.timeout_ms),
            joined_at: wall(s.joined_at_us),
            last_seen: wall(s.changed_at_us),
            replica: match self.replicas.get(&s.owner) {
                Some(r) => Some(r.id.clone()),
                None => (!s.owner.is_empty()).then(|| s.owner.as_str().into()),
            },
            endpoint: (!s.endpoint.is_empty()).then(|| s.endpoint.as_str().into()),
        }
    }
}

/// Why a record was written, as stored.
pub fn reason(record: &Record) -> Reason {
    Reason::parse(&record.stored.reason).unwrap_or(Reason::Status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, mod_rev: i64, create_rev: i64, value: Vec<u8>) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            mod_revision: mod_rev,
            create_revision: create_rev,
            value,
            ..Default::default()
        }
    }

    #[test]
    fn keys_orphans_and_the_reaper() {
        let mut r = Records::new("/hb/", 1000);
        assert_eq!(r.key(b"/hb/members/web/a"), Key::Member("web/a"));
        assert_eq!(r.key(b"/hb/replicas/x"), Key::Replica("x"));
        assert_eq!(r.key(b"/hb/meta/epoch"), Key::Other);
        assert_eq!(r.key(b"/other/members/web/a"), Key::Other);
        let replica = |lease| {
            prost::Message::encode_to_vec(&StoredReplica {
                lease,
                ..Default::default()
            })
        };
        r.put_replica("b", &kv("/hb/replicas/b", 7, 7, replica(2)));
        r.put_replica("a", &kv("/hb/replicas/a", 9, 9, replica(1)));
        assert_eq!(r.reaper(), Some("b"), "the oldest registration reaps");
        let member = |owner: &str, reg| {
            prost::Message::encode_to_vec(&StoredMember {
                owner: owner.into(),
                owner_reg_rev: reg,
                state: pb::MemberState::Alive as i32,
                ..Default::default()
            })
        };
        let rec = r
            .put_member("web/a", &kv("/hb/members/web/a", 10, 10, member("a", 9)))
            .cloned()
            .expect("new");
        assert_eq!(
            rec.session, 1010,
            "a Join's write: session = epoch + revision"
        );
        assert!(!r.orphaned(&rec));
        assert!(
            r.put_member("web/a", &kv("/hb/members/web/a", 10, 10, member("a", 9)))
                .is_none(),
            "the same revision twice is taken once"
        );
        r.put_member("web/b", &kv("/hb/members/web/b", 11, 11, member("a", 8)));
        r.put_member("web/c", &kv("/hb/members/web/c", 12, 12, member("gone", 3)));
        assert_eq!(r.orphans(), vec![Arc::from("web/b"), Arc::from("web/c")]);
        r.replicas.remove("b");
        assert_eq!(r.reaper(), Some("a"));
    }
}
