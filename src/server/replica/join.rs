//! A Join in cluster mode: written to etcd before it is welcomed, because
//! its session is the revision of that write (SPEC §7.3), and because the
//! write is what supersedes a stream of the same identity on any replica
//! (SPEC §7.4). The compare is on the record as this replica last saw it;
//! a concurrent Join elsewhere makes it fail, and the retry (on the record
//! etcd returned) commits later, so it is the second Join and wins.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Authority, Replica};
use crate::cluster::store::{Expect, StoredMember, Written};
use crate::etcd::pb::mvccpb::KeyValue;
use crate::liveness::timing::negotiate;
use crate::liveness::{JoinRequest, Reason};
use crate::pb::heartbeat::v1 as pb;
use crate::server::error::BeatError;
use crate::server::state::Shared;

/// Compare-and-swap attempts of one Join.
const ATTEMPTS: usize = 3;

/// Joins that may wait for a write slot. Beyond it a Join is refused at
/// once with RESOURCE_EXHAUSTED, so the client backs off and tries another
/// replica, instead of waiting past its own timeout for a Welcome while the
/// write it gave up on still lands (measured: with 10k re-Joins queued, a
/// third of the clients gave up, and each abandoned session cost a write, a
/// takeover and often a false DEAD).
pub(crate) const JOIN_QUEUE: usize = 256;

/// Writes the Join of `req` as this replica's; its session.
pub(crate) async fn commit_join(
    shared: Arc<Shared>,
    r: Arc<Replica>,
    req: JoinRequest,
    now: Instant,
    asked: CancellationToken,
) -> Result<u64, BeatError> {
    let unavailable = |why: &str| BeatError::Registry(why.to_owned());
    let authority = r.authority();
    if authority != Authority::Ok {
        return Err(BeatError::Registry(format!(
            "this replica's authority is {} (no recent answer from etcd)",
            authority.name()
        )));
    }
    let (Some(fence), Some(epoch)) = (r.fence(), r.epoch()) else {
        return Err(unavailable("this replica is not registered yet"));
    };
    let name: Arc<str> = format!("{}/{}", req.service, req.instance).into();
    let key = r.store.member_key(&req.service, &req.instance);
    let (interval, timeout) = negotiate(&shared.cfg.bounds(), req.interval, req.timeout);
    let at = shared.clock.micros(now);
    let mut value = StoredMember {
        labels: req.labels.clone().into_iter().collect(),
        state: pb::MemberState::Alive as i32,
        status: pb::MemberStatus::from(req.status) as i32,
        session: 0,
        interval_ms: interval.as_millis() as u64,
        timeout_ms: timeout.as_millis() as u64,
        owner: fence.replica.clone(),
        owner_reg_rev: fence.reg_rev,
        reason: String::new(),
        endpoint: req.endpoint.clone().unwrap_or_default(),
        joined_at_us: at,
        changed_at_us: at,
    };
    let _waiting = match Waiting::enter(&r) {
        Some(w) => w,
        None => {
            return Err(BeatError::RegistryBusy(
                JOIN_QUEUE + super::writer::IN_FLIGHT,
            ));
        }
    };
    for _ in 0..ATTEMPTS {
        // The record is read once the write can go, so it is current.
        let Ok(_slot) = r.join_slots.acquire().await else {
            return Err(unavailable("this replica is shutting down"));
        };
        if asked.is_cancelled() {
            // The client gave up on this attempt (and may have joined
            // elsewhere since): writing it now would supersede that.
            return Err(unavailable("the stream ended before the Join was written"));
        }
        let (expect, reason) = shared.with(|i| {
            let rec = i
                .cluster
                .as_ref()
                .and_then(|c| c.records.as_ref())
                .and_then(|rs| rs.members.get(&name));
            match rec {
                None => (Expect::Absent, Reason::Join),
                Some(rec) if rec.state().is_live() => (rec.expect(), Reason::Takeover),
                Some(rec) => (rec.expect(), Reason::Rejoin),
            }
        });
        value.reason = reason.as_str().into();
        let started = Instant::now();
        let written = r.store.write(&fence, &key, expect, Some(&value)).await;
        shared
            .metrics
            .cluster
            .write(written.is_ok(), started.elapsed());
        match written {
            Ok(Written::Committed(rev)) => {
                let kv = KeyValue {
                    key,
                    mod_revision: rev,
                    create_revision: rev,
                    value: prost::Message::encode_to_vec(&value),
                    ..Default::default()
                };
                shared.with(|i| {
                    if let Some(c) = i.cluster.as_mut() {
                        c.committed(rev);
                        if let Some(records) = c.records.as_mut() {
                            records.put_member(&name, &kv);
                        }
                    }
                });
                return Ok(epoch + rev.max(0) as u64);
            }
            Ok(Written::Conflict(kv)) => shared.with(|i| {
                if let Some(records) = i.cluster.as_mut().and_then(|c| c.records.as_mut()) {
                    match kv {
                        Some(kv) => {
                            records.put_member(&name, &kv);
                        }
                        None => {
                            records.members.remove(&name);
                        }
                    }
                }
            }),
            Ok(Written::Fenced) => {
                return Err(unavailable(
                    "this replica's registration in etcd ended; it is registering again",
                ));
            }
            Err(e) => return Err(BeatError::Registry(e.to_string())),
        }
    }
    Err(BeatError::Registry(format!(
        "{ATTEMPTS} writes of this identity conflicted with others; it is contended"
    )))
}

/// A Join counted among those waiting for (or holding) a write slot.
struct Waiting<'a>(&'a Replica);

impl<'a> Waiting<'a> {
    fn enter(r: &'a Replica) -> Option<Self> {
        let limit = JOIN_QUEUE + super::writer::IN_FLIGHT;
        let was = r.joins_waiting.fetch_add(1, Ordering::AcqRel);
        if was >= limit {
            r.joins_waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(r))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.joins_waiting.fetch_sub(1, Ordering::AcqRel);
    }
}
