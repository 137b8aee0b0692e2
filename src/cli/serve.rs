//! `heartbeat serve`.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;
use heartbeat::authz::Authz;
use heartbeat::config::{ServerConfig, TlsFiles};
use heartbeat::liveness::MassFailure;
use tracing::{error, info};

use super::{LogFormat, duration, logging, signal};

/// Flags of `heartbeat serve` (SPEC §6).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on for gRPC (Beat, health, reflection).
    #[arg(long, env = "HEARTBEAT_LISTEN", default_value = "0.0.0.0:50051")]
    listen: SocketAddr,
    /// Serve Prometheus metrics over HTTP at /metrics on this address (the HTTP port serves them too).
    #[arg(long, env = "HEARTBEAT_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Serve the HTTP port on this address: the live status page at /, the member table at /api/v1/members, its events at /api/v1/events (Server-Sent Events), metrics at /metrics.
    #[arg(long, env = "HEARTBEAT_HTTP_LISTEN")]
    http_listen: Option<SocketAddr>,
    /// Ping interval for members that ask for none.
    #[arg(long, env = "HEARTBEAT_DEFAULT_INTERVAL", value_parser = human_duration, default_value_t = defaults().default_interval.into())]
    default_interval: HumanDuration,
    /// Liveness timeout for members that ask for none (clamped to 2x-20x the interval).
    #[arg(long, env = "HEARTBEAT_DEFAULT_TIMEOUT", value_parser = human_duration, default_value_t = defaults().default_timeout.into())]
    default_timeout: HumanDuration,
    /// Smallest interval the server agrees to (at least 100ms).
    #[arg(long, env = "HEARTBEAT_MIN_INTERVAL", value_parser = human_duration, default_value_t = defaults().min_interval.into())]
    min_interval: HumanDuration,
    /// Largest interval the server agrees to (at most 60s).
    #[arg(long, env = "HEARTBEAT_MAX_INTERVAL", value_parser = human_duration, default_value_t = defaults().max_interval.into())]
    max_interval: HumanDuration,
    /// How long DEAD and LEFT members stay listed before removal.
    #[arg(long, env = "HEARTBEAT_RETENTION", value_parser = human_duration, default_value_t = defaults().retention.into())]
    retention: HumanDuration,
    /// How long a new Beat stream may take to send Join.
    #[arg(long, env = "HEARTBEAT_JOIN_TIMEOUT", value_parser = human_duration, default_value_t = defaults().join_timeout.into())]
    join_timeout: HumanDuration,
    /// Shutdown grace: health answers NOT_SERVING this long before the listener closes (then at most as long again for open connections).
    #[arg(long, env = "HEARTBEAT_DRAIN", value_parser = human_duration, default_value_t = defaults().drain.into())]
    drain: HumanDuration,
    /// Mass-failure protection: when more than this fraction of members fall silent at once, hold them SUSPECT one more timeout ("off" disables).
    #[arg(long, env = "HEARTBEAT_MASS_FAILURE_THRESHOLD", default_value_t = Threshold(defaults().mass_failure.map(|m| m.threshold)), value_parser = threshold)]
    mass_failure_threshold: Threshold,
    /// Mass-failure protection applies only with at least this many live members.
    #[arg(long, env = "HEARTBEAT_MASS_FAILURE_MIN_MEMBERS", default_value_t = MassFailure::default().min_members)]
    mass_failure_min_members: u32,
    /// Most listed members; a Join of a new identity beyond it gets RESOURCE_EXHAUSTED.
    #[arg(long, env = "HEARTBEAT_MAX_MEMBERS", default_value_t = defaults().max_members)]
    max_members: usize,
    /// Most connections at once over every port; at the limit a new one is admitted by closing the longest-idle one. Default: what the descriptor limit leaves room for.
    #[arg(long, env = "HEARTBEAT_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Close a connection that has had no open stream for this long (GOAWAY, then close).
    #[arg(long, env = "HEARTBEAT_IDLE_TIMEOUT", value_parser = human_duration, default_value_t = defaults().idle_timeout.into())]
    idle_timeout: HumanDuration,
    /// Most concurrent streams (members) per HTTP/2 connection.
    #[arg(
        long,
        env = "HEARTBEAT_MAX_STREAMS_PER_CONNECTION",
        default_value_t = defaults().max_concurrent_streams
    )]
    max_streams_per_connection: u32,
    /// Most WatchMembers streams open at once, server-wide; more get RESOURCE_EXHAUSTED.
    #[arg(long, env = "HEARTBEAT_MAX_WATCHES", default_value_t = defaults().max_watches)]
    max_watches: usize,
    /// Most WatchMembers streams open at once on one connection; more get RESOURCE_EXHAUSTED.
    #[arg(
        long,
        env = "HEARTBEAT_MAX_WATCHES_PER_CONNECTION",
        default_value_t = defaults().max_watches_per_connection
    )]
    max_watches_per_connection: usize,
    /// Joins per second, server-wide; more get RESOURCE_EXHAUSTED and retry with backoff.
    #[arg(long, env = "HEARTBEAT_MAX_JOIN_RATE", default_value_t = defaults().max_join_rate)]
    max_join_rate: u32,
    /// Pings per second this server is sized for (measure it with `heartbeat bench`). Past it, members are told a longer interval in Pong.interval (up to half their timeout), then Joins get RESOURCE_EXHAUSTED. Unlimited when left out.
    #[arg(long, env = "HEARTBEAT_MAX_PING_RATE")]
    max_ping_rate: Option<u32>,
    /// TLS certificate chain (PEM) for the gRPC port.
    #[arg(long, env = "HEARTBEAT_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM) for the gRPC port.
    #[arg(long, env = "HEARTBEAT_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// CA (PEM) that client certificates must chain to: mTLS on the gRPC port.
    #[arg(long, env = "HEARTBEAT_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<std::path::PathBuf>,
    /// Authorisation file (JSON): which identities may join which services, and who may read.
    #[arg(long, env = "HEARTBEAT_AUTHZ_FILE")]
    authz_file: Option<std::path::PathBuf>,
    /// A plaintext port serving only grpc.health.v1.Health (for kubelet probes under mTLS).
    #[arg(long, env = "HEARTBEAT_HEALTH_LISTEN")]
    health_listen: Option<SocketAddr>,
    /// Keep the member table in this directory across restarts (members come back SUSPECT for one timeout).
    #[arg(long, env = "HEARTBEAT_STATE_DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// Log format.
    #[arg(long, env = "HEARTBEAT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(flatten)]
    cluster: super::cluster::ClusterArgs,
}

