//! One connection attempt and, once welcomed, one session: connect, Join,
//! then ping every interval while watching the server's own deadline.
//!
//! The server-liveness deadline is ours: no Pong (or any server message) for
//! the agreed timeout aborts the stream and drops the connection, without
//! waiting for TCP or HTTP/2 to notice (a half-open connection never does).
//! Each attempt dials a fresh connection for the same reason.
//!
//! Pings go through a request channel of capacity one: a slow server that
//! stops reading makes us skip pings (the deadline then decides), never
//! queue them.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tracing::debug;

use super::LeaveError;
use super::config::ClientConfig;
use super::metrics::ClientMetrics;
use super::state::{ClientState, ClientStatus};
use crate::liveness::Status;
use crate::liveness::timing::client_interval;
use crate::pb::heartbeat::v1::{
    BeatRequest, BeatResponse, Join, Leave, MemberStatus, Ping, beat_request, beat_response,
    heartbeat_client::HeartbeatClient,
};

/// A request from the handle to the running client.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send Leave and report how it went.
    Leave(oneshot::Sender<Result<(), LeaveError>>),
}

/// How a session (or attempt) ended.
#[derive(Debug)]
pub(crate) enum End {
    /// No Welcome: the attempt failed.
    Failed(String),
    /// Welcomed, then lost: deadline, broken stream, or the server ended it.
    Lost(String),
    /// The server drained us.
    Drained(Duration),
    /// A newer session took over.
    Superseded(u64),
    /// We left (or the handle asked us to stop).
    Left,
}

/// What a session shares with the reconnect loop.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a ClientConfig,
    pub dial: &'a super::Dial,
    pub status: &'a watch::Sender<ClientStatus>,
    pub member_status: &'a mut watch::Receiver<Status>,
    pub commands: &'a mut mpsc::Receiver<Command>,
}

use crate::pb::{duration_from_pb as from_pb, duration_to_pb as to_pb};

fn member_status(s: Status) -> i32 {
    match s {
        Status::Serving => MemberStatus::Serving as i32,
        Status::NotServing => MemberStatus::NotServing as i32,
    }
}

/// Runs one attempt against `url` and, if welcomed, the whole session.
pub(crate) async fn run(ctx: &mut Ctx<'_>, url: &str) -> End {
    let wait = ctx.status.borrow().timeout;
    let deadline = Instant::now() + wait;
    let channel = match ctx.dial.channel(url, wait).await {
        Ok(c) => c,
        Err(e) => return End::Failed(e.to_string()),
    };
    let (tx, rx) = mpsc::channel::<BeatRequest>(1);
    let join = Join {
        service: ctx.cfg.service.clone(),
        instance: ctx.cfg.instance.clone(),
        interval: ctx.cfg.interval.map(to_pb),
        timeout: ctx.cfg.timeout.map(to_pb),
        labels: ctx.cfg.labels.clone().into_iter().collect(),
        endpoint: String::new(),
        // The status of this moment, so a member is never advertised
        // SERVING before it is (SPEC §2 Join.status).
        status: member_status(*ctx.member_status.borrow_and_update()),
    };
    let _ = tx.try_send(BeatRequest {
        kind: Some(beat_request::Kind::Join(join)),
    });
    let mut client = HeartbeatClient::new(channel);
    let request = ctx.dial.request(ReceiverStream::new(rx));
    let call = tokio::time::timeout_at(deadline, client.beat(request));
    let mut responses = match call.await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(s)) => return End::Failed(format!("Beat refused: {}", super::status_text(&s))),
        Err(_) => return End::Failed(format!("no answer to Beat within {wait:?}")),
    };
    let welcome = match tokio::time::timeout_at(deadline, responses.message()).await {
        Ok(Ok(Some(BeatResponse {
            kind: Some(beat_response::Kind::Welcome(w)),
        }))) => w,
        Ok(Ok(other)) => return End::Failed(format!("expected Welcome, got {other:?}")),
        Ok(Err(s)) => return End::Failed(format!("join refused: {}", super::status_text(&s))),
        Err(_) => return End::Failed(format!("no Welcome within {wait:?}")),
    };
    let timeout = from_pb(welcome.timeout)
        .filter(|t| !t.is_zero())
        .unwrap_or(wait);
    let told = from_pb(welcome.interval).unwrap_or(ctx.status.borrow().interval);
    let interval = client_interval(told, timeout);
    // ONLINE at Welcome, but the attempt only counts as a success (failures
    // back to 0) once a Pong arrives: a server that welcomes and then stays
    // silent is failing (SPEC §5). An OFFLINE client stays OFFLINE until then.
    ctx.status.send_modify(|s| {
        if s.state != ClientState::Offline {
            s.state = ClientState::Online;
        }
        s.session = Some(welcome.session);
        s.server = Some(url.to_owned());
        s.interval = interval;
        s.timeout = timeout;
    });
    Pinger {
        tx,
        seq: 0,
        last_sent: None,
        metrics: ctx.cfg.metrics.clone(),
    }
    .run(ctx, &mut responses, interval, timeout)
    .await
}

struct Pinger {
    tx: mpsc::Sender<BeatRequest>,
    seq: u64,
    last_sent: Option<(u64, Instant)>,
    metrics: Option<ClientMetrics>,
}

