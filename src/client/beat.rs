//! One `Beat` stream, from Join to its end: the protocol of docs/protocol.md
//! §2 written once, for every member this crate runs (the client library's
//! sessions, `heartbeat bench`'s members and its flipper). It joins and
//! waits for Welcome, numbers pings, matches pongs to them for the RTT,
//! clamps a changed `Pong.interval` (§4), reads the superseding session from
//! the trailers, and leaves. What to do about each outcome (reconnect,
//! report, count) is the caller's.
//!
//! Pings go through a request channel of (by default) one slot: a server
//! that stops reading makes the member skip pings, never queue them; the
//! deadlines then decide.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status as RpcStatus, Streaming};

use super::Dial;
use crate::liveness::timing::client_interval;
use crate::liveness::{Labels, Status};
use crate::pb::heartbeat::v1::{
    BeatRequest, BeatResponse, Join, Leave, MemberStatus, Ping, Welcome, beat_request,
    beat_response, heartbeat_client::HeartbeatClient,
};
use crate::pb::{duration_from_pb, duration_to_pb, superseded_by};

/// What a member asks for in its Join.
#[derive(Debug, Clone)]
pub struct JoinAs {
    /// Service name.
    pub service: String,
    /// Instance name.
    pub instance: String,
    /// Requested interval (`None` = the server's default).
    pub interval: Option<Duration>,
    /// Requested timeout (`None` = the server's default).
    pub timeout: Option<Duration>,
    /// Labels.
    pub labels: Labels,
    /// The member's status from its first moment.
    pub status: Status,
    /// Where the member serves its own traffic (SPEC §8).
    pub endpoint: Option<String>,
}

impl JoinAs {
    fn message(&self) -> Join {
        Join {
            service: self.service.clone(),
            instance: self.instance.clone(),
            interval: self.interval.map(duration_to_pb),
            timeout: self.timeout.map(duration_to_pb),
            labels: self.labels.clone().into_iter().collect(),
            endpoint: self.endpoint.clone().unwrap_or_default(),
            status: wire_status(self.status),
        }
    }
}

/// How the stream is run.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Slots in the request channel (pings beyond it are skipped).
    pub queue: usize,
    /// Whether pings carry `sent_at` (echoed in the Pong).
    pub stamp: bool,
    /// Bound on getting the Welcome.
    pub wait: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            queue: 1,
            stamp: true,
            wait: super::DEFAULT_TIMEOUT,
        }
    }
}

/// Why no Welcome came.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JoinError {
    /// The server refused the Join with this status (RESOURCE_EXHAUSTED,
    /// PERMISSION_DENIED, INVALID_ARGUMENT, …).
    #[error("join refused: {}", super::status_text(.0))]
    Refused(RpcStatus),
    /// No Welcome within the wait, or something else came first.
    #[error("{0}")]
    NoWelcome(String),
}

/// A message from the server, as the member must take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A Pong: its round trip when it answers the last ping sent, and the
    /// new interval to ping at when the server changed it (already clamped).
    Pong {
        /// Round trip of the ping it answers, if that was the last one sent.
        rtt: Option<Duration>,
        /// The new interval, when it differs from the current one.
        interval: Option<Duration>,
    },
    /// The server is draining: reconnect after this long.
    Drain(Duration),
    /// The stream ended.
    Ended(Ended),
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The server closed it with OK (after our Leave).
    Closed,
    /// ABORTED: a newer session took the identity over (0 when the server
    /// did not say which).
    Superseded(u64),
    /// Another status: its code and its text (cause chain included).
    Status(Code, String),
    /// The server sent something the protocol does not allow here.
    Unexpected(String),
}

/// A welcomed Beat stream.
#[derive(Debug)]
pub struct BeatStream {
    tx: mpsc::Sender<BeatRequest>,
    responses: Streaming<BeatResponse>,
    welcome: Welcome,
    interval: Duration,
    timeout: Duration,
    seq: u64,
    last_sent: Option<(u64, Instant)>,
    stamp: bool,
}

fn wire_status(s: Status) -> i32 {
    MemberStatus::from(s) as i32
}

