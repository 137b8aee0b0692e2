//! What the client knows about its membership, published through a
//! `tokio::sync::watch` so applications (and the agent's health endpoint)
//! read it without polling.

use std::time::Duration;

/// The client's view of the server (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// Before the first Welcome.
    Connecting,
    /// Joined, and the server answers within the timeout.
    Online,
    /// Lost the server (no pong for the timeout, or the stream broke); still
    /// fewer than `max_retries` failed attempts.
    Reconnecting,
    /// `max_retries` consecutive attempts failed; still retrying.
    Offline,
    /// A newer session of the same identity took over; the client stopped.
    Superseded,
    /// The client left on purpose (or was stopped).
    Left,
}

impl ClientState {
    /// Whether the agent reports `heartbeat.v1.Heartbeat` SERVING: while
    /// ONLINE, and while RECONNECTING before `max_retries` failures.
    pub fn is_serving(self) -> bool {
        matches!(self, ClientState::Online | ClientState::Reconnecting)
    }

    /// Whether the client has stopped for good.
    pub fn is_final(self) -> bool {
        matches!(self, ClientState::Superseded | ClientState::Left)
    }

    /// Upper-case name, as in SPEC §5.
    pub fn name(self) -> &'static str {
        match self {
            ClientState::Connecting => "CONNECTING",
            ClientState::Online => "ONLINE",
            ClientState::Reconnecting => "RECONNECTING",
            ClientState::Offline => "OFFLINE",
            ClientState::Superseded => "SUPERSEDED",
            ClientState::Left => "LEFT",
        }
    }
}

impl std::fmt::Display for ClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Snapshot of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientStatus {
    /// The state.
    pub state: ClientState,
    /// The current (or last) session.
    pub session: Option<u64>,
    /// The server URL of the current (or last) session.
    pub server: Option<String>,
    /// Round trip of the last answered ping.
    pub rtt: Option<Duration>,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// The agreed interval (requested or default until a Welcome).
    pub interval: Duration,
    /// The agreed timeout (requested or default until a Welcome).
    pub timeout: Duration,
    /// Set when superseded: the newer session.
    pub superseded_by: Option<u64>,
    /// Why the last session or attempt ended, for logs.
    pub last_error: Option<String>,
}
