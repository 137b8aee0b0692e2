//! One Beat stream (SPEC §2 "Beat stream rules"), as a state machine that the
//! response stream itself drives: reading a Ping and answering its Pong
//! happen in one poll of the response, with no task and no channel per
//! stream.
//!
//! ```text
//!  AwaitJoin ──Join──► Joined ──Leave──► (end OK)
//!     │                  │ Ping ─► Pong (seq, rate, fencing checked)
//!     │                  ├─ registry: DEAD / superseded ─► DEADLINE_EXCEEDED / ABORTED
//!     │                  ├─ shutdown ─► Drain, then UNAVAILABLE
//!     │                  └─ client gone / half-close ─► end (member kept until its deadline)
//!     └─ join timeout / not a Join / invalid ─► DEADLINE_EXCEEDED / INVALID_ARGUMENT
//! ```

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::{Status as GrpcStatus, Streaming};
use tracing::debug;

use super::convert::duration;
use super::error::BeatError;
use super::state::{Inner, Shared};
use crate::authz::Identity;
use crate::liveness::timing::{MAX_PINGS_PER_WINDOW, PingWindow, rate_window};
use crate::liveness::{Fenced, JoinRequest, MemberId, StreamEnd};
use crate::metrics::Rejection;
use crate::pb::heartbeat::v1::{
    BeatRequest, BeatResponse, Drain, Pong, Welcome, beat_request, beat_response,
};
use crate::validate;

/// The response stream of Beat.
pub type BeatStream = Pin<Box<dyn Stream<Item = Result<BeatResponse, GrpcStatus>> + Send>>;

/// Starts a Beat session over `inbound`.
pub(crate) fn beat(
    shared: Arc<Shared>,
    inbound: Streaming<BeatRequest>,
    identity: Identity,
) -> BeatStream {
    let started = Instant::now();
    shared.metrics.stream_opened();
    let phase = if shared.drain.is_cancelled() {
        Phase::Ending(reject(&shared, BeatError::Draining))
    } else {
        Phase::AwaitJoin(Box::pin(tokio::time::sleep_until(
            started + shared.cfg.join_timeout,
        )))
    };
    let session = Session {
        identity,
        drained: Some(Box::pin(shared.drain.clone().cancelled_owned())),
        shared,
        inbound,
        phase,
    };
    Box::pin(futures_util::stream::unfold(session, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    }))
}

struct Session {
    identity: Identity,
    shared: Arc<Shared>,
    inbound: Streaming<BeatRequest>,
    phase: Phase,
    /// The shutdown, watched until the Join; a joined stream learns it
    /// from its end signal instead (`Shared::begin_drain`).
    drained: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

enum Phase {
    AwaitJoin(Pin<Box<Sleep>>),
    Joined(Box<Joined>),
    /// Send this status next, then end.
    Ending(GrpcStatus),
    Done,
}

struct Joined {
    id: MemberId,
    timeout: Duration,
    window: Duration,
    last_seq: Option<u64>,
    pings: PingWindow,
    ended: oneshot::Receiver<StreamEnd>,
}

type Item = Result<BeatResponse, GrpcStatus>;

impl Session {
    /// The next response of the stream, `None` at its end.
    async fn next(&mut self) -> Option<Item> {
        match &mut self.phase {
            Phase::Done => None,
            Phase::Ending(_) => match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Ending(status) => Some(Err(status)),
                _ => None,
            },
            Phase::AwaitJoin(_) => self.await_join().await,
            Phase::Joined(_) => self.joined().await,
        }
    }

