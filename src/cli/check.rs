//! `heartbeat check`: a drop-in for grpc_health_probe as an exec probe, with
//! its exit codes (0 SERVING, 1 bad arguments, 2 cannot connect, 3 RPC
//! failed, 4 not SERVING) and one line of output.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use heartbeat::probe;

use super::{duration, output};

/// Flags of `heartbeat check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Server URL (host:port or http://host:port).
    #[arg(long, env = "HEARTBEAT_SERVER", default_value = "127.0.0.1:50051")]
    server: String,
    /// Health name to check ("" = the server itself).
    #[arg(default_value = "")]
    service: String,
    /// Bound on connecting (TCP and the HTTP/2 handshake).
    #[arg(long, env = "HEARTBEAT_CONNECT_TIMEOUT", value_parser = duration, default_value = "1s")]
    connect_timeout: Duration,
    /// Bound on the Check call.
    #[arg(long, env = "HEARTBEAT_RPC_TIMEOUT", value_parser = duration, default_value = "1s")]
    rpc_timeout: Duration,
    #[command(flatten)]
    connect: super::connect::ConnectArgs,
}

pub(crate) fn main(args: CheckArgs) -> ExitCode {
    let (dial, url) = match args.connect.target(&args.server) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = super::runtime(probe::check(
        &dial,
        &url,
        &args.service,
        args.connect_timeout,
        args.rpc_timeout,
    ));
    let line = outcome.line(&args.server, &args.service);
    if outcome == probe::Outcome::Serving {
        // A reader that went away changes nothing: the exit code is the answer.
        let _ = output::line(&line);
    } else {
        eprintln!("{line}");
    }
    ExitCode::from(outcome.exit_code())
}
