//! The Rust client library: be a member from inside a Rust service.
//!
//! [`Client::spawn`] joins, pings at the agreed interval, watches the
//! server's own deadline, reconnects with jittered backoff across the given
//! servers, and publishes its [`ClientStatus`] through a `watch` channel.
//! Dropping the [`Client`] stops pinging without Leave (the server's deadline
//! then decides); [`Client::leave`] leaves on purpose.
//!
//! ```no_run
//! use std::time::Duration;
//! use heartbeat::client::{Client, ClientConfig, ClientState};
//! use heartbeat::liveness::Status;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = ClientConfig::new(["127.0.0.1:50051"], "orders", "orders-7f9c")
//!     .interval(Duration::from_millis(500))
//!     .label("zone", "eu-1");
//! let client = Client::spawn(cfg)?;
//! let mut status = client.subscribe();
//! status.wait_for(|s| s.state == ClientState::Online).await?;
//! client.set_status(Status::NotServing); // e.g. while draining work
//! client.leave().await?;
//! # Ok(()) }
//! ```

mod backoff;
mod beat;
mod config;
mod dial;
mod metrics;
mod reconnect;
mod session;
mod state;

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use backoff::{Backoff, BackoffError, first_reconnect_delay};
pub use beat::{BeatStream, Ended, Incoming, JoinAs, JoinError, StreamOptions};
pub use config::{
    ClientConfig, ClientConfigError, ClientTls, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, server_url,
    server_url_with,
};
pub(crate) use dial::PLAINTEXT_HINT;
pub use dial::{Dial, DialError, chain, status_text};
pub use metrics::ClientMetrics;
pub use state::{ClientState, ClientStatus};

use crate::liveness::Status;
use session::Command;

/// Why `leave()` did not get the server's OK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaveError {
    /// Not connected: nothing to leave (the server's deadline decides).
    #[error("not connected to a server")]
    NotConnected,
    /// The server did not answer in time.
    #[error("no answer to Leave within {0:?}")]
    Timeout(Duration),
    /// The server ended the stream with an error.
    #[error("leave refused: {0:?}: {1}")]
    Refused(tonic::Code, String),
    /// The client had already stopped (left or superseded).
    #[error("client already stopped")]
    Stopped,
}

/// A running member. Drop it to stop pinging; call [`Client::leave`] to leave.
#[derive(Debug)]
pub struct Client {
    status: watch::Receiver<ClientStatus>,
    member_status: watch::Sender<Status>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl Client {
    /// Validates `cfg` and starts the member on the current Tokio runtime.
    pub fn spawn(mut cfg: ClientConfig) -> Result<Self, ClientConfigError> {
        cfg.validate()?;
        let dial = Dial::new(cfg.tls.clone(), cfg.token.as_deref()).map_err(ClientConfigError)?;
        let (status_tx, status) = watch::channel(ClientStatus {
            state: ClientState::Connecting,
            session: None,
            server: None,
            rtt: None,
            failures: 0,
            interval: cfg.interval.unwrap_or(DEFAULT_INTERVAL),
            timeout: cfg.timeout.unwrap_or(DEFAULT_TIMEOUT),
            superseded_by: None,
            last_error: None,
        });
        let (member_status, member_rx) = watch::channel(cfg.initial_status);
        let (commands, commands_rx) = mpsc::channel(1);
        if let Some(metrics) = cfg.metrics.clone() {
            let mut rx = status.clone();
            tokio::spawn(async move {
                loop {
                    let state = rx.borrow_and_update().state;
                    metrics.set_state(state);
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            });
        }
        let task = tokio::spawn(reconnect::run(cfg, dial, status_tx, member_rx, commands_rx));
        Ok(Self {
            status,
            member_status,
            commands,
            task,
        })
    }

    /// The current status.
    pub fn status(&self) -> ClientStatus {
        self.status.borrow().clone()
    }

    /// A receiver of every status change.
    pub fn subscribe(&self) -> watch::Receiver<ClientStatus> {
        self.status.clone()
    }

    /// Sets the status reported to the server; sent at once in a ping.
    pub fn set_status(&self, status: Status) {
        self.member_status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }

    /// A sender for the reported status (what [`Client::set_status`] uses),
    /// for a task that owns the decision, such as a local check.
    pub fn member_status_sender(&self) -> watch::Sender<Status> {
        self.member_status.clone()
    }

    /// Sends Leave and waits (bounded) for the server's OK; the client stops
    /// either way.
    pub async fn leave(self) -> Result<(), LeaveError> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Leave(tx)).await.is_err() {
            return Err(LeaveError::Stopped);
        }
        rx.await.unwrap_or(Err(LeaveError::Stopped))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}
