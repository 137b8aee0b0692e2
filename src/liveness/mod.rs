//! The liveness core: the member table, its states and deadlines (SPEC §3).
//!
//! Pure: no I/O, no clock, no runtime. Every call takes `now` (a
//! `tokio::time::Instant` read by the caller), and the table reports when it
//! next needs to run, so tests drive it with explicit instants and the server
//! drives it from one timer task.

mod budget;
mod deadlines;
mod member;
mod ping_window;
mod registry;
pub mod timing;

pub use budget::PingBudget;
pub use deadlines::DeadlineQueue;
pub use member::{
    Event, EventKind, Fenced, Health, JoinRequest, Joined, Labels, MemberId, MemberView, Reason,
    State, Status, StreamEnd, Transition,
};
#[cfg(feature = "server")]
pub(crate) use registry::shared_labels;
pub use registry::{CoreConfig, MassFailure, Outbox, Registry, Restored};

#[cfg(test)]
mod tests;