impl Pinger {
    fn ping(&mut self, status: Status) {
        self.seq += 1;
        let ping = Ping {
            seq: self.seq,
            status: member_status(status),
            sent_at: Some(std::time::SystemTime::now().into()),
        };
        let req = BeatRequest {
            kind: Some(beat_request::Kind::Ping(ping)),
        };
        match self.tx.try_send(req) {
            Ok(()) => {
                self.last_sent = Some((self.seq, Instant::now()));
                if let Some(m) = &self.metrics {
                    m.ping();
                }
            }
            // The server is not reading: skip, the deadline decides.
            Err(_) => debug!(seq = self.seq, "ping skipped: previous one not yet taken"),
        }
    }

    /// Pings until the session ends. Lost before any Pong, the attempt
    /// counts as failed (SPEC §5).
    async fn run(
        mut self,
        ctx: &mut Ctx<'_>,
        responses: &mut tonic::Streaming<BeatResponse>,
        interval: Duration,
        timeout: Duration,
    ) -> End {
        let mut ponged = false;
        match self
            .session(ctx, responses, interval, timeout, &mut ponged)
            .await
        {
            End::Lost(why) if !ponged => End::Failed(format!("welcomed, but no Pong: {why}")),
            end => end,
        }
    }

    async fn session(
        &mut self,
        ctx: &mut Ctx<'_>,
        responses: &mut tonic::Streaming<BeatResponse>,
        interval: Duration,
        timeout: Duration,
        ponged: &mut bool,
    ) -> End {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let server_deadline = tokio::time::sleep(timeout);
        tokio::pin!(server_deadline);
        loop {
            tokio::select! {
                biased;
                cmd = ctx.commands.recv() => {
                    let Some(Command::Leave(reply)) = cmd else { return End::Left };
                    let result = self.leave(responses, ctx.cfg.leave_timeout).await;
                    let _ = reply.send(result);
                    return End::Left;
                }
                msg = responses.message() => {
                    let now = Instant::now();
                    server_deadline.as_mut().reset(now + timeout);
                    match msg {
                        Ok(Some(BeatResponse { kind: Some(beat_response::Kind::Pong(pong)) })) => {
                            if !*ponged {
                                *ponged = true;
                                ctx.status.send_modify(|s| {
                                    s.state = ClientState::Online;
                                    s.failures = 0;
                                });
                            }
                            let rtt = match self.last_sent {
                                Some((seq, at)) if seq == pong.seq => Some(now - at),
                                _ => None,
                            };
                            let changed = from_pb(pong.interval)
                                .filter(|d| !d.is_zero())
                                .map(|d| client_interval(d, timeout))
                                .filter(|d| *d != ticker.period());
                            if let Some(new) = changed {
                                debug!(interval = ?new, "server changed the interval");
                                ticker = tokio::time::interval_at(now + new, new);
                                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                                ctx.status.send_modify(|s| s.interval = new);
                            }
                            if let Some(rtt) = rtt {
                                if let Some(m) = &self.metrics {
                                    m.rtt(rtt);
                                }
                                ctx.status.send_modify(|s| s.rtt = Some(rtt));
                            }
                        }
                        Ok(Some(BeatResponse { kind: Some(beat_response::Kind::Drain(d)) })) => {
                            return End::Drained(from_pb(d.reconnect_after).unwrap_or_default());
                        }
                        Ok(Some(other)) => return End::Lost(format!("unexpected message {other:?}")),
                        Ok(None) => return End::Lost("server ended the stream".into()),
                        Err(s) if s.code() == Code::Aborted => {
                            return End::Superseded(crate::pb::superseded_by(&s).unwrap_or(0));
                        }
                        Err(s) => return End::Lost(super::status_text(&s)),
                    }
                }
                _ = &mut server_deadline => {
                    return End::Lost(format!("no answer from the server within {timeout:?}"));
                }
                changed = ctx.member_status.changed() => {
                    // The handle is gone: stop (its Drop aborts us anyway).
                    if changed.is_err() {
                        return End::Left;
                    }
                    let status = *ctx.member_status.borrow_and_update();
                    self.ping(status);
                }
                _ = ticker.tick() => {
                    let status = *ctx.member_status.borrow_and_update();
                    self.ping(status);
                }
            }
        }
    }

    async fn leave(
        &mut self,
        responses: &mut tonic::Streaming<BeatResponse>,
        bound: Duration,
    ) -> Result<(), LeaveError> {
        let req = BeatRequest {
            kind: Some(beat_request::Kind::Leave(Leave {
                reason: "leaving".into(),
            })),
        };
        let done = async {
            self.tx
                .send(req)
                .await
                .map_err(|_| LeaveError::NotConnected)?;
            loop {
                match responses.message().await {
                    Ok(Some(_)) => continue, // pongs still in flight
                    Ok(None) => return Ok(()),
                    Err(s) => return Err(LeaveError::Refused(s.code(), s.message().to_owned())),
                }
            }
        };
        tokio::time::timeout(bound, done)
            .await
            .unwrap_or(Err(LeaveError::Timeout(bound)))
    }
}