/// A fraction in (0, 1), or `off`.
#[derive(Debug, Clone, Copy)]
struct Threshold(Option<f64>);

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("off"),
        }
    }
}

/// The library's defaults, which the flags' defaults show (never repeated
/// here).
fn defaults() -> ServerConfig {
    ServerConfig::default()
}

/// A duration flag (`250ms`, `1s`, `2m`) that prints as one, for defaults.
pub(super) type HumanDuration = humantime::Duration;

pub(super) fn human_duration(s: &str) -> Result<HumanDuration, String> {
    duration(s).map(Into::into)
}

fn threshold(s: &str) -> Result<Threshold, String> {
    if s == "off" {
        return Ok(Threshold(None));
    }
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(Threshold(Some(v))),
        _ => Err(format!(
            "{s:?} is not a fraction between 0 and 1, or \"off\""
        )),
    }
}

pub(super) fn read(flag: &str, path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

impl ServeArgs {
    fn security(&self) -> Result<(Option<TlsFiles>, Option<Authz>), String> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: read("--tls-cert", cert)?,
                key: read("--tls-key", key)?,
                client_ca: match &self.tls_client_ca {
                    Some(ca) => Some(read("--tls-client-ca", ca)?),
                    None => None,
                },
            }),
            _ => None,
        };
        let authz = match &self.authz_file {
            Some(path) => Some(
                Authz::parse(&read("--authz-file", path)?)
                    .map_err(|e| format!("--authz-file {}: {e}", path.display()))?,
            ),
            None => None,
        };
        Ok((tls, authz))
    }

    fn config(&self) -> ServerConfig {
        ServerConfig {
            default_interval: *self.default_interval,
            default_timeout: *self.default_timeout,
            min_interval: *self.min_interval,
            max_interval: *self.max_interval,
            retention: *self.retention,
            join_timeout: *self.join_timeout,
            drain: *self.drain,
            mass_failure: self.mass_failure_threshold.0.map(|threshold| MassFailure {
                threshold,
                min_members: self.mass_failure_min_members,
            }),
            state_dir: self.state_dir.clone(),
            max_members: self.max_members,
            max_connections: self
                .max_connections
                .unwrap_or_else(heartbeat::config::default_max_connections),
            idle_timeout: *self.idle_timeout,
            max_concurrent_streams: self.max_streams_per_connection,
            max_join_rate: self.max_join_rate,
            max_watches: self.max_watches,
            max_watches_per_connection: self.max_watches_per_connection,
            max_ping_rate: self.max_ping_rate,
            ..ServerConfig::default()
        }
    }
}

