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

/// Encoded `FileDescriptorSet` of every proto of this crate (and their
/// imports), served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/heartbeat_descriptor.bin"));
