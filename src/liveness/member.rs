//! Domain types of the liveness core: a member, its state and status, and the
//! events the registry emits. They are independent of the wire types; the
//! server converts at its edge.
//!
//! Names and labels are `Arc`s so an event or a listing copies pointers, not
//! strings: the member table is read far more often than it is written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// Labels given at Join, sorted by key.
pub type Labels = BTreeMap<String, String>;

/// Liveness state as judged by the server (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Pinging within its deadline.
    Alive,
    /// Late by more than `(interval + timeout) / 2`; health unchanged.
    Suspect,
    /// Silent for `timeout`; only a new Join brings it back.
    Dead,
    /// Sent Leave.
    Left,
}

impl State {
    /// True for the states in which the member counts towards health.
    pub fn is_live(self) -> bool {
        matches!(self, State::Alive | State::Suspect)
    }

    /// The one spelling of the state in logs, tables and JSON (SPEC §3):
    /// the wire enum's name without its `MEMBER_STATE_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            State::Alive => "ALIVE",
            State::Suspect => "SUSPECT",
            State::Dead => "DEAD",
            State::Left => "LEFT",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Status {
    /// `SERVING` or `NOT_SERVING`, as the health service spells them.
    pub fn name(self) -> &'static str {
        match self {
            Status::Serving => "SERVING",
            Status::NotServing => "NOT_SERVING",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The member's own report (`Ping.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Ready for work (also what an unset status means).
    Serving,
    /// Alive but not ready.
    NotServing,
}

/// Health of one name as the registry derives it (`None` = unknown name).
pub type Health = Option<Status>;

/// Identifies a member's session; held by the stream that joined it, so that
/// an older stream can never change a newer session (fencing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberId {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    /// The session number the Join received.
    pub session: u64,
}

/// A validated Join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Service name (validated).
    pub service: String,
    /// Instance name (validated).
    pub instance: String,
    /// Requested interval (`None` or zero = default).
    pub interval: Option<Duration>,
    /// Requested timeout (`None` or zero = default).
    pub timeout: Option<Duration>,
    /// Labels (validated).
    pub labels: Labels,
    /// Status from the first moment (`Join.status`).
    pub status: Status,
    /// Where the member serves its own traffic (`Join.endpoint`, validated;
    /// SPEC §8), if it advertised one.
    pub endpoint: Option<String>,
}

/// What the Join agreed (the content of `Welcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    /// The new session's id, for every later call of the stream.
    pub id: MemberId,
    /// Agreed interval (stretched when the server is over its ping budget).
    pub interval: Duration,
    /// The interval negotiated from the Join, before any stretch.
    pub base_interval: Duration,
    /// Agreed timeout.
    pub timeout: Duration,
    /// The session this Join superseded, if it took over a live one.
    pub superseded: Option<u64>,
}

/// A read-only copy of one member (cheap: names and labels are shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// `"<service>/<instance>"`: also the member's health name.
    pub name: Arc<str>,
    pub(crate) service_len: u32,
    /// Labels given at Join.
    pub labels: Arc<Labels>,
    /// Liveness state.
    pub state: State,
    /// Last reported status.
    pub status: Status,
    /// Current session.
    pub session: u64,
    /// Agreed interval.
    pub interval: Duration,
    /// Agreed timeout.
    pub timeout: Duration,
    /// When the session joined (server monotonic clock).
    pub joined_at: Instant,
    /// When the last ping (or the Join) was observed.
    pub last_seen: Instant,
    /// The replica holding the member's stream (cluster mode; `None` in
    /// one server).
    pub replica: Option<Arc<str>>,
    /// `host:port` the member advertised at Join (SPEC §8), if any.
    pub endpoint: Option<Arc<str>>,
}

impl MemberView {
    /// The service name.
    pub fn service(&self) -> &str {
        &self.name[..self.service_len as usize]
    }

    /// The instance name.
    pub fn instance(&self) -> &str {
        &self.name[self.service_len as usize + 1..]
    }

    /// Health of the member's own name (`<service>/<instance>`).
    pub fn health(&self) -> Status {
        if self.state.is_live() && self.status == Status::Serving {
            Status::Serving
        } else {
            Status::NotServing
        }
    }
}

/// Kind of change (SPEC §2 `EventType`, without the snapshot markers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A Join was accepted (new member, rejoin, or takeover: a new session).
    Joined,
    /// State (ALIVE/SUSPECT) or status changed within a session.
    Updated,
    /// The deadline passed.
    Dead,
    /// The member sent Leave.
    Left,
    /// DEAD or LEFT for the retention period: gone.
    Removed,
}

/// Why a change happened (for logs; finer than [`EventKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// First Join of this identity.
    Join,
    /// Join of a DEAD or LEFT member.
    Rejoin,
    /// Join while an older session was live: it took over.
    Takeover,
    /// No ping for (interval + timeout) / 2: SUSPECT.
    Late,
    /// A ping while SUSPECT: ALIVE again.
    Revived,
    /// The member reported another status.
    Status,
    /// No ping for the timeout: DEAD.
    Timeout,
    /// The member sent Leave.
    Leave,
    /// DEAD or LEFT for the retention period: removed.
    Retention,
}

impl Reason {
    /// Lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Join => "join",
            Reason::Rejoin => "rejoin",
            Reason::Takeover => "takeover",
            Reason::Late => "late",
            Reason::Revived => "revived",
            Reason::Status => "status",
            Reason::Timeout => "timeout",
            Reason::Leave => "leave",
            Reason::Retention => "retention",
        }
    }

    /// The reason named by [`Reason::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        const ALL: [Reason; 9] = [
            Reason::Join,
            Reason::Rejoin,
            Reason::Takeover,
            Reason::Late,
            Reason::Revived,
            Reason::Status,
            Reason::Timeout,
            Reason::Leave,
            Reason::Retention,
        ];
        ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A member's state moving (`None` = not listed), for gauges by state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The member's `service/instance` name.
    pub name: Arc<str>,
    pub(crate) service_len: u32,
    /// State before.
    pub from: Option<State>,
    /// State after.
    pub to: Option<State>,
    /// For a move to DEAD: how long after its deadline it was detected.
    pub late_by: Option<Duration>,
}

impl Transition {
    /// The service name.
    pub fn service(&self) -> &str {
        &self.name[..self.service_len as usize]
    }
}

/// One change of the member table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Strictly increasing revision of this change.
    pub revision: u64,
    /// What happened.
    pub kind: EventKind,
    /// Why.
    pub reason: Reason,
    /// The member after the change.
    pub member: MemberView,
    /// The member's slot in the table (the order of lazy snapshots, see
    /// [`crate::liveness::Registry::members_from`]).
    pub slot: u32,
}

/// Why the registry ends a member's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// A newer Join took the identity over (`ABORTED`).
    Superseded {
        /// The newer session.
        by: u64,
    },
    /// The deadline passed (`DEADLINE_EXCEEDED`).
    Dead,
    /// The server asks the member to move to another server (`Drain`,
    /// then `UNAVAILABLE`): a cluster replica cut off from etcd while a
    /// peer is not. The core never decides this; the server does.
    Moved,
}

/// Why a call on behalf of a stream's session was refused (fencing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Fenced {
    /// A newer session owns the identity.
    #[error("superseded by session {by}")]
    Superseded {
        /// The newer session.
        by: u64,
    },
    /// The session is DEAD; only a new Join brings the member back.
    #[error("member is dead; join again")]
    Dead,
    /// The session already left.
    #[error("member has left")]
    Left,
    /// The member no longer exists.
    #[error("member was removed")]
    Removed,
}
