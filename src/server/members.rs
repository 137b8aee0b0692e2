//! ListMembers and WatchMembers.
//!
//! A watch subscribes to the live event broadcast and reads its starting
//! point (history replay or snapshot) under the registry lock, so nothing
//! falls between the two. A watcher that falls more than the broadcast
//! buffer behind is sent a fresh snapshot (clients must accept one at any
//! time, SPEC §2) instead of holding the server's memory hostage.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::broadcast;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::Status as GrpcStatus;
use tracing::warn;

use super::convert;
use super::state::{Inner, Shared};
use crate::liveness::Event;
use crate::pb::heartbeat::v1::{
    ListMembersRequest, ListMembersResponse, MemberEvent, WatchMembersRequest,
};
use crate::validate;

/// The response stream of WatchMembers.
pub type WatchMembersStream = Pin<Box<dyn Stream<Item = Result<MemberEvent, GrpcStatus>> + Send>>;

pub(crate) fn list(
    shared: &Shared,
    req: ListMembersRequest,
) -> Result<ListMembersResponse, GrpcStatus> {
    let filter = validate::service_filter("service", &req.service)
        .map_err(|e| GrpcStatus::invalid_argument(e.to_string()))?;
    let (members, revision) =
        shared.with(|i| (i.core.members(filter.as_deref()), i.core.revision()));
    Ok(ListMembersResponse {
        members: members
            .iter()
            .map(|m| convert::member(m, &shared.clock))
            .collect(),
        revision,
    })
}

pub(crate) fn watch(
    shared: Arc<Shared>,
    req: WatchMembersRequest,
) -> Result<WatchMembersStream, GrpcStatus> {
    let filter = validate::service_filter("service", &req.service)
        .map_err(|e| GrpcStatus::invalid_argument(e.to_string()))?;
    if shared.drain.is_cancelled() {
        return Err(GrpcStatus::unavailable("server is shutting down"));
    }
    let mut pending = VecDeque::new();
    let (rx, last) = shared.with(|i| {
        let rx = shared.events.subscribe();
        let replay = match req.since_revision {
            0 => None,
            since => i.core.events_since(since).map(|events| {
                events
                    .filter(|e| matches(&filter, e))
                    .map(|e| convert::event(e, &shared.clock))
                    .collect::<Vec<_>>()
            }),
        };
        let last = match replay {
            Some(events) => {
                pending.extend(events);
                i.core.revision()
            }
            None => snapshot(&shared, i, &filter, &mut pending),
        };
        (rx, last)
    });
    let watch = MemberWatch {
        drained: Box::pin(shared.drain.clone().cancelled_owned()),
        shared,
        filter,
        rx,
        pending,
        last,
        done: false,
    };
    Ok(Box::pin(futures_util::stream::unfold(
        watch,
        |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        },
    )))
}

fn matches(filter: &Option<String>, e: &Event) -> bool {
    filter.as_deref().is_none_or(|s| e.member.service() == s)
}

/// Queues a snapshot of the table; returns its revision.
fn snapshot(
    shared: &Shared,
    i: &Inner,
    filter: &Option<String>,
    pending: &mut VecDeque<MemberEvent>,
) -> u64 {
    let revision = i.core.revision();
    pending.clear();
    pending.extend(
        i.core
            .members(filter.as_deref())
            .iter()
            .map(|m| convert::snapshot_row(m, revision, &shared.clock)),
    );
    pending.push_back(convert::snapshot_end(revision));
    revision
}

struct MemberWatch {
    shared: Arc<Shared>,
    filter: Option<String>,
    rx: broadcast::Receiver<Arc<Event>>,
    pending: VecDeque<MemberEvent>,
    /// Revision of the last event queued; older live events are skipped.
    last: u64,
    drained: Pin<Box<WaitForCancellationFutureOwned>>,
    done: bool,
}

impl MemberWatch {
    async fn next(&mut self) -> Option<Result<MemberEvent, GrpcStatus>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(e) = self.pending.pop_front() {
                return Some(Ok(e));
            }
            let received = tokio::select! {
                biased;
                r = self.rx.recv() => r,
                _ = &mut self.drained => {
                    self.done = true;
                    return Some(Err(GrpcStatus::unavailable("server is shutting down")));
                }
            };
            match received {
                Ok(e) if e.revision > self.last => {
                    self.last = e.revision;
                    if matches(&self.filter, &e) {
                        return Some(Ok(convert::event(&e, &self.shared.clock)));
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(
                        missed,
                        "member watcher fell behind; sending a fresh snapshot"
                    );
                    let shared = self.shared.clone();
                    self.last =
                        shared.with(|i| snapshot(&shared, i, &self.filter, &mut self.pending));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
