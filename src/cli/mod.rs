//! Command line (SPEC §6). Every flag also reads `HEARTBEAT_<FLAG>`; durations
//! take humantime values (`250ms`, `1s`, `2m`). The commands only fill in
//! library configuration and call it.

mod logging;
mod serve;
mod signal;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// heartbeat: a gRPC liveness service.
#[derive(Debug, Parser)]
#[command(name = "heartbeat", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the heartbeat server.
    Serve(serve::ServeArgs),
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

/// Runs the parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve::main(args),
    }
}
