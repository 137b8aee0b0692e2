//! The cluster's records in etcd and the only writes that change them
//! (CLUSTER.md §2.4, §2.5, §2.7):
//!
//! ```text
//!   <prefix>meta/epoch                 µs of the first replica's start, written once
//!   <prefix>replicas/<id>              one per replica, on its lease
//!   <prefix>members/<service>/<inst>   one per member, on no lease
//! ```
//!
//! Every member write is one single-key transaction fenced twice: on the
//! member's `mod_revision` as the writer last saw it (or "absent"), and on
//! the writer's own replica key still having the `create_revision` it
//! registered with. A replica whose lease ended has no key, so nothing it
//! writes lands: fencing by etcd's revisions, never by a clock. A failed
//! transaction says which fence failed and returns the member's current
//! record, so the caller can re-decide.

use std::collections::HashMap;
use std::sync::Arc;

use crate::etcd::pb::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, compare,
    request_op, response_op,
};
use crate::etcd::pb::mvccpb::KeyValue;
use crate::etcd::{Etcd, EtcdError};

/// A member as stored (protobuf, so records stay readable by later
/// versions).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredMember {
    /// Labels.
    #[prost(map = "string, string", tag = "1")]
    pub labels: HashMap<String, String>,
    /// `heartbeat.v1.MemberState` number.
    #[prost(int32, tag = "2")]
    pub state: i32,
    /// `heartbeat.v1.MemberStatus` number.
    #[prost(int32, tag = "3")]
    pub status: i32,
    /// The session; 0 in the Join's own write means "the revision of this
    /// write" (a Range recovers it as `create`/`mod_revision`).
    #[prost(uint64, tag = "4")]
    pub session: u64,
    /// Agreed interval, ms.
    #[prost(uint64, tag = "5")]
    pub interval_ms: u64,
    /// Agreed timeout, ms.
    #[prost(uint64, tag = "6")]
    pub timeout_ms: u64,
    /// The replica holding the stream (its id).
    #[prost(string, tag = "7")]
    pub owner: String,
    /// That replica's registration revision (its key's `create_revision`).
    #[prost(int64, tag = "8")]
    pub owner_reg_rev: i64,
    /// Why the record changed (the event's reason).
    #[prost(string, tag = "9")]
    pub reason: String,
    /// `Join.endpoint`, when given.
    #[prost(string, tag = "10")]
    pub endpoint: String,
    /// When the session joined: µs since the Unix epoch (display only).
    #[prost(uint64, tag = "11")]
    pub joined_at_us: u64,
    /// When the record last changed: µs since the Unix epoch (display only).
    #[prost(uint64, tag = "12")]
    pub changed_at_us: u64,
}

/// A replica as stored on its lease.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredReplica {
    /// The address peers and operators use (`--advertise`).
    #[prost(string, tag = "1")]
    pub advertise: String,
    /// heartbeat's version.
    #[prost(string, tag = "2")]
    pub version: String,
    /// Its lease.
    #[prost(int64, tag = "3")]
    pub lease: i64,
}

/// What a replica's writes are fenced on: its key, and the revision that
/// created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The replica's id.
    pub replica: String,
    /// `create_revision` of its key.
    pub reg_rev: i64,
}

/// What the member's record must be for a write to land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No record (a new identity).
    Absent,
    /// The record as last seen: its `mod_revision`.
    At(i64),
}

/// How a member write went.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// Committed at this revision.
    Committed(i64),
    /// The record is not as expected: here it is now (`None`: absent).
    Conflict(Option<KeyValue>),
    /// The writer's replica key is gone or was re-created: it may change
    /// nothing.
    Fenced,
}

/// The cluster's records under one prefix.
#[derive(Debug, Clone)]
pub struct Store {
    etcd: Arc<Etcd>,
    prefix: String,
}

fn txn_compare(
    key: Vec<u8>,
    target: compare::CompareTarget,
    union: compare::TargetUnion,
) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: target as i32,
        key,
        target_union: Some(union),
        ..Default::default()
    }
}

fn range(key: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key,
            ..Default::default()
        })),
    }
}

impl Store {
    /// The records under `prefix` (e.g. `/heartbeat/`).
    pub fn new(etcd: Arc<Etcd>, prefix: &str) -> Self {
        Self {
            etcd,
            prefix: prefix.to_owned(),
        }
    }

    /// The key of a member.
    pub fn member_key(&self, service: &str, instance: &str) -> Vec<u8> {
        format!("{}members/{service}/{instance}", self.prefix).into_bytes()
    }

    /// The prefix of every member's key.
    pub fn members_prefix(&self) -> Vec<u8> {
        format!("{}members/", self.prefix).into_bytes()
    }

    /// The key of a replica.
    pub fn replica_key(&self, id: &str) -> Vec<u8> {
        format!("{}replicas/{id}", self.prefix).into_bytes()
    }

