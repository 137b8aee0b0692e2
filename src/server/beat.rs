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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;
use tonic::{Status as GrpcStatus, Streaming};
use tracing::debug;

use super::convert::duration;
use super::error::BeatError;
use super::state::Shared;
use crate::authz::Identity;
use crate::liveness::timing::{MAX_PINGS_PER_WINDOW, PingWindow};
use crate::liveness::{MemberId, StreamEnd};
use crate::metrics::Rejection;
use crate::pb::heartbeat::v1::{
    BeatRequest, BeatResponse, Drain, Pong, beat_request, beat_response,
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
        Phase::AwaitJoin(AwaitJoin {
            deadline: Box::pin(tokio::time::sleep_until(started + shared.cfg.join_timeout)),
            drained: Box::pin(shared.drain.clone().cancelled_owned()),
            identity,
        })
    };
    Box::pin(Session {
        shared,
        inbound,
        phase,
    })
}

/// One stream's state, polled by tonic as the response stream. Written by
/// hand, not as an `async` block: every member holds one for as long as it
/// is joined, and the compiler's state machine for the whole life (the Join
/// path with its etcd write included) was about 1.1 KB; this is the
/// joined state alone (about 440 bytes, tonic's decoder included), what
/// only the Join needs living in its phase or boxed while it runs.
struct Session {
    shared: Arc<Shared>,
    inbound: Streaming<BeatRequest>,
    phase: Phase,
}

/// Waiting for the Join.
struct AwaitJoin {
    deadline: Pin<Box<Sleep>>,
    /// The shutdown, watched until the Join; a joined stream learns it
    /// the way it learns its other ends ([`super::streams`]).
    drained: Pin<Box<WaitForCancellationFutureOwned>>,
    identity: Identity,
}

/// The Join on its way into the table ([`super::join::first`]).
type Joining = Pin<Box<dyn Future<Output = Result<(Joined, BeatResponse), BeatError>> + Send>>;

enum Phase {
    AwaitJoin(AwaitJoin),
    Joining(Joining),
    Joined(Joined),
    /// Send this status next, then end.
    Ending(GrpcStatus),
    Done,
}

pub(super) struct Joined {
    pub(super) id: MemberId,
    pub(super) timeout: Duration,
    pub(super) last_seq: Option<u64>,
    pub(super) pings: PingWindow,
    /// The server's end count when this stream last read its fate.
    pub(super) seen: u64,
}

type Item = Result<BeatResponse, GrpcStatus>;

impl Stream for Session {
    type Item = Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = self.get_mut();
        loop {
            let step = match &mut this.phase {
                Phase::Done => return Poll::Ready(None),
                Phase::Ending(_) => match std::mem::replace(&mut this.phase, Phase::Done) {
                    Phase::Ending(status) => return Poll::Ready(Some(Err(status))),
                    _ => return Poll::Ready(None),
                },
                Phase::AwaitJoin(_) => this.poll_join(cx),
                Phase::Joining(_) => this.poll_joining(cx),
                Phase::Joined(_) => this.poll_joined(cx),
            };
            match step {
                Step::Yield(item) => return Poll::Ready(item),
                Step::Pending => return Poll::Pending,
                Step::Again => continue,
            }
        }
    }
}

/// What a phase's poll came to.
enum Step {
    Yield(Option<Item>),
    Pending,
    /// The phase changed: poll the new one.
    Again,
}

