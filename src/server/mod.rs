//! The heartbeat server: Beat / ListMembers / WatchMembers over the liveness
//! core, the standard Health service over the names of SPEC §4, reflection
//! (v1 and v1alpha), the timer driver, and shutdown.
//!
//! [`run`] takes a bound listener and any shutdown future (the mini-redis
//! shape): the library never binds ports or reads argv, and tests run it on
//! `127.0.0.1:0`.

mod beat;
mod convert;
mod driver;
mod error;
mod incoming;
mod members;
mod persist;
mod service;
mod state;

use std::future::Future;
use std::time::SystemTime;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use beat::BeatStream;
pub use error::BeatError;
pub use members::WatchMembersStream;

use crate::config::{ConfigError, ServerConfig};
use crate::health::{HealthMap, HealthService};
use crate::liveness::Status;
use crate::metrics::ServerMetrics;
use crate::pb;

/// Largest message accepted from a client (SPEC §2).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Largest message sent: a ListMembers of a whole large fleet is one message
/// (about 150 bytes a member), so responses get far more room than requests.
/// Clients' own decode limits (4 MiB by default in most gRPC libraries) still
/// apply; large fleets list per service or use WatchMembers.
pub const MAX_RESPONSE_SIZE: usize = 64 * 1024 * 1024;

/// Health name of the Beat service itself (SPEC §4).
pub const HEARTBEAT_SERVICE: &str = "heartbeat.v1.Heartbeat";

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The reflection descriptors could not be loaded.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The state directory cannot be used.
    #[error("state dir {}: {error}", dir.display())]
    State {
        /// The directory.
        dir: std::path::PathBuf,
        /// What failed.
        error: std::io::Error,
    },
}

/// Serves on `listener` until `shutdown` completes, then shuts down:
/// `""` and `heartbeat.v1.Heartbeat` NOT_SERVING first, Drain and
/// UNAVAILABLE on every Beat stream, every watch ended; health keeps being
/// answered (NOT_SERVING) for `cfg.drain`, then the listener closes and open
/// connections get at most another `cfg.drain`.
pub async fn run(
    listener: TcpListener,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    run_with_metrics(listener, cfg, ServerMetrics::unregistered(), shutdown).await
}

/// [`run`], recording into `metrics` (registered by the caller in the
/// registry it serves).
pub async fn run_with_metrics(
    listener: TcpListener,
    cfg: ServerConfig,
    metrics: ServerMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    run_full(listener, None, cfg, metrics, shutdown).await
}

/// [`run_with_metrics`], plus `health_listener`: a plaintext port that
/// serves only `grpc.health.v1.Health` (for kubelet probes, which cannot do
/// mTLS), with no authorisation.
pub async fn run_full(
    listener: TcpListener,
    health_listener: Option<TcpListener>,
    cfg: ServerConfig,
    metrics: ServerMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    cfg.validate()?;
    let health = HealthMap::new();
    let shared = state::Shared::new(cfg.clone(), health.clone(), metrics, SystemTime::now());
    let writer = match &cfg.state_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|error| ServeError::State {
                dir: dir.clone(),
                error,
            })?;
            let saved = persist::load(dir);
            let now = tokio::time::Instant::now();
            let count = saved.len();
            shared.with(|i| saved.into_iter().for_each(|m| i.core.restore(m, now)));
            if count > 0 {
                info!(
                    members = count,
                    "restored members from the state dir, SUSPECT for one timeout"
                );
            }
            // Prove the directory is writable before serving.
            persist::save(dir, &[]).map_err(|error| ServeError::State {
                dir: dir.clone(),
                error,
            })?;
            shared.dirty.notify_one();
            Some(tokio::spawn(persist::writer(
                shared.clone(),
                dir.clone(),
                shared.dirty.clone(),
            )))
        }
        None => None,
    };
    health.set("", Some(Status::Serving));
    health.set(HEARTBEAT_SERVICE, Some(Status::Serving));

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let heartbeat =
        pb::heartbeat::v1::heartbeat_server::HeartbeatServer::new(service::HeartbeatService {
            shared: shared.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_RESPONSE_SIZE);
    let health_server = HealthService::new(health.clone())
        .read_rule(cfg.authz.clone())
        .into_server()
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_RESPONSE_SIZE);

    let gate = if cfg.tls.is_some() {
        incoming::Gate::Tls
    } else {
        incoming::Gate::Http2
    };
    let (incoming, acceptor) = incoming::accept(
        listener,
        cfg.max_connections,
        cfg.join_timeout,
        gate,
        shared.metrics.clone(),
    );
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &cfg.tls {
        let mut t = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&tls.cert, &tls.key));
        if let Some(ca) = &tls.client_ca {
            // With an authorisation file, it decides (token-only clients
            // present no certificate); without one, mTLS is the only gate.
            t = t
                .client_ca_root(tonic::transport::Certificate::from_pem(ca))
                .client_auth_optional(cfg.authz.is_some());
        }
        builder = builder.tls_config(t)?;
    }
    let stop = CancellationToken::new();
    let server = builder
        .accept_http1(false)
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .http2_keepalive_interval(Some(cfg.keepalive_interval))
        .http2_keepalive_timeout(Some(cfg.keepalive_timeout))
        // Rapid-reset defences: bound resets a client can make us process.
        .http2_max_pending_accept_reset_streams(Some(64))
        .http2_max_local_error_reset_streams(Some(1024))
        .http2_max_header_list_size(16 * 1024)
        .add_service(heartbeat)
        .add_service(health_server)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
    tokio::pin!(server);
    let driver = tokio::spawn(driver::run(shared.clone()));
    let health_only = health_listener.map(|l| {
        let service = HealthService::new(health.clone())
            .into_server()
            .max_decoding_message_size(MAX_MESSAGE_SIZE);
        tokio::spawn(
            tonic::transport::Server::builder()
                .accept_http1(false)
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true)),
                    stop.clone().cancelled_owned(),
                ),
        )
    });

    tokio::select! {
        result = &mut server => {
            acceptor.abort();
            shared.drain.cancel();
            let _ = driver.await;
            return result.map_err(Into::into);
        }
        _ = shutdown => {}
    }

    info!("shutting down: health NOT_SERVING, draining streams");
    health.set("", Some(Status::NotServing));
    health.set(HEARTBEAT_SERVICE, Some(Status::NotServing));
    shared.drain.cancel();
    health.close_watches();
    let _ = driver.await;
    if let Some(writer) = writer {
        let _ = writer.await;
    }
    // Keep answering (health NOT_SERVING, new Beats refused) for the grace
    // period, so probes and load balancers see the server go unready before
    // it stops accepting connections.
    tokio::select! {
        result = &mut server => return result.map_err(Into::into),
        _ = tokio::time::sleep(cfg.drain) => {}
    }
    info!("closing the listener and open connections");
    acceptor.abort();
    stop.cancel();
    if let Some(h) = health_only {
        h.abort();
    }
    match tokio::time::timeout(cfg.drain, &mut server).await {
        Ok(result) => result?,
        Err(_) => warn!(
            grace = %humantime::format_duration(cfg.drain),
            "connections still open after the grace period; closing them"
        ),
    }
    info!("shut down");
    Ok(())
}
