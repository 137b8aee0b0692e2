//! The proto3 JSON mapping of the wire messages, by reflection over the
//! descriptor set that gRPC reflection serves: lowerCamelCase names, enum
//! value names, 64-bit integers as strings, `Timestamp` as RFC 3339,
//! `Duration` as `"1.500s"`, default values left out. That is what grpcurl
//! prints and what every protobuf library's JSON parser reads, and it
//! cannot drift from the `.proto`: nothing here names a field.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

use crate::pb;

/// Why a message could not be mapped (a build whose descriptor set lacks
/// it: a bug, reported as INTERNAL).
#[derive(Debug, thiserror::Error)]
#[error("proto3 JSON of {name}: {reason}")]
pub struct JsonError {
    name: &'static str,
    reason: String,
}

fn pool() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

fn descriptor(name: &'static str) -> Result<MessageDescriptor, JsonError> {
    let err = |reason| JsonError { name, reason };
    pool()
        .map_err(err)?
        .get_message_by_name(name)
        .ok_or_else(|| err("not in the descriptor set".into()))
}

/// `msg`, whose full protobuf name is `name`, as proto3 JSON.
pub fn to_json<M: prost::Message>(msg: &M, name: &'static str) -> Result<Vec<u8>, JsonError> {
    let err = |reason: String| JsonError { name, reason };
    let desc = descriptor(name)?;
    let bytes = msg.encode_to_vec();
    let dynamic = DynamicMessage::decode(desc, bytes.as_slice()).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::with_capacity(bytes.len() * 2);
    let mut ser = serde_json::Serializer::new(&mut out);
    dynamic
        .serialize_with_options(&mut ser, &Default::default())
        .map_err(|e| err(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::heartbeat::v1 as hb;

    #[test]
    fn a_member_event_maps_as_proto3_json() {
        let event = hb::MemberEvent {
            revision: 1_700_000_000_000_001,
            r#type: hb::EventType::Dead as i32,
            member: Some(hb::Member {
                service: "web".into(),
                instance: "web-1".into(),
                labels: [("zone".to_owned(), "a".to_owned())].into(),
                state: hb::MemberState::Dead as i32,
                status: hb::MemberStatus::Serving as i32,
                session: 7,
                interval: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 500_000_000,
                }),
                timeout: Some(prost_types::Duration {
                    seconds: 3,
                    nanos: 0,
                }),
                joined_at: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                last_seen: None,
                endpoint: "10.0.0.1:8080".into(),
                replica: String::new(),
            }),
        };
        let json: serde_json::Value =
            serde_json::from_slice(&to_json(&event, "heartbeat.v1.MemberEvent").unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "revision": "1700000000000001",
                "type": "EVENT_TYPE_DEAD",
                "member": {
                    "service": "web",
                    "instance": "web-1",
                    "labels": {"zone": "a"},
                    "state": "MEMBER_STATE_DEAD",
                    "status": "MEMBER_STATUS_SERVING",
                    "session": "7",
                    "interval": "1.500s",
                    "timeout": "3s",
                    "joinedAt": "2023-11-14T22:13:20Z",
                    "endpoint": "10.0.0.1:8080",
                }
            })
        );
    }

    #[test]
    fn an_unknown_name_is_an_error_not_a_panic() {
        let e = to_json(&hb::Ping::default(), "heartbeat.v1.Nope").unwrap_err();
        assert!(e.to_string().contains("heartbeat.v1.Nope"), "{e}");
    }
}
