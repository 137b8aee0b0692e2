//! The first message of a Beat stream: the Join, and everything it must
//! pass before the member is in the table and the stream gets Welcome.
//! Boxed by the stream while it runs (a stream is joined for its whole life,
//! and this future is far larger than the joined stream's state).

use std::sync::Arc;

use tokio::time::Instant;

use super::beat::Joined;
use super::convert::duration;
use super::error::BeatError;
use super::state::{Inner, Shared};
use crate::authz::Identity;
use crate::liveness::timing::{PingWindow, rate_window};
use crate::liveness::{Fenced, JoinRequest};
use crate::pb::heartbeat::v1::{BeatRequest, BeatResponse, Welcome, beat_request, beat_response};
use crate::validate;

/// The server-wide limits a Join must pass: join rate, member limit (of
/// the table served: the cluster's in cluster mode), ping budget.
fn admit(
    shared: &Shared,
    i: &mut Inner,
    name: &str,
    join: &JoinRequest,
    now: Instant,
) -> Result<(), BeatError> {
    let (max_members, max_rate) = (shared.cfg.max_members, shared.cfg.max_join_rate);
    if !i.joins.admit(now) {
        return Err(BeatError::JoinRate(max_rate));
    }
    if i.table().len() >= max_members && i.table().get(name).is_none() {
        return Err(BeatError::MemberLimit(max_members));
    }
    if !i.core.admits(name, join) {
        let max_pings = shared.cfg.max_ping_rate;
        return Err(BeatError::PingBudget(max_pings.unwrap_or(u32::MAX)));
    }
    Ok(())
}

/// Handles the first message of a stream: validates the Join, applies
/// the authorisation file and the server's limits, joins the member (in
/// cluster mode: once etcd has the Join), and answers Welcome.
pub(super) async fn first(
    shared: Arc<Shared>,
    identity: Identity,
    req: BeatRequest,
) -> Result<(Joined, BeatResponse), BeatError> {
    let shared = &shared;
    let join = match req.kind {
        Some(beat_request::Kind::Join(join)) => join,
        Some(beat_request::Kind::Ping(_)) => return Err(BeatError::NotJoin("ping")),
        Some(beat_request::Kind::Leave(_)) => return Err(BeatError::NotJoin("leave")),
        None => return Err(BeatError::Empty),
    };
    let join = validate::join(join)?;
    if let Some(authz) = &shared.cfg.authz
        && !authz.may_join(&identity, &join.service)
    {
        return Err(BeatError::PermissionDenied {
            identity: identity.describe(),
            service: join.service,
        });
    }
    // The waker of the task polling this stream: the registry wakes it
    // when it ends the stream (see `super::streams`).
    let waker = std::future::poll_fn(|cx| std::task::Poll::Ready(cx.waker().clone())).await;
    let now = Instant::now();
    let name = format!("{}/{}", join.service, join.instance);
    let (joined, seen) = match shared.replica.clone() {
        None => shared.with(|i| {
            admit(shared, i, &name, &join, now)?;
            if shared.drain.is_cancelled() {
                return Err(BeatError::Draining);
            }
            let joined = i.core.join(join, now);
            i.streams.open(joined.id.session, &waker);
            Ok::<_, BeatError>((joined, shared.ends.seen()))
        })?,
        Some(replica) => {
            shared.with(|i| admit(shared, i, &name, &join, now))?;
            // In a task of its own: a Join written to etcd reaches the core
            // even if this stream is dropped meanwhile. One not written yet
            // when the stream goes is not written at all (the guard).
            let asked = tokio_util::sync::CancellationToken::new();
            let _gone = asked.clone().drop_guard();
            let shared = shared.clone();
            tokio::spawn(async move {
                let session =
                    super::replica::commit_join(shared.clone(), replica, join.clone(), now, asked)
                        .await?;
                shared.with(|i| {
                    let newer = i
                        .cluster
                        .as_ref()
                        .and_then(|c| c.records.as_ref())
                        .and_then(|rs| rs.members.get(name.as_str()))
                        .map(|rec| rec.session)
                        .filter(|&s| s > session);
                    if let Some(by) = newer {
                        return Err(BeatError::Fenced(Fenced::Superseded { by }));
                    }
                    if shared.drain.is_cancelled() {
                        return Err(BeatError::Draining);
                    }
                    let joined = i.core.join_as(join, session, Instant::now());
                    i.streams.open(session, &waker);
                    Ok((joined, shared.ends.seen()))
                })
            })
            .await
            .map_err(|_| BeatError::Draining)??
        }
    };
    let state = Joined {
        id: joined.id,
        timeout: joined.timeout,
        last_seq: None,
        // The negotiated interval, never the stretched one: the budget may
        // give the member back its faster interval later.
        pings: PingWindow::new(now, rate_window(joined.base_interval)),
        seen,
    };
    let welcome = BeatResponse {
        kind: Some(beat_response::Kind::Welcome(Welcome {
            server_id: shared.server_id.clone(),
            session: joined.id.session,
            interval: Some(duration(joined.interval)),
            timeout: Some(duration(joined.timeout)),
        })),
    };
    Ok((state, welcome))
}
