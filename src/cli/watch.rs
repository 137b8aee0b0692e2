//! `heartbeat watch`: one line per member event until interrupted;
//! reconnects and resumes from the last revision seen when the stream breaks
//! or the server restarts (a server that cannot resume sends a snapshot).

use std::process::ExitCode;

use clap::Args;
use heartbeat::client::{Backoff, server_url};
use heartbeat::pb::heartbeat::v1::{
    EventType, WatchMembersRequest, heartbeat_client::HeartbeatClient,
};
use tracing::warn;

use super::{LogFormat, logging, output, render, signal};

/// Flags of `heartbeat watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Server URL (host:port or http://host:port).
    #[arg(long, env = "HEARTBEAT_SERVER", default_value = "127.0.0.1:50051")]
    server: String,
    /// Only this service.
    #[arg(long, env = "HEARTBEAT_SERVICE", default_value = "")]
    service: String,
    /// One JSON object per event and line.
    #[arg(long)]
    json: bool,
    /// Format of the log lines (reconnects) on stderr.
    #[arg(long, env = "HEARTBEAT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

pub(crate) fn main(args: WatchArgs) -> ExitCode {
    logging::init(args.log_format);
    let url = match server_url(&args.server) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: --server: {e}");
            return ExitCode::from(1);
        }
    };
    super::runtime(async move {
        tokio::select! {
            code = follow(&url, &args) => code,
            _ = signal::shutdown() => ExitCode::SUCCESS,
        }
    })
}

/// Follows the events until standard output closes (its exit code).
async fn follow(url: &str, args: &WatchArgs) -> ExitCode {
    let backoff = Backoff::default();
    let mut since = 0;
    let mut failures = 0;
    loop {
        let why = match HeartbeatClient::connect(url.to_owned()).await {
            Err(e) => format!("cannot connect: {e}"),
            Ok(mut client) => {
                let request = WatchMembersRequest {
                    service: args.service.clone(),
                    since_revision: since,
                };
                match client.watch_members(request).await {
                    Err(s) => format!("WatchMembers failed: {:?}: {}", s.code(), s.message()),
                    Ok(stream) => {
                        let mut stream = stream.into_inner();
                        loop {
                            match stream.message().await {
                                Ok(Some(event)) => {
                                    failures = 0;
                                    // Snapshot rows do not advance the resume
                                    // point: a break mid-snapshot must resnapshot.
                                    if event.r#type != EventType::Snapshot as i32 {
                                        since = since.max(event.revision);
                                    }
                                    let line = if args.json {
                                        render::event_json(&event).to_string()
                                    } else {
                                        render::event_line(&event)
                                    };
                                    if let Err(code) = output::line(&line) {
                                        return code;
                                    }
                                }
                                Ok(None) => break "the server ended the stream".to_owned(),
                                Err(s) => break format!("{:?}: {}", s.code(), s.message()),
                            }
                        }
                    }
                }
            }
        };
        failures += 1;
        let delay = backoff.delay(failures, rand::random());
        warn!(error = %why, since_revision = since, retry_in = ?delay, "watch interrupted; resuming");
        tokio::time::sleep(delay).await;
    }
}
