//! The edge: every port a heartbeat process listens on (the gRPC port, the
//! plaintext health port, the HTTP port) accepts and serves its connections
//! here, with one set of rules (SPEC §6):
//!
//! - a connection must finish its handshake (TLS, the HTTP/2 preface, or an
//!   HTTP/1 request head) within the handshake deadline, or it is closed;
//! - a connection with no open stream for the idle timeout is closed
//!   (GOAWAY, then close);
//! - all ports share one connection limit, and at the limit a new connection
//!   is admitted by closing the one idle the longest ([`table`]);
//! - HTTP/2 limits are explicit (streams, resets, header list, send buffer);
//! - write bursts share one syscall ([`io`]);
//! - on gRPC ports, `grpc-timeout` bounds streams too and non-gRPC requests
//!   get 415 ([`service`]);
//! - shutdown is bounded: GOAWAY everywhere, then a grace period, then every
//!   connection still open is dropped.
//!
//! The edge exists because tonic's server can do none of the first three
//! (it cannot tell an idle connection from a busy one), and its shutdown
//! waits for every connection forever.

mod conn;
mod control;
pub(crate) mod io;
mod listen;
mod service;
mod table;
mod tls;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

pub use listen::{LISTEN_BACKLOG, listen};
pub use service::PerConnection;
pub(crate) use table::EVICTION_HEADROOM;
pub(crate) use tls::server_config as tls_config;

use crate::metrics::EdgeMetrics;
use table::ConnTable;

/// Largest amount of response data buffered per HTTP/2 stream beyond what
/// the peer's flow-control window lets out (h2's default is 400 KiB): a
/// client that opens many streams and never reads costs at most this each.
pub const MAX_SEND_BUFFER: usize = 64 * 1024;

/// How long a connection being closed (idle, or to make room) may take to
/// flush its GOAWAY before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The rules of every port.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Most connections at once over all ports.
    pub max_connections: usize,
    /// Deadline for TLS, the HTTP/2 preface, or an HTTP/1 request head.
    pub handshake_timeout: Duration,
    /// A connection with no open stream for this long is closed.
    pub idle_timeout: Duration,
    /// A connection quiet this long is probed by the kernel (TCP
    /// keepalive), to drop peers that are gone.
    pub keepalive_interval: Duration,
    /// How long probes, or data sent, may go unacknowledged before the
    /// kernel drops the connection (TCP_USER_TIMEOUT is interval + this).
    pub keepalive_timeout: Duration,
    /// HTTP/2 concurrent streams per connection.
    pub max_concurrent_streams: u32,
}

impl Default for EdgeConfig {
    /// The rules for a process with one small port of its own (the agent's
    /// health and metrics endpoints): the server's timings, 256 connections.
    fn default() -> Self {
        Self {
            max_connections: 256,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            max_concurrent_streams: 100,
        }
    }
}

/// Serves `router` over HTTP/1.1 on `listener`, with the edge's rules
/// ([`EdgeConfig::default`]), until `shutdown`; then closes every
/// connection within a second.
pub async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve_alone(listener, Port::Http(router), shutdown).await;
}

/// Serves one port of its own until `shutdown`, then closes every
/// connection within a second.
pub(crate) async fn serve_alone(
    listener: TcpListener,
    port: Port,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let edge = Edge::new(EdgeConfig::default(), EdgeMetrics::unregistered());
    edge.serve(listener, port);
    shutdown.await;
    edge.shutdown(CLOSE_GRACE).await;
}

/// What a port serves.
pub(crate) enum Port {
    /// gRPC (HTTP/2 only), plaintext or TLS.
    Grpc {
        routes: tonic::service::Routes,
        tls: Option<Arc<rustls::ServerConfig>>,
    },
    /// HTTP/1.1.
    Http(axum::Router),
}

/// The connections of one process. Dropping it closes the listeners.
pub(crate) struct Edge {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: EdgeConfig,
    table: Arc<ConnTable>,
    metrics: EdgeMetrics,
    h2: auto::Builder<TokioExecutor>,
    h1: auto::Builder<TokioExecutor>,
    tasks: TaskTracker,
    listeners: Mutex<Vec<JoinHandle<()>>>,
    /// Closes connections idle for the idle timeout.
    sweeper: JoinHandle<()>,
}

