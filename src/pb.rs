//! Generated protobuf and gRPC code, kept in one module so the rest of the
//! crate talks in its own domain types and converts at the edges.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `heartbeat.v1`: the Beat protocol, member listing and watching.
pub mod heartbeat {
    /// Version 1 of the heartbeat wire contract.
    pub mod v1 {
        tonic::include_proto!("heartbeat.v1");
    }
}

/// `grpc.health.v1`: the standard health service, with `List` (gRFC A90).
pub mod health {
    /// Version 1 of the health protocol.
    pub mod v1 {
        tonic::include_proto!("grpc.health.v1");
    }
}

/// The full name of the heartbeat service, also its health name (SPEC §4):
/// its health is the server's own, or an agent's membership.
pub const HEARTBEAT_SERVICE: &str = "heartbeat.v1.Heartbeat";

/// Trailing metadata of an `ABORTED` Beat stream: the session that took the
/// identity over (SPEC §2 rule 5), so clients read it without parsing the
/// message text.
pub const SUPERSEDED_BY: &str = "heartbeat-superseded-by";

/// The session an `ABORTED` Beat status says took over, from
/// [`SUPERSEDED_BY`]; `None` for any other status.
pub fn superseded_by(status: &tonic::Status) -> Option<u64> {
    if status.code() != tonic::Code::Aborted {
        return None;
    }
    status
        .metadata()
        .get(SUPERSEDED_BY)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Encoded `FileDescriptorSet` of every proto of this crate (and their
/// imports), served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/heartbeat_descriptor.bin"));

/// `std::time::Duration` → `google.protobuf.Duration`.
pub fn duration_to_pb(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// `google.protobuf.Duration` → `std::time::Duration`; `None` when unset or
/// negative.
pub fn duration_from_pb(d: Option<prost_types::Duration>) -> Option<std::time::Duration> {
    let d = d?;
    (d.seconds >= 0 && d.nanos >= 0)
        .then(|| std::time::Duration::new(d.seconds as u64, d.nanos as u32))
}

/// The domain's states and statuses on the wire and back, in one place: the
/// server's listings, the clients' pings and the CLI's filters all convert
/// through these.
mod convert {
    use super::heartbeat::v1 as pb;
    use crate::liveness::{EventKind, State, Status};

    impl From<State> for pb::MemberState {
        fn from(s: State) -> Self {
            match s {
                State::Alive => pb::MemberState::Alive,
                State::Suspect => pb::MemberState::Suspect,
                State::Dead => pb::MemberState::Dead,
                State::Left => pb::MemberState::Left,
            }
        }
    }

    /// `UNSPECIFIED` is no state: `Err(())`.
    impl TryFrom<pb::MemberState> for State {
        type Error = ();
        fn try_from(s: pb::MemberState) -> Result<Self, ()> {
            match s {
                pb::MemberState::Alive => Ok(State::Alive),
                pb::MemberState::Suspect => Ok(State::Suspect),
                pb::MemberState::Dead => Ok(State::Dead),
                pb::MemberState::Left => Ok(State::Left),
                pb::MemberState::Unspecified => Err(()),
            }
        }
    }

    impl From<Status> for pb::MemberStatus {
        fn from(s: Status) -> Self {
            match s {
                Status::Serving => pb::MemberStatus::Serving,
                Status::NotServing => pb::MemberStatus::NotServing,
            }
        }
    }

    /// `UNSPECIFIED` means SERVING (SPEC §2).
    impl From<pb::MemberStatus> for Status {
        fn from(s: pb::MemberStatus) -> Self {
            match s {
                pb::MemberStatus::Unspecified | pb::MemberStatus::Serving => Status::Serving,
                pb::MemberStatus::NotServing => Status::NotServing,
            }
        }
    }

    impl From<EventKind> for pb::EventType {
        fn from(k: EventKind) -> Self {
            match k {
                EventKind::Joined => pb::EventType::Joined,
                EventKind::Updated => pb::EventType::Updated,
                EventKind::Dead => pb::EventType::Dead,
                EventKind::Left => pb::EventType::Left,
                EventKind::Removed => pb::EventType::Removed,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trips() {
            for s in [State::Alive, State::Suspect, State::Dead, State::Left] {
                assert_eq!(State::try_from(pb::MemberState::from(s)), Ok(s));
            }
            for s in [Status::Serving, Status::NotServing] {
                assert_eq!(Status::from(pb::MemberStatus::from(s)), s);
            }
            assert_eq!(Status::from(pb::MemberStatus::Unspecified), Status::Serving);
            assert!(State::try_from(pb::MemberState::Unspecified).is_err());
        }
    }
}
