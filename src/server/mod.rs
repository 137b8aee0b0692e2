//! The heartbeat server: Beat / ListMembers / WatchMembers over the liveness
//! core, the standard Health service over the names of SPEC §4, reflection
//! (v1 and v1alpha), the timer driver, and shutdown.
//!
//! [`Server`] is the one entry point: a builder over the configuration
//! whose [`Server::serve`] takes a bound listener and any shutdown future
//! (the mini-redis shape): the library never binds ports or reads argv, and
//! tests run it on `127.0.0.1:0`. Bind with [`crate::edge::listen`] (an
//! accept queue of 4096, not `TcpListener::bind`'s 128, which a fleet
//! reconnecting at once overflows).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use heartbeat::config::ServerConfig;
//! use heartbeat::server::Server;
//!
//! let mut registry = heartbeat::metrics::registry();
//! let metrics = heartbeat::metrics::ServerMetrics::new(&mut registry);
//! let listener = heartbeat::edge::listen("127.0.0.1:0".parse()?)?;
//! Server::new(ServerConfig::default())
//!     .metrics(metrics)
//!     .serve(listener, async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! # Ok(()) }
//! ```

mod beat;
mod convert;
mod driver;
mod error;
mod join;
mod members;
mod persist;
mod reads;
mod replica;
mod resume;
mod service;
mod state;
mod streams;
mod watch_limit;

use std::future::Future;
use std::time::SystemTime;

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::info;

pub use beat::BeatStream;
pub use error::BeatError;
pub use members::WatchMembersStream;
pub use persist::MAX_SAVED_SESSION;
pub use reads::Reads;

use crate::config::{ConfigError, ServerConfig};
use crate::edge::{self, Edge, Port};
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
pub use crate::pb::HEARTBEAT_SERVICE;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The reflection descriptors could not be loaded.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The TLS files cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The state directory cannot be used.
    #[error("state dir {}: {error}", dir.display())]
    State {
        /// The directory.
        dir: std::path::PathBuf,
        /// What failed.
        error: std::io::Error,
    },
}

/// One heartbeat server: its configuration and the ports it serves besides
/// the gRPC one. Every port goes through the same [`crate::edge`].
pub struct Server {
    cfg: ServerConfig,
    metrics: ServerMetrics,
    health: Option<TcpListener>,
    /// `--metrics-listen`: `/metrics` alone.
    metrics_port: Option<(TcpListener, Arc<Registry>)>,
    /// `--http-listen`: the status page, `/api/v1` and `/metrics`.
    http: Option<(TcpListener, Arc<Registry>)>,
}

impl Server {
    /// A server with `cfg` and unregistered metrics.
    pub fn new(cfg: ServerConfig) -> Self {
        Self {
            cfg,
            metrics: ServerMetrics::unregistered(),
            health: None,
            metrics_port: None,
            http: None,
        }
    }

    /// Records into `metrics` (registered by the caller).
    pub fn metrics(mut self, metrics: ServerMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Also serves `grpc.health.v1.Health` alone, in plaintext, on
    /// `listener` (for kubelet probes, which cannot do mTLS). Under
    /// `"read": "authenticated"` it answers only `""` and
    /// `heartbeat.v1.Heartbeat` (SPEC §6).
    pub fn health_listener(mut self, listener: TcpListener) -> Self {
        self.health = Some(listener);
        self
    }

    /// Also serves `registry` at `/metrics` over HTTP on `listener`.
    pub fn metrics_listener(mut self, listener: TcpListener, registry: Arc<Registry>) -> Self {
        self.metrics_port = Some((listener, registry));
        self
    }

    /// Also serves the HTTP port of SPEC §9 on `listener`: the status page
    /// at `/`, `/api/v1/members`, `/api/v1/events` (Server-Sent Events) and
    /// `registry` at `/metrics` ([`crate::http`]).
    pub fn http_listener(mut self, listener: TcpListener, registry: Arc<Registry>) -> Self {
        self.http = Some((listener, registry));
        self
    }

    /// Serves until `shutdown` completes, then shuts down: `""` and
    /// `heartbeat.v1.Heartbeat` NOT_SERVING first, Drain and UNAVAILABLE on
    /// every Beat stream, every watch ended; health keeps being answered
    /// (NOT_SERVING) for `cfg.drain`, then the listeners close, every
    /// connection gets GOAWAY, and those still open after another
    /// `cfg.drain` are dropped.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let Server {
            cfg,
            metrics,
            health: health_listener,
            metrics_port,
            http,
        } = self;
        let mut cfg = cfg;
        cfg.validate()?;
        if let Some(c) = &mut cfg.cluster
            && c.advertise.is_none()
        {
            c.advertise = listener.local_addr().ok().map(|a| a.to_string());
        }
        let tls = match &cfg.tls {
            Some(f) => {
                let ca = f.client_ca.as_deref();
                let optional = cfg.authz.is_some();
                Some(edge::tls_config(&f.cert, &f.key, ca, optional).map_err(ServeError::Tls)?)
            }
            None => None,
        };
        let health = HealthMap::new();
        let shared = state::Shared::new(cfg.clone(), health.clone(), metrics, SystemTime::now())?;
        let writer = match &cfg.state_dir {
            Some(dir) => Some(restore(&shared, dir)?),
            None => None,
        };
        health.set("", Some(Status::Serving));
        // A replica accepts Beat streams once etcd says it may (SPEC §7.6).
        let ready = if shared.replica.is_some() {
            Status::NotServing
        } else {
            Status::Serving
        };
        health.set(HEARTBEAT_SERVICE, Some(ready));
        let replica = replica::start(&shared);

