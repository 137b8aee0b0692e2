//! The `heartbeat beat` agent: makes any process a member without a client
//! library (a sidecar). It runs the [client](crate::client), serves its own
//! `grpc.health.v1.Health` (the same spec-exact implementation as the server)
//! and gates the reported status on an optional local check.
//!
//! Health names on the agent's endpoint (SPEC §5):
//! - `""`: the agent process (NOT_SERVING once it shuts down);
//! - `heartbeat.v1.Heartbeat`: SERVING while ONLINE, or RECONNECTING before
//!   `max_retries` failed attempts; NOT_SERVING when OFFLINE, superseded or
//!   left.

mod checks;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use checks::LocalCheck;

use crate::client::{Client, ClientConfig, ClientConfigError, ClientState};
use crate::health::{HealthMap, HealthService};
use crate::liveness::Status;
use crate::pb::HEARTBEAT_SERVICE;

/// Everything the agent is told.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The membership.
    pub client: ClientConfig,
    /// The local check, if any.
    pub check: Option<LocalCheck>,
    /// How often the check runs.
    pub check_interval: Duration,
    /// How long one run of the check may take.
    pub check_timeout: Duration,
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The membership configuration is invalid.
    #[error(transparent)]
    Config(#[from] ClientConfigError),
}

/// Runs the agent until `shutdown`, then leaves (bounded) and returns.
pub async fn run(
    cfg: AgentConfig,
    health_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let mut client_cfg = cfg.client.clone();
    if let Some(check) = &cfg.check {
        // Decide the first status before joining: the Join carries it
        // (Join.status), so an unhealthy app is never advertised SERVING.
        client_cfg.initial_status = first_status(check, cfg.check_timeout).await;
    }
    let client = Client::spawn(client_cfg)?;
    let health = HealthMap::new();
    health.set("", Some(Status::Serving));
    health.set(HEARTBEAT_SERVICE, Some(Status::NotServing));
    let stop = CancellationToken::new();
    let endpoint = health_listener.map(|l| serve_health(l, &health, &stop));
    let reporter = tokio::spawn(report(client.subscribe(), health.clone()));
    let checker = cfg.check.clone().map(|check| {
        let status = client.member_status_sender();
        let healthy = *status.borrow() == Status::Serving;
        let (every, timeout) = (cfg.check_interval, cfg.check_timeout);
        tokio::spawn(run_check(check, every, timeout, status, healthy))
    });

    shutdown.await;
    info!("shutting down: leaving");
    health.set("", Some(Status::NotServing));
    if let Some(c) = checker {
        c.abort();
    }
    match client.leave().await {
        Ok(()) => info!("left"),
        Err(e) => warn!(error = %e, "leave did not complete; the server's deadline decides"),
    }
    health.set(HEARTBEAT_SERVICE, Some(Status::NotServing));
    health.close_watches();
    reporter.abort();
    stop.cancel();
    if let Some(endpoint) = endpoint {
        // Bounded by the edge: open connections get a second, then close.
        let _ = endpoint.await;
    }
    Ok(())
}

/// The status of the first Join: the local check's verdict.
async fn first_status(check: &LocalCheck, timeout: std::time::Duration) -> Status {
    match check.run(timeout).await {
        Ok(()) => Status::Serving,
        Err(e) => {
            warn!(error = %e, "local check failing: reporting NOT_SERVING");
            Status::NotServing
        }
    }
}

/// Serves the agent's own `grpc.health.v1.Health` on `listener` until
/// `stop`.
fn serve_health(
    listener: TcpListener,
    health: &HealthMap,
    stop: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let service = HealthService::new(health.clone()).into_server();
    let port = crate::edge::Port::Grpc {
        routes: tonic::service::Routes::new(service).prepare(),
        tls: None,
    };
    tokio::spawn(crate::edge::serve_alone(
        listener,
        port,
        stop.clone().cancelled_owned(),
    ))
}

/// Publishes client state changes to health, and logs each change once.
async fn report(
    mut rx: tokio::sync::watch::Receiver<crate::client::ClientStatus>,
    health: HealthMap,
) {
    let mut last = None;
    loop {
        let s = rx.borrow_and_update().clone();
        if last != Some(s.state) {
            last = Some(s.state);
            let serving = if s.state.is_serving() {
                Status::Serving
            } else {
                Status::NotServing
            };
            health.set(HEARTBEAT_SERVICE, Some(serving));
            let error = s.last_error.as_deref().unwrap_or("");
            match s.state {
                ClientState::Online => {
                    info!(state = %s.state, session = s.session, server = s.server.as_deref(), "client state")
                }
                ClientState::Superseded => {
                    error!(state = %s.state, superseded_by = s.superseded_by, "another agent took over this identity; stopped")
                }
                ClientState::Connecting | ClientState::Left => {
                    info!(state = %s.state, "client state")
                }
                ClientState::Reconnecting | ClientState::Offline => {
                    warn!(state = %s.state, failures = s.failures, error, "client state")
                }
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Runs the local check every interval and sets the member status by it.
async fn run_check(
    check: LocalCheck,
    every: Duration,
    timeout: Duration,
    status: tokio::sync::watch::Sender<Status>,
    healthy: bool,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Some(healthy);
    loop {
        ticker.tick().await;
        let result = check.run(timeout).await;
        let healthy = result.is_ok();
        if last != Some(healthy) {
            match &result {
                Ok(()) => info!("local check passing: reporting SERVING"),
                Err(e) => warn!(error = %e, "local check failing: reporting NOT_SERVING"),
            }
            last = Some(healthy);
        }
        status.send_if_modified(|s| {
            let new = if healthy {
                Status::Serving
            } else {
                Status::NotServing
            };
            let changed = *s != new;
            *s = new;
            changed
        });
    }
}