    /// Waits for the Join (bounded by the join timeout, cut short by a
    /// shutdown); answers Welcome or the refusal.
    async fn await_join(&mut self) -> Option<Item> {
        let Phase::AwaitJoin(deadline) = &mut self.phase else {
            return None;
        };
        let (shared, Some(drained)) = (&self.shared, &mut self.drained) else {
            return None;
        };
        let msg = tokio::select! {
            biased;
            _ = drained => Err(reject(shared, BeatError::Draining)),
            _ = deadline => Err(reject(shared, BeatError::JoinTimeout(shared.cfg.join_timeout))),
            msg = self.inbound.message() => msg.map_err(|s| decode_error(shared, s)),
        };
        self.phase = Phase::Done;
        match msg {
            Ok(Some(req)) => Some(match first(shared, &self.identity, req).await {
                Ok((joined, welcome)) => {
                    self.phase = Phase::Joined(joined);
                    self.drained = None;
                    Ok(welcome)
                }
                Err(e) => Err(reject(shared, e)),
            }),
            Ok(None) => None,
            Err(status) => Some(Err(status)),
        }
    }

    /// One step of a joined member: the registry ending it (DEAD,
    /// superseded), a shutdown (Drain), or the member's next message.
    async fn joined(&mut self) -> Option<Item> {
        let Phase::Joined(m) = &mut self.phase else {
            return None;
        };
        let shared = &self.shared;
        let session = m.id.session;
        let msg = tokio::select! {
            biased;
            end = &mut m.ended => {
                match end {
                    Ok(StreamEnd::Moved) => {
                        let spread = shared.cfg.drain.min(m.timeout / 2);
                        self.phase = Phase::Ending(BeatError::Moved.into());
                        let reason = BeatError::Moved.to_string();
                        return Some(Ok(drain_message(session, spread, reason)));
                    }
                    Ok(end) => {
                        let e = BeatError::ended(end, m.timeout);
                        self.phase = Phase::Done;
                        return Some(Err(e.into()));
                    }
                    // The signal is dropped only by the shutdown.
                    Err(_) => {
                        self.phase = Phase::Ending(BeatError::Draining.into());
                        let reason = "server shutting down".to_owned();
                        return Some(Ok(drain_message(session, shared.cfg.drain, reason)));
                    }
                }
            }
            msg = self.inbound.message() => msg.map_err(|s| decode_error(shared, s)),
        };
        let result = match msg {
            Ok(Some(req)) => on_message(shared, m, req),
            // Half-close or a broken stream without Leave: the member's
            // deadline decides (rule 7).
            Ok(None) => {
                debug!(session, "beat stream closed without leave");
                Ok(None)
            }
            Err(status) => {
                debug!(session, %status, "beat stream broke");
                Err(status)
            }
        };
        if let Ok(Some(resp)) = result {
            return Some(Ok(resp));
        }
        unregister(shared, session);
        self.phase = Phase::Done;
        result.err().map(Err)
    }
}

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

async fn first(
    shared: &Arc<Shared>,
    identity: &Identity,
    req: BeatRequest,
) -> Result<(Box<Joined>, BeatResponse), BeatError> {
    let join = match req.kind {
        Some(beat_request::Kind::Join(join)) => join,
        Some(beat_request::Kind::Ping(_)) => return Err(BeatError::NotJoin("ping")),
        Some(beat_request::Kind::Leave(_)) => return Err(BeatError::NotJoin("leave")),
        None => return Err(BeatError::Empty),
    };
    let join = validate::join(join)?;
    if let Some(authz) = &shared.cfg.authz
        && !authz.may_join(identity, &join.service)
    {
        return Err(BeatError::PermissionDenied {
            identity: identity.describe(),
            service: join.service,
        });
    }
    let now = Instant::now();
    let (tx, ended) = oneshot::channel();
    let name = format!("{}/{}", join.service, join.instance);
    let joined = match shared.replica.clone() {
        None => shared.with(|i| {
            admit(shared, i, &name, &join, now)?;
            if shared.drain.is_cancelled() {
                return Err(BeatError::Draining);
            }
            let joined = i.core.join(join, now);
            i.streams.insert(joined.id.session, tx);
            Ok::<_, BeatError>(joined)
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
                    i.streams.insert(session, tx);
                    Ok(joined)
                })
            })
            .await
            .map_err(|_| BeatError::Draining)??
        }
    };
    let state = Box::new(Joined {
        id: joined.id,
        timeout: joined.timeout,
        // The negotiated interval, never the stretched one: the budget may
        // give the member back its faster interval later.
        window: rate_window(joined.base_interval),
        last_seq: None,
        pings: PingWindow::new(now),
        ended,
    });
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

