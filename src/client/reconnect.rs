//! The reconnect state machine: which server next, how long to wait, and
//! which state to report.
//!
//! ```text
//!              Welcome                      no pong for timeout / stream broke
//! CONNECTING ──────────► ONLINE ──────────────────────────────► RECONNECTING
//!   (an attempt succeeds only when a Pong arrives: a Welcome followed by
//!    silence is a failed attempt, and OFFLINE stays OFFLINE until a Pong)
//!     │  ▲                ▲  │ Drain: wait reconnect_after,          │
//!     │  │ attempt failed │  │ next server                           │ attempt failed
//!     │  └─(< max_retries)│  └──────────► RECONNECTING               │ (max_retries in a row)
//!     │                   │ Welcome                                  ▼
//!     └─(max_retries)──► OFFLINE ◄───────────────────────────────────┘
//!                         (keeps retrying with backoff)
//! ONLINE ──ABORTED (superseded)──► SUPERSEDED (stops; never fights the newer session)
//! any ──leave()──► LEFT
//! ```
//!
//! The first reconnect after a lost server waits a random part of one
//! interval (so a fleet that lost a restarting server spreads out) and tries
//! the next server (the same one when there is one: a restart); every failed
//! attempt rotates again and waits the jittered exponential backoff. Trying
//! the lost server again first would cost a member of a cluster one whole
//! failed attempt (a timeout) against a stopped replica before its peer.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::debug;

use super::LeaveError;
use super::backoff::first_reconnect_delay;
use super::config::ClientConfig;
use super::session::{self, Command, Ctx, End};
use super::state::{ClientState, ClientStatus};
use crate::liveness::Status;

pub(crate) async fn run(
    cfg: ClientConfig,
    dial: super::Dial,
    status: watch::Sender<ClientStatus>,
    mut member_status: watch::Receiver<Status>,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut next = 0usize;
    let mut ctx = Ctx {
        cfg: &cfg,
        dial: &dial,
        status: &status,
        member_status: &mut member_status,
        commands: &mut commands,
    };
    loop {
        let url = &cfg.servers[next % cfg.servers.len()];
        let end = session::run(&mut ctx, url).await;
        debug!(server = %url, ?end, "session ended");
        let Some((wait, next_server)) = after(&cfg, &status, url, end) else {
            return;
        };
        next += usize::from(next_server);
        if let Some(m) = &cfg.metrics {
            m.reconnect();
        }
        if !pause(&mut ctx, wait).await {
            status.send_modify(|s| s.state = ClientState::Left);
            return;
        }
    }
}

/// What follows a session's `end`: the new state, and `None` to stop or
/// how long to wait and whether to try the next server.
fn after(
    cfg: &ClientConfig,
    status: &watch::Sender<ClientStatus>,
    url: &str,
    end: End,
) -> Option<(Duration, bool)> {
    match end {
        End::Left => {
            status.send_modify(|s| s.state = ClientState::Left);
            None
        }
        End::Superseded(by) => {
            status.send_modify(|s| {
                s.state = ClientState::Superseded;
                s.superseded_by = Some(by);
                s.last_error = Some(format!("superseded by session {by}"));
            });
            None
        }
        End::Drained(after) => {
            status.send_modify(|s| {
                s.state = ClientState::Reconnecting;
                s.last_error = Some(format!("drained by {url}"));
            });
            Some((after, true))
        }
        End::Lost(why) => {
            let interval = status.borrow().interval;
            status.send_modify(|s| {
                s.state = ClientState::Reconnecting;
                s.last_error = Some(why);
            });
            // With several servers, the next one: a server that went
            // silent is stopped or cut off, and its members must land on a
            // peer within one timeout (SPEC §7.5).
            Some((first_reconnect_delay(interval, rand::random()), true))
        }
        End::Failed(why) => {
            let mut failures = 0;
            status.send_modify(|s| {
                s.failures += 1;
                failures = s.failures;
                if s.failures >= cfg.max_retries {
                    s.state = ClientState::Offline;
                } else if s.state == ClientState::Online {
                    // Welcomed, but no Pong came (SPEC §5).
                    s.state = ClientState::Reconnecting;
                }
                s.last_error = Some(why);
            });
            Some((cfg.backoff.delay(failures, rand::random()), true))
        }
    }
}

/// Waits `d` between attempts; false when the handle asked to stop meanwhile
/// (a Leave while not connected has nothing to send).
async fn pause(ctx: &mut Ctx<'_>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        cmd = ctx.commands.recv() => {
            if let Some(Command::Leave(reply)) = cmd {
                let _ = reply.send(Err(LeaveError::NotConnected));
            }
            false
        }
    }
}
