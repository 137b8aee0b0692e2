//! `heartbeat beat`: the agent (SPEC §5, §6).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args};
use heartbeat::agent::{self, AgentConfig, LocalCheck};
use heartbeat::client::ClientConfig;
use tracing::{error, info};

use super::{LogFormat, duration, logging, signal};

/// Flags of `heartbeat beat`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("check").args(["check_grpc", "check_tcp", "check_exec"])))]
pub struct BeatArgs {
    /// Server URLs (host:port or http://host:port), comma-separated, tried in turn.
    #[arg(
        long,
        env = "HEARTBEAT_SERVER",
        value_delimiter = ',',
        default_value = "127.0.0.1:50051"
    )]
    server: Vec<String>,
    /// Service name of this member.
    #[arg(long, env = "HEARTBEAT_SERVICE")]
    service: String,
    /// Instance name of this member (unique within the service).
    #[arg(long, env = "HEARTBEAT_INSTANCE")]
    instance: String,
    /// Requested ping interval (the server may clamp it).
    #[arg(long, env = "HEARTBEAT_INTERVAL", value_parser = duration)]
    interval: Option<Duration>,
    /// Requested liveness timeout (the server may clamp it).
    #[arg(long, env = "HEARTBEAT_TIMEOUT", value_parser = duration)]
    timeout: Option<Duration>,
    /// A label, key=value; repeat for more.
    #[arg(long = "label", env = "HEARTBEAT_LABEL", value_parser = label)]
    labels: Vec<(String, String)>,
    /// HOST:PORT where this member serves its own traffic; xDS clients of
    /// the service are routed there while the member is live and SERVING.
    #[arg(long, env = "HEARTBEAT_ENDPOINT")]
    endpoint: Option<String>,
    /// Failed attempts in a row before reporting OFFLINE.
    #[arg(long, env = "HEARTBEAT_MAX_RETRIES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    max_retries: u32,
    /// Serve Prometheus metrics over HTTP at /metrics on this address.
    #[arg(long, env = "HEARTBEAT_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Serve grpc.health.v1.Health here: "" = this agent, heartbeat.v1.Heartbeat = membership.
    #[arg(long, env = "HEARTBEAT_HEALTH_LISTEN")]
    health_listen: Option<SocketAddr>,
    /// Gate on the app's own gRPC health: ADDR[/SERVICE].
    #[arg(long, env = "HEARTBEAT_CHECK_GRPC")]
    check_grpc: Option<String>,
    /// Gate on a TCP connect to ADDR.
    #[arg(long, env = "HEARTBEAT_CHECK_TCP")]
    check_tcp: Option<String>,
    /// Gate on a command (sh -c); exit 0 = healthy.
    #[arg(long, env = "HEARTBEAT_CHECK_EXEC")]
    check_exec: Option<String>,
    /// How long one run of the local check may take.
    #[arg(long, env = "HEARTBEAT_CHECK_TIMEOUT", value_parser = duration, default_value = "1s")]
    check_timeout: Duration,
    #[command(flatten)]
    connect: super::connect::ConnectArgs,
    /// Log format.
    #[arg(long, env = "HEARTBEAT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
        None => Err(format!("{s:?} is not key=value")),
    }
}

impl BeatArgs {
    fn config(&self) -> Result<AgentConfig, String> {
        let mut client = ClientConfig::new(self.server.clone(), &self.service, &self.instance)
            .max_retries(self.max_retries);
        client.interval = self.interval;
        client.timeout = self.timeout;
        client.labels = self.labels.iter().cloned().collect();
        client.endpoint = self.endpoint.clone();
        client.tls = self.connect.tls()?;
        client.token = self.connect.token()?;
        let check = match (&self.check_grpc, &self.check_tcp, &self.check_exec) {
            (Some(g), _, _) => Some(LocalCheck::grpc(g).map_err(|e| format!("--check-grpc: {e}"))?),
            (_, Some(t), _) => Some(LocalCheck::Tcp(t.clone())),
            (_, _, Some(c)) => Some(LocalCheck::Exec(c.clone())),
            _ => None,
        };
        Ok(AgentConfig {
            client,
            check,
            check_interval: self.interval.unwrap_or(heartbeat::client::DEFAULT_INTERVAL),
            check_timeout: self.check_timeout,
        })
    }
}

pub(crate) fn main(args: BeatArgs) -> ExitCode {
    logging::init(args.log_format);
    let mut cfg = match args.config() {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "cannot start");
            return ExitCode::from(1);
        }
    };
    super::runtime(async move {
        let stop_metrics = tokio_util::sync::CancellationToken::new();
        let _stop_metrics = stop_metrics.clone().drop_guard();
        if let Some(addr) = args.metrics_listen {
            let mut registry = heartbeat::metrics::registry();
            cfg.client.metrics = Some(heartbeat::metrics::ClientMetrics::new(&mut registry));
            if let Err(e) = super::metrics_endpoint(addr, registry, stop_metrics).await {
                error!(error = %e, "cannot start");
                return ExitCode::from(1);
            }
        }
        let listener = match args.health_listen {
            Some(addr) => match heartbeat::edge::listen(addr) {
                Ok(l) => {
                    if let Ok(addr) = l.local_addr() {
                        info!(addr = %addr, "health endpoint listening");
                    }
                    Some(l)
                }
                Err(e) => {
                    error!(addr = %addr, error = %e, "cannot listen for health");
                    return ExitCode::from(1);
                }
            },
            None => None,
        };
        match agent::run(cfg, listener, signal::shutdown()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!(error = %e, "agent failed");
                ExitCode::from(1)
            }
        }
    })
}
