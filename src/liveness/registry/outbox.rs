//! What the registry's calls changed, for the caller to deliver while it
//! still holds the registry (so every consumer sees revision order).

use std::sync::Arc;

use crate::liveness::member::{Event, Health, StreamEnd, Transition};

/// What the last calls changed, for the caller to deliver.
#[derive(Debug, Default)]
pub struct Outbox {
    /// New events, in revision order (also kept in the history).
    pub events: Vec<Arc<Event>>,
    /// Health names whose status changed, in order (`None` = now unknown).
    pub health: Vec<(Arc<str>, Health)>,
    /// Streams (by session) that must end, and why.
    pub ends: Vec<(u64, StreamEnd)>,
    /// State moves, for gauges by state and detection lateness.
    pub transitions: Vec<Transition>,
    /// The earliest deadline moved earlier: a sleeping driver must wake.
    pub wake: bool,
    /// Members held SUSPECT by mass-failure protection, with how many of how
    /// many live members were silent when each was held.
    pub held: Vec<(Arc<str>, u32, u32)>,
}

impl Outbox {
    /// True when there is nothing to deliver.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.health.is_empty()
            && self.ends.is_empty()
            && self.transitions.is_empty()
            && self.held.is_empty()
            && !self.wake
    }
}
