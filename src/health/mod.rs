//! `grpc.health.v1` over a status map: Check, Watch and List, spec-exact.
//!
//! The server publishes `""`, `heartbeat.v1.Heartbeat`, `<service>` and
//! `<service>/<instance>` here (SPEC §4); the agent publishes its own names.
//! Both use this one implementation.

mod map;
mod service;

pub use map::{HealthMap, MemberHealth, MemberTable, WATCH_BUFFER, Watch};
pub use service::{HealthService, LIST_LIMIT};
