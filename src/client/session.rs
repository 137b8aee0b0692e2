//! One connection attempt and, once welcomed, one session: connect, Join,
//! then ping every interval while watching the server's own deadline.
//!
//! The server-liveness deadline is ours: no Pong (or any server message) for
//! the agreed timeout aborts the stream and drops the connection, without
//! waiting for TCP or HTTP/2 to notice (a half-open connection never does).
//! Each attempt dials a fresh connection for the same reason.
//!
//! The protocol itself (Join, Welcome, pings, pongs, Leave) is
//! [`super::beat::BeatStream`]'s; this is what a session does with it.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::debug;

use super::LeaveError;
use super::beat::{BeatStream, Ended, Incoming, JoinAs, JoinError, StreamOptions};
use super::config::ClientConfig;
use super::state::{ClientState, ClientStatus};
use crate::liveness::Status;

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

/// Runs one attempt against `url` and, if welcomed, the whole session.
pub(crate) async fn run(ctx: &mut Ctx<'_>, url: &str) -> End {
    let wait = ctx.status.borrow().timeout;
    let deadline = Instant::now() + wait;
    let channel = match ctx.dial.channel(url, wait).await {
        Ok(c) => c,
        Err(e) => return End::Failed(e.to_string()),
    };
    let join = JoinAs {
        service: ctx.cfg.service.clone(),
        instance: ctx.cfg.instance.clone(),
        interval: ctx.cfg.interval,
        timeout: ctx.cfg.timeout,
        labels: ctx.cfg.labels.clone(),
        // The status of this moment, so a member is never advertised
        // SERVING before it is (SPEC §2 Join.status).
        status: *ctx.member_status.borrow_and_update(),
        endpoint: ctx.cfg.endpoint.clone(),
    };
    let opts = StreamOptions {
        wait: deadline.saturating_duration_since(Instant::now()),
        ..StreamOptions::default()
    };
    let mut stream = match BeatStream::open(channel, ctx.dial, &join, opts).await {
        Ok(s) => s,
        Err(JoinError::Refused(s)) => {
            return End::Failed(format!("join refused: {}", ctx.dial.explain(&s)));
        }
        Err(e) => return End::Failed(e.to_string()),
    };
    // ONLINE at Welcome, but the attempt only counts as a success (failures
    // back to 0) once a Pong arrives: a server that welcomes and then stays
    // silent is failing (SPEC §5). An OFFLINE client stays OFFLINE until then.
    ctx.status.send_modify(|s| {
        if s.state != ClientState::Offline {
            s.state = ClientState::Online;
        }
        s.session = Some(stream.session());
        s.server = Some(url.to_owned());
        s.interval = stream.interval();
        s.timeout = stream.timeout();
    });
    let mut ponged = false;
    match live(ctx, &mut stream, &mut ponged).await {
        End::Lost(why) if !ponged => End::Failed(format!("welcomed, but no Pong: {why}")),
        end => end,
    }
}

fn ticker(period: Duration, start: Instant) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(start, period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// Pings until the session ends, keeping the deadline on the server.
async fn live(ctx: &mut Ctx<'_>, stream: &mut BeatStream, ponged: &mut bool) -> End {
    let timeout = stream.timeout();
    let mut ticker = ticker(stream.interval(), Instant::now());
    let server_deadline = tokio::time::sleep(timeout);
    tokio::pin!(server_deadline);
    loop {
        tokio::select! {
            biased;
            cmd = ctx.commands.recv() => {
                let Some(Command::Leave(reply)) = cmd else { return End::Left };
                let _ = reply.send(stream.leave("leaving", ctx.cfg.leave_timeout).await);
                return End::Left;
            }
            msg = stream.next() => {
                let now = Instant::now();
                server_deadline.as_mut().reset(now + timeout);
                match msg {
                    Incoming::Pong { rtt, interval } => {
                        pong(ctx, ponged, rtt);
                        if let Some(new) = interval {
                            debug!(interval = ?new, "server changed the interval");
                            ticker = self::ticker(new, now + new);
                            ctx.status.send_modify(|s| s.interval = new);
                        }
                    }
                    Incoming::Drain(after) => return End::Drained(after),
                    Incoming::Ended(Ended::Superseded(by)) => return End::Superseded(by),
                    Incoming::Ended(Ended::Closed) => {
                        return End::Lost("server ended the stream".into());
                    }
                    Incoming::Ended(Ended::Status(_, why) | Ended::Unexpected(why)) => {
                        return End::Lost(why);
                    }
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
                ping(ctx, stream);
            }
            _ = ticker.tick() => ping(ctx, stream),
        }
    }
}

fn ping(ctx: &mut Ctx<'_>, stream: &mut BeatStream) {
    let status = *ctx.member_status.borrow_and_update();
    if stream.ping(status) {
        if let Some(m) = &ctx.cfg.metrics {
            m.ping();
        }
    } else {
        debug!("ping skipped: previous one not yet taken");
    }
}

/// A Pong: the first one makes the attempt a success; RTT into status and
/// metrics.
fn pong(ctx: &mut Ctx<'_>, ponged: &mut bool, rtt: Option<Duration>) {
    if !*ponged {
        *ponged = true;
        ctx.status.send_modify(|s| {
            s.state = ClientState::Online;
            s.failures = 0;
        });
    }
    if let Some(rtt) = rtt {
        if let Some(m) = &ctx.cfg.metrics {
            m.rtt(rtt);
        }
        ctx.status.send_modify(|s| s.rtt = Some(rtt));
    }
}
