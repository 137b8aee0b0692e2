//! `heartbeat bench`: see `heartbeat::bench`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use heartbeat::bench::{self, BenchConfig};

use super::{duration, output};

/// Flags of `heartbeat bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Server URL (host:port or http://host:port).
    #[arg(long, env = "HEARTBEAT_SERVER", default_value = "127.0.0.1:50051")]
    server: String,
    /// Service name the members join as.
    #[arg(long, default_value = "bench")]
    service: String,
    /// Number of members.
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// Number of connections they share.
    #[arg(long, default_value_t = 10)]
    connections: usize,
    /// Requested ping interval.
    #[arg(long, value_parser = duration, default_value = "1s")]
    interval: Duration,
    /// Requested timeout (default: the server's).
    #[arg(long, value_parser = duration)]
    timeout: Option<Duration>,
    /// Length of the measured phase, after all members joined.
    #[arg(long, value_parser = duration, default_value = "10s")]
    duration: Duration,
    /// Fraction of members that stop pinging a third of the way in (stream kept open).
    #[arg(long, default_value_t = 0.0)]
    hung: f64,
    /// Health Watch streams on a service whose health flips once a second: measures the fan-out of a flip.
    #[arg(long, default_value_t = 0)]
    watchers: usize,
    /// How long a member keeps retrying a Join refused with RESOURCE_EXHAUSTED (backoff as any client) before it counts as refused.
    #[arg(long, value_parser = duration, default_value = "60s")]
    join_within: Duration,
    /// Exit 0 even when not every member joined (the figures are about those that did).
    #[arg(long)]
    allow_partial: bool,
    /// PID of the server, for its CPU per ping and RSS per member (from /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// One JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    connect: super::connect::ConnectArgs,
}

/// Exit codes: 0 done, 1 bad arguments or no member joined, 2 not every
/// member joined (without `--allow-partial`).
pub(crate) fn main(args: BenchArgs) -> ExitCode {
    let settings = args
        .connect
        .target(&args.server)
        .and_then(|(_, url)| Ok((url, args.connect.tls()?, args.connect.token()?)));
    let (url, tls, token) = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let cfg = BenchConfig {
        url,
        tls,
        token,
        service: args.service,
        members: args.members,
        connections: args.connections,
        interval: args.interval,
        timeout: args.timeout,
        duration: args.duration,
        hung: args.hung,
        server_pid: args.server_pid,
        progress: !args.quiet,
        watchers: args.watchers,
        join_within: args.join_within,
    };
    match super::runtime(bench::run(cfg)) {
        Ok(report) => {
            let written = if args.json {
                output::line(&report.json().to_string())
            } else {
                output::write(&report.human())
            };
            if let Err(code) = written {
                return code;
            }
            if report.joined < report.members && !args.allow_partial {
                eprintln!(
                    "error: only {} of {} members joined ({} refused, {} failed); the figures are about those {} (--allow-partial accepts this)",
                    report.joined, report.members, report.refused, report.failed, report.joined
                );
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