        let edge = Edge::new(cfg.edge(), shared.metrics.edge.clone());
        edge.serve(
            listener,
            Port::Grpc {
                routes: routes(&shared, &health)?,
                tls,
            },
        );
        if let Some(l) = health_listener {
            let service = HealthService::new(health.clone())
                .public_port(cfg.authz.clone())
                .into_server()
                .max_decoding_message_size(MAX_MESSAGE_SIZE);
            let routes = tonic::service::Routes::new(service).prepare();
            edge.serve(l, Port::Grpc { routes, tls: None });
        }
        if let Some((l, registry)) = metrics_port {
            edge.serve(l, Port::Http(crate::metrics::router(registry)));
        }
        if let Some((l, registry)) = http {
            let reads = Reads::new(shared.clone());
            edge.serve(l, Port::Http(crate::http::router(reads, registry)));
        }
        let driver = tokio::spawn(driver::run(shared.clone()));
        shutdown.await;
        stop(&shared, &health, &edge, driver, writer.or(replica)).await;
        Ok(())
    }
}

/// The shutdown after `shutdown` completed: health NOT_SERVING, streams
/// drained, the driver and the state writer stopped, a grace of
/// `cfg.drain`, then the edge closed. Every wait is bounded: the driver and
/// the writer (a last save to a stuck disk) get `cfg.drain` (at least 1 s)
/// each, the edge closes what is still open after another `cfg.drain`.
async fn stop(
    shared: &Arc<state::Shared>,
    health: &HealthMap,
    edge: &Edge,
    driver: tokio::task::JoinHandle<()>,
    writer: Option<tokio::task::JoinHandle<()>>,
) {
    let drain = shared.cfg.drain;
    let bound = drain.max(std::time::Duration::from_secs(1));
    info!("shutting down: health NOT_SERVING, draining streams");
    health.set("", Some(Status::NotServing));
    health.set(HEARTBEAT_SERVICE, Some(Status::NotServing));
    shared.begin_drain();
    health.close_watches();
    if tokio::time::timeout(bound, driver).await.is_err() {
        tracing::warn!("the timer driver did not stop in time");
    }
    if let Some(writer) = writer
        && tokio::time::timeout(bound, writer).await.is_err()
    {
        tracing::warn!("the state writer (state dir or etcd) did not finish in time");
    }
    // Keep answering (health NOT_SERVING, new Beats refused) for the grace
    // period, so probes and load balancers see the server go unready before
    // it stops accepting connections.
    tokio::time::sleep(drain).await;
    info!("closing the listeners and open connections");
    edge.shutdown(drain).await;
    info!("shut down");
}

/// The gRPC port's services: Heartbeat, Health (read rule applied) and
/// reflection v1 and v1alpha.
fn routes(
    shared: &Arc<state::Shared>,
    health: &HealthMap,
) -> Result<tonic::service::Routes, ServeError> {
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
        .read_rule(shared.cfg.authz.clone())
        .into_server()
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_RESPONSE_SIZE);
    let watch_shared = shared.clone();
    let ads = crate::xds::Ads::new(
        shared.xds.clone(),
        shared.cfg.authz.clone(),
        shared.metrics.xds.clone(),
        shared.drain.clone(),
        Box::new(move |conn| {
            let cfg = &watch_shared.cfg;
            let slot = watch_limit::acquire(
                &watch_shared.watches,
                conn,
                cfg.max_watches,
                cfg.max_watches_per_connection,
                &watch_shared.metrics,
            )?;
            Ok(Box::new(slot) as Box<dyn Send>)
        }),
    )
    .into_server(MAX_MESSAGE_SIZE)
    .max_encoding_message_size(MAX_RESPONSE_SIZE);
    Ok(tonic::service::Routes::new(heartbeat)
        .add_service(health_server)
        .add_service(ads)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .prepare())
}

/// Restores the saved table from `dir`, proves the directory writable, and
/// starts the state writer.
fn restore(
    shared: &Arc<state::Shared>,
    dir: &std::path::Path,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let state_err = |error| ServeError::State {
        dir: dir.to_path_buf(),
        error,
    };
    std::fs::create_dir_all(dir).map_err(state_err)?;
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
    // Prove the directory is writable before serving, with what was restored.
    let members = shared.with(|i| i.core.members(None));
    persist::save(dir, &members).map_err(state_err)?;
    shared.metrics.state_saved(true);
    Ok(tokio::spawn(persist::writer(
        shared.clone(),
        dir.to_path_buf(),
        shared.dirty.clone(),
    )))
}