pub(crate) fn main(args: ServeArgs) -> ExitCode {
    logging::init(args.log_format);
    // Like Go's runtime: a server may use every descriptor its hard limit
    // allows (the soft limit is often 1024). --max-connections' default
    // follows the limit.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::debug!(error = %e, "cannot raise the descriptor limit");
    }
    let mut cfg = args.config();
    let security = args.security();
    match security.and_then(|s| Ok((s, args.cluster.config()?))) {
        Ok(((tls, authz), cluster)) => (cfg.tls, cfg.authz, cfg.cluster) = (tls, authz, cluster),
        Err(e) => {
            error!(error = %e, "cannot start");
            return ExitCode::from(1);
        }
    }
    if let Err(e) = cfg.validate() {
        error!(error = %e, "cannot start");
        return ExitCode::from(1);
    }
    super::runtime(async {
        let listener = match heartbeat::edge::listen(args.listen) {
            Ok(l) => l,
            Err(e) => {
                error!(addr = %args.listen, error = %e, "cannot listen");
                return ExitCode::from(1);
            }
        };
        match listener.local_addr() {
            Ok(addr) => info!(addr = %addr, "listening"),
            Err(e) => info!(error = %e, "listening (address unknown)"),
        }
        let mut registry = heartbeat::metrics::registry();
        let metrics = heartbeat::metrics::ServerMetrics::new(&mut registry);
        let mut server = heartbeat::server::Server::new(cfg).metrics(metrics);
        if let Some(addr) = args.health_listen {
            match bind(addr, "health listening") {
                Ok(l) => server = server.health_listener(l),
                Err(code) => return code,
            }
        }
        let registry = std::sync::Arc::new(registry);
        if let Some(addr) = args.metrics_listen {
            match bind(addr, "metrics listening") {
                Ok(l) => server = server.metrics_listener(l, registry.clone()),
                Err(code) => return code,
            }
        }
        if let Some(addr) = args.http_listen {
            match bind(addr, "http listening") {
                Ok(l) => server = server.http_listener(l, registry),
                Err(code) => return code,
            }
        }
        let run = server.serve(listener, signal::shutdown());
        match run.await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!(error = %e, "server failed");
                ExitCode::from(1)
            }
        }
    })
}

/// Binds an extra port and logs `what` with its address.
fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener, ExitCode> {
    match heartbeat::edge::listen(addr) {
        Ok(l) => {
            if let Ok(a) = l.local_addr() {
                info!(addr = %a, "{what}");
            }
            Ok(l)
        }
        Err(e) => {
            error!(addr = %addr, error = %e, "cannot listen ({what})");
            Err(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn flags_default_to_the_library_defaults() {
        let cli = crate::cli::Cli::try_parse_from(["heartbeat", "serve"]).unwrap();
        let crate::cli::Command::Serve(args) = cli.command else {
            panic!("serve");
        };
        let (got, want) = (args.config(), ServerConfig::default());
        assert_eq!(
            (got.default_interval, got.default_timeout, got.min_interval),
            (
                want.default_interval,
                want.default_timeout,
                want.min_interval
            )
        );
        assert_eq!(
            (got.max_interval, got.retention, got.join_timeout, got.drain),
            (
                want.max_interval,
                want.retention,
                want.join_timeout,
                want.drain
            )
        );
        assert_eq!(
            (
                got.idle_timeout,
                got.max_members,
                got.max_concurrent_streams
            ),
            (
                want.idle_timeout,
                want.max_members,
                want.max_concurrent_streams
            )
        );
        assert_eq!(
            (
                got.max_watches,
                got.max_watches_per_connection,
                got.max_join_rate
            ),
            (
                want.max_watches,
                want.max_watches_per_connection,
                want.max_join_rate
            )
        );
        assert_eq!(got.mass_failure, want.mass_failure);
        assert_eq!(got.max_connections, want.max_connections);
    }
}