impl Session {
    /// Waits for the Join (bounded by the join timeout, cut short by a
    /// shutdown).
    fn poll_join(&mut self, cx: &mut Context<'_>) -> Step {
        let Phase::AwaitJoin(wait) = &mut self.phase else {
            return Step::Again;
        };
        let shared = &self.shared;
        let early = if wait.drained.as_mut().poll(cx).is_ready() {
            Some(BeatError::Draining)
        } else if wait.deadline.as_mut().poll(cx).is_ready() {
            Some(BeatError::JoinTimeout(shared.cfg.join_timeout))
        } else {
            None
        };
        if let Some(e) = early {
            self.phase = Phase::Done;
            return Step::Yield(Some(Err(reject(shared, e))));
        }
        match Pin::new(&mut self.inbound).poll_next(cx) {
            Poll::Pending => Step::Pending,
            Poll::Ready(None) => {
                self.phase = Phase::Done;
                Step::Yield(None)
            }
            Poll::Ready(Some(Err(status))) => {
                self.phase = Phase::Done;
                Step::Yield(Some(Err(decode_error(shared, status))))
            }
            Poll::Ready(Some(Ok(req))) => {
                let identity = std::mem::take(&mut wait.identity);
                let join = super::join::first(shared.clone(), identity, req);
                self.phase = Phase::Joining(Box::pin(join));
                Step::Again
            }
        }
    }

    /// The Join's way into the table; Welcome or the refusal.
    fn poll_joining(&mut self, cx: &mut Context<'_>) -> Step {
        let Phase::Joining(join) = &mut self.phase else {
            return Step::Again;
        };
        let Poll::Ready(joined) = join.as_mut().poll(cx) else {
            return Step::Pending;
        };
        match joined {
            Ok((joined, welcome)) => {
                self.phase = Phase::Joined(joined);
                Step::Yield(Some(Ok(welcome)))
            }
            Err(e) => {
                self.phase = Phase::Done;
                Step::Yield(Some(Err(reject(&self.shared, e))))
            }
        }
    }

    /// One step of a joined member: the registry ending it (DEAD,
    /// superseded, moved), the shutdown (Drain), or the member's next
    /// message.
    fn poll_joined(&mut self, cx: &mut Context<'_>) -> Step {
        let Phase::Joined(m) = &mut self.phase else {
            return Step::Again;
        };
        let shared = &self.shared;
        let session = m.id.session;
        let count = shared.ends.seen();
        if count != m.seen {
            m.seen = count;
            let fate = shared.with(|i| {
                let fate = i.streams.fate(session);
                if fate.is_none() {
                    i.streams.poll_with(session, cx.waker());
                }
                fate
            });
            if let Some(end) = fate {
                let (reason, spread) = match end {
                    Some(StreamEnd::Moved) => {
                        (BeatError::Moved, shared.cfg.drain.min(m.timeout / 2))
                    }
                    Some(end) => {
                        let e = BeatError::ended(end, m.timeout);
                        self.phase = Phase::Done;
                        return Step::Yield(Some(Err(e.into())));
                    }
                    None => (BeatError::Draining, shared.cfg.drain),
                };
                let text = match &reason {
                    BeatError::Draining => "server shutting down".to_owned(),
                    other => other.to_string(),
                };
                self.phase = Phase::Ending(reason.into());
                return Step::Yield(Some(Ok(drain_message(session, spread, text))));
            }
        }
        let result = match Pin::new(&mut self.inbound).poll_next(cx) {
            Poll::Pending => return Step::Pending,
            Poll::Ready(Some(Ok(req))) => on_message(shared, m, req),
            // Half-close or a broken stream without Leave: the member's
            // deadline decides (rule 7).
            Poll::Ready(None) => {
                debug!(session, "beat stream closed without leave");
                Ok(None)
            }
            Poll::Ready(Some(Err(status))) => {
                let status = decode_error(shared, status);
                debug!(session, %status, "beat stream broke");
                Err(status)
            }
        };
        if let Ok(Some(resp)) = result {
            return Step::Yield(Some(Ok(resp)));
        }
        unregister(shared, session);
        self.phase = Phase::Done;
        Step::Yield(result.err().map(Err))
    }
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
            if !m.pings.admit(now) {
                return Err(reject(
                    shared,
                    BeatError::Flood {
                        limit: MAX_PINGS_PER_WINDOW,
                        window: m.pings.window(),
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
    shared.with(|i| i.streams.close(session));
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.metrics.stream_closed();
        // A client that vanished mid-stream: forget its stream. The member
        // itself stays until its deadline.
        if let Phase::Joined(m) = &self.phase {
            unregister(&self.shared, m.id.session);
        }
    }
}
