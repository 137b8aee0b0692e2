//! Domain types to wire messages, at the server's edge (the enum
//! conversions are `From` impls in `crate::pb`).

use super::state::WallClock;
use crate::liveness::{Event, MemberView};
use crate::pb::heartbeat::v1 as pb;

pub(crate) use crate::pb::duration_to_pb as duration;

pub(crate) fn member(m: &MemberView, clock: &WallClock) -> pb::Member {
    pb::Member {
        service: m.service().to_owned(),
        instance: m.instance().to_owned(),
        labels: m
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        state: pb::MemberState::from(m.state) as i32,
        status: pb::MemberStatus::from(m.status) as i32,
        session: m.session,
        interval: Some(duration(m.interval)),
        timeout: Some(duration(m.timeout)),
        joined_at: Some(clock.timestamp(m.joined_at)),
        last_seen: Some(clock.timestamp(m.last_seen)),
        endpoint: m.endpoint.as_deref().unwrap_or_default().to_owned(),
        replica: m.replica.as_deref().unwrap_or_default().to_owned(),
    }
}

pub(crate) fn event(e: &Event, clock: &WallClock) -> pb::MemberEvent {
    pb::MemberEvent {
        revision: e.revision,
        r#type: pb::EventType::from(e.kind) as i32,
        member: Some(member(&e.member, clock)),
    }
}

pub(crate) fn snapshot_row(m: &MemberView, revision: u64, clock: &WallClock) -> pb::MemberEvent {
    pb::MemberEvent {
        revision,
        r#type: pb::EventType::Snapshot as i32,
        member: Some(member(m, clock)),
    }
}

pub(crate) fn snapshot_end(revision: u64) -> pb::MemberEvent {
    pb::MemberEvent {
        revision,
        r#type: pb::EventType::SnapshotEnd as i32,
        member: None,
    }
}