    /// Puts `value` at `key` (on `lease`, 0 = none) only if the key does
    /// not exist; otherwise returns what is there.
    async fn create(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
    ) -> Result<crate::etcd::pb::etcdserverpb::TxnResponse, EtcdError> {
        self.etcd
            .txn(TxnRequest {
                compare: vec![txn_compare(
                    key.clone(),
                    compare::CompareTarget::Create,
                    compare::TargetUnion::CreateRevision(0),
                )],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: key.clone(),
                        value,
                        lease,
                        ..Default::default()
                    })),
                }],
                failure: vec![range(key)],
            })
            .await
    }

    /// The cluster's epoch: the one already stored, or `now_us` when this
    /// replica is the first.
    pub async fn epoch(&self, now_us: u64) -> Result<u64, EtcdError> {
        let key = format!("{}meta/epoch", self.prefix).into_bytes();
        let r = self.create(key, now_us.to_string().into_bytes(), 0).await?;
        if r.succeeded {
            return Ok(now_us);
        }
        let stored = first_kv(&r.responses).map(|kv| kv.value);
        Ok(stored
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(now_us))
    }

    /// Registers replica `id` on its lease; its fence. `None` when the key
    /// exists already (the id is not fresh).
    pub async fn register(
        &self,
        id: &str,
        replica: &StoredReplica,
    ) -> Result<Option<Fence>, EtcdError> {
        let value = prost::Message::encode_to_vec(replica);
        let r = self
            .create(self.replica_key(id), value, replica.lease)
            .await?;
        Ok(r.succeeded.then(|| Fence {
            replica: id.to_owned(),
            reg_rev: r.header.map_or(0, |h| h.revision),
        }))
    }

    /// Writes `record` as the member at `key` (or deletes it, for `None`),
    /// if it is as `expect`ed and `fence` still holds.
    pub async fn write(
        &self,
        fence: &Fence,
        key: &[u8],
        expect: Expect,
        record: Option<&StoredMember>,
    ) -> Result<Written, EtcdError> {
        let replica_key = self.replica_key(&fence.replica);
        let member = match expect {
            Expect::Absent => txn_compare(
                key.to_vec(),
                compare::CompareTarget::Create,
                compare::TargetUnion::CreateRevision(0),
            ),
            Expect::At(rev) => txn_compare(
                key.to_vec(),
                compare::CompareTarget::Mod,
                compare::TargetUnion::ModRevision(rev),
            ),
        };
        let fenced = txn_compare(
            replica_key.clone(),
            compare::CompareTarget::Create,
            compare::TargetUnion::CreateRevision(fence.reg_rev),
        );
        let op = match record {
            Some(m) => request_op::Request::RequestPut(PutRequest {
                key: key.to_vec(),
                value: prost::Message::encode_to_vec(m),
                ..Default::default()
            }),
            None => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                key: key.to_vec(),
                ..Default::default()
            }),
        };
        let r = self
            .etcd
            .txn(TxnRequest {
                compare: vec![member, fenced],
                success: vec![RequestOp { request: Some(op) }],
                failure: vec![range(key.to_vec()), range(replica_key)],
            })
            .await?;
        if r.succeeded {
            return Ok(Written::Committed(r.header.map_or(0, |h| h.revision)));
        }
        let kvs = |i: usize| match r.responses.get(i).and_then(|op| op.response.as_ref()) {
            Some(response_op::Response::ResponseRange(range)) => range.kvs.first().cloned(),
            _ => None,
        };
        let still_registered = kvs(1).is_some_and(|kv| kv.create_revision == fence.reg_rev);
        if !still_registered {
            return Ok(Written::Fenced);
        }
        Ok(Written::Conflict(kvs(0)))
    }
}

/// The `MemberEvent.revision` of a member write: the cluster's epoch plus
/// etcd's revision, which every member write has to itself (one key per
/// transaction), so revisions strictly increase cluster-wide and across
/// restarts (CLUSTER.md §2.6).
pub fn revision(epoch: u64, kv: &KeyValue) -> u64 {
    epoch + kv.mod_revision.max(0) as u64
}

/// The session of a stored member: the one it carries, or, in the Join's
/// own write (which stores 0), the revision of that write.
pub fn session(epoch: u64, kv: &KeyValue, stored: &StoredMember) -> u64 {
    if stored.session == 0 {
        revision(epoch, kv)
    } else {
        stored.session
    }
}

fn first_kv(responses: &[crate::etcd::pb::etcdserverpb::ResponseOp]) -> Option<KeyValue> {
    match responses.first()?.response.as_ref()? {
        response_op::Response::ResponseRange(r) => r.kvs.first().cloned(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_and_revisions_come_from_etcd_revisions() {
        let epoch = 1_700_000_000_000_000;
        let joined = KeyValue {
            mod_revision: 42,
            ..Default::default()
        };
        let fresh = StoredMember::default();
        assert_eq!(revision(epoch, &joined), epoch + 42);
        assert_eq!(session(epoch, &joined, &fresh), epoch + 42);
        // A later write of that session carries it explicitly.
        let later = KeyValue {
            mod_revision: 50,
            ..Default::default()
        };
        let carried = StoredMember {
            session: epoch + 42,
            ..Default::default()
        };
        assert_eq!(session(epoch, &later, &carried), epoch + 42);
        assert_eq!(revision(epoch, &later), epoch + 50);
    }
}
