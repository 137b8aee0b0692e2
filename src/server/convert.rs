//! Domain types to wire types, at the server's edge.

use super::state::WallClock;
use crate::liveness::{Event, EventKind, MemberView, State, Status};
use crate::pb::heartbeat::v1 as pb;

pub(crate) use crate::pb::duration_to_pb as duration;

pub(crate) fn state(s: State) -> pb::MemberState {
    match s {
        State::Alive => pb::MemberState::Alive,
        State::Suspect => pb::MemberState::Suspect,
        State::Dead => pb::MemberState::Dead,
        State::Left => pb::MemberState::Left,
    }
}

pub(crate) fn status(s: Status) -> pb::MemberStatus {
    match s {
        Status::Serving => pb::MemberStatus::Serving,
        Status::NotServing => pb::MemberStatus::NotServing,
    }
}

pub(crate) fn member(m: &MemberView, clock: &WallClock) -> pb::Member {
    pb::Member {
        service: m.service().to_owned(),
        instance: m.instance().to_owned(),
        labels: m
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        state: state(m.state) as i32,
        status: status(m.status) as i32,
        session: m.session,
        interval: Some(duration(m.interval)),
        timeout: Some(duration(m.timeout)),
        joined_at: Some(clock.timestamp(m.joined_at)),
        last_seen: Some(clock.timestamp(m.last_seen)),
        endpoint: String::new(),
        replica: String::new(),
    }
}

pub(crate) fn event_type(k: EventKind) -> pb::EventType {
    match k {
        EventKind::Joined => pb::EventType::Joined,
        EventKind::Updated => pb::EventType::Updated,
        EventKind::Dead => pb::EventType::Dead,
        EventKind::Left => pb::EventType::Left,
        EventKind::Removed => pb::EventType::Removed,
    }
}

pub(crate) fn event(e: &Event, clock: &WallClock) -> pb::MemberEvent {
    pb::MemberEvent {
        revision: e.revision,
        r#type: event_type(e.kind) as i32,
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
