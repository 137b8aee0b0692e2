//! Command line (SPEC §6). Every flag also reads `HEARTBEAT_<FLAG>`; durations
//! take humantime values (`250ms`, `1s`, `2m`). The commands only fill in
//! library configuration and call it.

mod beat;
mod bench;
mod check;
mod cluster;
mod connect;
mod filter;
mod logging;
mod members;
mod output;
mod render;
mod serve;
mod signal;
mod watch;
mod xds;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// `--version`: the crate version, the commit and the build profile.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HEARTBEAT_COMMIT"),
    ", ",
    env!("HEARTBEAT_PROFILE"),
    " build)"
);

/// A gRPC liveness service: members ping, the server publishes who is alive through grpc.health.v1.
#[derive(Debug, Parser)]
#[command(name = "heartbeat", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the heartbeat server.
    Serve(serve::ServeArgs),
    /// Be a member (a sidecar agent for a process in any language).
    Beat(beat::BeatArgs),
    /// Check a health name, like grpc_health_probe (exit 0/1/2/3/4).
    Check(check::CheckArgs),
    /// List the members.
    Members(members::MembersArgs),
    /// Follow member events, one line each, until interrupted.
    Watch(watch::WatchArgs),
    /// Load a server with N members and measure it (pings/s, RTT, detection).
    Bench(bench::BenchArgs),
    /// Print an xDS bootstrap file: gRPC clients dialling xds:///SERVICE then reach its live members.
    XdsBootstrap(xds::XdsBootstrapArgs),
    /// Print a shell completion script: `heartbeat completions bash > /etc/bash_completion.d/heartbeat`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `heartbeat man | man -l -`.
    Man,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

pub(crate) fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 250ms, 1s, 2m)"))
}

/// Binds `addr` and serves `registry` at `/metrics` until `stop`; logs the
/// bound address. `Err` carries a message for the log.
pub(crate) async fn metrics_endpoint(
    addr: std::net::SocketAddr,
    registry: prometheus_client::registry::Registry,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), String> {
    let listener = heartbeat::edge::listen(addr)
        .map_err(|e| format!("cannot listen for metrics on {addr}: {e}"))?;
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(addr = %bound, "metrics listening");
    }
    let registry = std::sync::Arc::new(registry);
    tokio::spawn(heartbeat::edge::serve_http(
        listener,
        heartbeat::metrics::router(registry),
        stop.cancelled_owned(),
    ));
    Ok(())
}

/// Runs `f` on a new multi-threaded runtime.
pub(crate) fn runtime<T>(f: impl Future<Output = T>) -> T {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

/// Parses the command line. Argument errors of `check` exit 1, as
/// grpc_health_probe's do; elsewhere clap's usual 2.
pub fn parse() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let is_check = std::env::args().nth(1).as_deref() == Some("check");
            if is_check && e.use_stderr() {
                let _ = e.print();
                std::process::exit(1);
            }
            e.exit()
        }
    }
}

/// Runs the parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve::main(args),
        Command::Beat(args) => beat::main(args),
        Command::Check(args) => check::main(args),
        Command::Members(args) => members::main(args),
        Command::Watch(args) => watch::main(args),
        Command::Bench(args) => bench::main(args),
        Command::XdsBootstrap(args) => xds::main(args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "heartbeat", &mut out);
            output::write(&String::from_utf8_lossy(&out))
                .err()
                .unwrap_or(ExitCode::SUCCESS)
        }
        Command::Man => {
            let mut out = Vec::new();
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            if let Err(e) = page.render(&mut out) {
                eprintln!("error: cannot render the man page: {e}");
                return ExitCode::from(1);
            }
            output::write(&String::from_utf8_lossy(&out))
                .err()
                .unwrap_or(ExitCode::SUCCESS)
        }
    }
}