impl BeatStream {
    /// Opens a Beat stream on `channel`, sends the Join and waits for the
    /// Welcome (bounded by `opts.wait`).
    pub async fn open(
        channel: Channel,
        dial: &Dial,
        join: &JoinAs,
        opts: StreamOptions,
    ) -> Result<Self, JoinError> {
        let deadline = Instant::now() + opts.wait;
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let _ = tx.try_send(BeatRequest {
            kind: Some(beat_request::Kind::Join(join.message())),
        });
        let wait = humantime::format_duration(opts.wait);
        let mut client = HeartbeatClient::new(channel);
        let call = client.beat(dial.request(ReceiverStream::new(rx)));
        let mut responses = match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) => return Err(JoinError::Refused(s)),
            Err(_) => {
                return Err(JoinError::NoWelcome(format!(
                    "no answer to Beat within {wait}"
                )));
            }
        };
        let welcome = match tokio::time::timeout_at(deadline, responses.message()).await {
            Ok(Ok(Some(BeatResponse {
                kind: Some(beat_response::Kind::Welcome(w)),
            }))) => w,
            Ok(Ok(other)) => {
                return Err(JoinError::NoWelcome(format!(
                    "expected Welcome, got {other:?}"
                )));
            }
            Ok(Err(s)) => return Err(JoinError::Refused(s)),
            Err(_) => return Err(JoinError::NoWelcome(format!("no Welcome within {wait}"))),
        };
        let timeout = duration_from_pb(welcome.timeout)
            .filter(|t| !t.is_zero())
            .or(join.timeout)
            .unwrap_or(super::DEFAULT_TIMEOUT);
        let told = duration_from_pb(welcome.interval)
            .or(join.interval)
            .unwrap_or(super::DEFAULT_INTERVAL);
        Ok(Self {
            tx,
            responses,
            interval: client_interval(told, timeout),
            timeout,
            welcome,
            seq: 0,
            last_sent: None,
            stamp: opts.stamp,
        })
    }

    /// The session the Welcome gave.
    pub fn session(&self) -> u64 {
        self.welcome.session
    }

    /// The Welcome itself.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The interval to ping at now (clamped, docs/protocol.md §4).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The agreed timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends the next ping unless the previous one is still queued (the
    /// server is not reading: skipped). True when sent.
    pub fn ping(&mut self, status: Status) -> bool {
        self.seq += 1;
        let ping = Ping {
            seq: self.seq,
            status: wire_status(status),
            sent_at: self.stamp.then(|| std::time::SystemTime::now().into()),
        };
        let request = BeatRequest {
            kind: Some(beat_request::Kind::Ping(ping)),
        };
        let sent = self.tx.try_send(request).is_ok();
        if sent {
            self.last_sent = Some((self.seq, Instant::now()));
        }
        sent
    }

    /// When the last sent ping went out.
    pub fn last_ping(&self) -> Option<Instant> {
        self.last_sent.map(|(_, at)| at)
    }

    /// The next message from the server. Cancel-safe (for `select!`).
    pub async fn next(&mut self) -> Incoming {
        let message = self.responses.message().await;
        let now = Instant::now();
        match message {
            Ok(Some(BeatResponse {
                kind: Some(beat_response::Kind::Pong(pong)),
            })) => {
                let rtt = match self.last_sent {
                    Some((seq, at)) if seq == pong.seq => Some(now - at),
                    _ => None,
                };
                let interval = duration_from_pb(pong.interval)
                    .filter(|d| !d.is_zero())
                    .map(|d| client_interval(d, self.timeout))
                    .filter(|d| *d != self.interval);
                if let Some(new) = interval {
                    self.interval = new;
                }
                Incoming::Pong { rtt, interval }
            }
            Ok(Some(BeatResponse {
                kind: Some(beat_response::Kind::Drain(d)),
            })) => Incoming::Drain(duration_from_pb(d.reconnect_after).unwrap_or_default()),
            Ok(Some(other)) => {
                Incoming::Ended(Ended::Unexpected(format!("unexpected message {other:?}")))
            }
            Ok(None) => Incoming::Ended(Ended::Closed),
            Err(s) => Incoming::Ended(match s.code() {
                Code::Aborted => Ended::Superseded(superseded_by(&s).unwrap_or(0)),
                code => Ended::Status(code, super::status_text(&s)),
            }),
        }
    }

    /// Sends Leave and waits, at most `bound`, for the server to end the
    /// stream; `Ok` when it ended with OK (the Leave was applied).
    pub async fn leave(&mut self, reason: &str, bound: Duration) -> Result<(), super::LeaveError> {
        use super::LeaveError;
        let request = BeatRequest {
            kind: Some(beat_request::Kind::Leave(Leave {
                reason: reason.to_owned(),
            })),
        };
        let done = async {
            self.tx
                .send(request)
                .await
                .map_err(|_| LeaveError::NotConnected)?;
            loop {
                match self.responses.message().await {
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