/// Handles one message after Join; `Ok(None)` ends the stream with OK.
fn on_message(
    shared: &Shared,
    m: &mut Joined,
    req: BeatRequest,
) -> Result<Option<BeatResponse>, GrpcStatus> {
    match req.kind {
        Some(beat_request::Kind::Ping(ping)) => {
            let now = Instant::now();
            if let Some(prev) = m.last_seq.filter(|&prev| ping.seq <= prev) {
                return Err(reject(
                    shared,
                    BeatError::Seq {
                        prev,
                        got: ping.seq,
                    },
                ));
            }
            let status = validate::member_status("ping.status", ping.status)
                .map_err(|e| reject(shared, e.into()))?;
            if !m.pings.admit(now, m.window) {
                return Err(reject(
                    shared,
                    BeatError::Flood {
                        limit: MAX_PINGS_PER_WINDOW,
                        window: m.window,
                    },
                ));
            }
            m.last_seq = Some(ping.seq);
            shared.metrics.ping();
            let changed = shared
                .with(|i| i.core.ping(m.id, status, now))
                .map_err(BeatError::from)?;
            Ok(Some(BeatResponse {
                kind: Some(beat_response::Kind::Pong(Pong {
                    seq: ping.seq,
                    server_time: Some(shared.clock.timestamp(now)),
                    sent_at: ping.sent_at,
                    // Set only when the ping budget changed it (SPEC §2).
                    interval: changed.map(duration),
                })),
            }))
        }
        Some(beat_request::Kind::Leave(leave)) => {
            shared
                .with(|i| i.core.leave(m.id, Instant::now()))
                .map_err(BeatError::from)?;
            debug!(session = m.id.session, reason = %leave.reason, "leave");
            Ok(None)
        }
        Some(beat_request::Kind::Join(_)) => Err(reject(shared, BeatError::SecondJoin)),
        None => Err(reject(shared, BeatError::Empty)),
    }
}

fn drain_message(session: u64, over: Duration, reason: String) -> BeatResponse {
    // Spread reconnects over [0, over) by session, so a fleet does not come
    // back in one burst.
    let spread = (session.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as u32; // 0..1024
    let reconnect_after = over * spread / 1024;
    BeatResponse {
        kind: Some(beat_response::Kind::Drain(Drain {
            reason,
            reconnect_after: Some(duration(reconnect_after)),
        })),
    }
}

/// The status for `e`, counted as a rejection when it is one.
fn reject(shared: &Shared, e: BeatError) -> GrpcStatus {
    if let Some(reason) = e.rejection() {
        shared.metrics.rejected(reason);
    }
    e.into()
}

/// A failed read of the request stream; an oversize message or bytes that
/// do not decode are rejections.
fn decode_error(shared: &Shared, status: GrpcStatus) -> GrpcStatus {
    match status.code() {
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => {
            shared.metrics.rejected(Rejection::MessageTooLarge);
        }
        tonic::Code::InvalidArgument => shared.metrics.rejected(Rejection::Undecodable),
        _ => {}
    }
    status
}

fn unregister(shared: &Shared, session: u64) {
    shared.with(|i| i.streams.remove(&session));
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.metrics.stream_closed();
        // A client that vanished mid-stream: forget its end signal. The
        // member itself stays until its deadline.
        if let Phase::Joined(m) = &self.phase {
            unregister(&self.shared, m.id.session);
        }
    }
}