impl Edge {
    pub(crate) fn new(cfg: EdgeConfig, metrics: EdgeMetrics) -> Self {
        let mut h2 = auto::Builder::new(TokioExecutor::new()).http2_only();
        h2.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(cfg.max_concurrent_streams)
            // Dead peers are the kernel's to find ([`keepalive`]).
            .keep_alive_interval(None)
            // Rapid-reset defences: bound the resets a client can make us process.
            .max_pending_accept_reset_streams(Some(64))
            .max_local_error_reset_streams(Some(1024))
            .max_header_list_size(16 * 1024)
            .max_send_buf_size(MAX_SEND_BUFFER);
        let mut h1 = auto::Builder::new(TokioExecutor::new()).http1_only();
        h1.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.handshake_timeout);
        let table = ConnTable::new(cfg.max_connections, metrics.clone());
        let sweeper = tokio::spawn(close_idle(table.clone(), cfg.idle_timeout));
        Self {
            inner: Arc::new(Inner {
                table,
                cfg,
                metrics,
                h2,
                h1,
                tasks: TaskTracker::new(),
                listeners: Mutex::new(Vec::new()),
                sweeper,
            }),
        }
    }

    /// Accepts on `listener` and serves `port` until [`Edge::stop_accepting`].
    pub(crate) fn serve(&self, listener: TcpListener, port: Port) {
        let inner = self.inner.clone();
        let port = Arc::new(port);
        let task = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: back off a little.
                        debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                // Refused when full of busy connections: dropping closes it.
                let Some(handle) = inner.table.admit(Instant::now()) else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                keepalive(&stream, &inner.cfg);
                let (edge, port) = (inner.clone(), port.clone());
                inner
                    .tasks
                    .spawn(async move { conn::run(&edge, stream, handle, &port).await });
            }
        });
        let mut listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        listeners.push(task);
    }

    /// Closes every listener; open connections carry on.
    pub(crate) fn stop_accepting(&self) {
        let mut listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for task in listeners.drain(..) {
            task.abort();
        }
    }

    /// Closes the listeners, sends GOAWAY on every connection, waits at most
    /// `grace` for them to close, then drops the rest.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        self.stop_accepting();
        let inner = &self.inner;
        inner.table.signal_all(control::SHUTDOWN);
        inner.tasks.close();
        if tokio::time::timeout(grace, inner.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                open = inner.tasks.len(),
                grace = %humantime::format_duration(grace),
                "connections still open after the grace period; closing them"
            );
            inner.table.signal_all(control::FORCE);
            // Each task returns at its next poll; this only lets them run.
            let _ = tokio::time::timeout(CLOSE_GRACE, inner.tasks.wait()).await;
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.stop_accepting();
        self.inner.sweeper.abort();
    }
}

/// Has the kernel find a peer that is gone: TCP keepalive probes on a
/// connection quiet for `keepalive_interval` (two, `keepalive_timeout / 2`
/// apart), and TCP_USER_TIMEOUT for data left unacknowledged, so a dead
/// peer of a busy connection (a watcher's) is dropped as soon, about
/// `keepalive_interval + keepalive_timeout` after it went.
///
/// Not hyper's HTTP/2 keep-alive PINGs: those take a lock and read the
/// clock on every poll of the connection and every DATA frame, about 800
/// instructions a ping (4 % of the bare floor's, by callgrind). What they
/// caught that the kernel does not, a peer whose process hangs while its
/// kernel answers, costs bounded memory (flow control) and a watch slot, and
/// a hung member goes DEAD by its own deadline.
fn keepalive(stream: &TcpStream, cfg: &EdgeConfig) {
    let sock = socket2::SockRef::from(stream);
    let probes = socket2::TcpKeepalive::new()
        .with_time(cfg.keepalive_interval)
        .with_interval(cfg.keepalive_timeout / 2)
        .with_retries(2);
    if let Err(e) = sock.set_tcp_keepalive(&probes) {
        debug!(error = %e, "cannot set TCP keepalive");
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = sock.set_tcp_user_timeout(Some(cfg.keepalive_interval + cfg.keepalive_timeout))
    {
        debug!(error = %e, "cannot set TCP_USER_TIMEOUT");
    }
}

/// Closes the connections of `table` idle for `idle`, each when its time
/// is up: one task and one timer for every connection of the process.
async fn close_idle(table: Arc<ConnTable>, idle: Duration) {
    loop {
        let now = Instant::now();
        // With none idle, a connection idle from now is due no sooner than
        // `now + idle`: nothing can be missed by sleeping that long.
        let next = table.close_idle(now, idle).unwrap_or(now + idle);
        tokio::time::sleep_until(next).await;
    }
}
