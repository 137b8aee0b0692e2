//! `heartbeat watch`: one line per member event until interrupted, each
//! stamped with the time it arrived; reconnects and resumes from the last
//! revision seen when the stream breaks or the server restarts (a server
//! that cannot resume sends a snapshot).

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use heartbeat::client::{Backoff, Dial};
use heartbeat::pb::heartbeat::v1::{
    EventType, MemberEvent, WatchMembersRequest, heartbeat_client::HeartbeatClient,
};
use tracing::warn;

use super::filter;
use super::{LogFormat, duration, logging, output, render, signal};

/// Flags of `heartbeat watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Server URL (host:port or http(s)://host:port).
    #[arg(long, env = "HEARTBEAT_SERVER", default_value = "127.0.0.1:50051")]
    server: String,
    /// Only this service.
    #[arg(long, env = "HEARTBEAT_SERVICE", default_value = "")]
    service: String,
    /// Only members with this label, key=value (or just key); repeat: all must match.
    #[arg(long = "label", value_parser = filter::label_selector)]
    labels: Vec<(String, Option<String>)>,
    /// One JSON object per event and line.
    #[arg(long)]
    json: bool,
    /// Bound on each connection attempt.
    #[arg(long, env = "HEARTBEAT_CONNECT_TIMEOUT", value_parser = duration, default_value = "5s")]
    connect_timeout: Duration,
    /// Format of the log lines (reconnects) on stderr.
    #[arg(long, env = "HEARTBEAT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(flatten)]
    connect: super::connect::ConnectArgs,
}

pub(crate) fn main(args: WatchArgs) -> ExitCode {
    logging::init(args.log_format);
    let (dial, url) = match args.connect.target(&args.server) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    super::runtime(async move {
        tokio::select! {
            code = follow(&dial, &url, &args) => code,
            _ = signal::shutdown() => ExitCode::SUCCESS,
        }
    })
}

/// Writes one event, if it passes the filters; `Err` is the exit code when
/// standard output closed.
fn print(event: &MemberEvent, args: &WatchArgs) -> Result<(), ExitCode> {
    let passes = event
        .member
        .as_ref()
        .is_none_or(|m| filter::matches(m, &[], &args.labels));
    if !passes {
        return Ok(());
    }
    let now = SystemTime::now();
    let line = if args.json {
        render::event_json(event, now).to_string()
    } else {
        render::event_line(event, now)
    };
    output::line(&line)
}

/// Follows the events until standard output closes (its exit code).
async fn follow(dial: &Dial, url: &str, args: &WatchArgs) -> ExitCode {
    let backoff = Backoff::default();
    let mut since = 0;
    let mut failures = 0;
    loop {
        let why = match dial.channel(url, args.connect_timeout).await {
            Err(e) => e.to_string(),
            Ok(channel) => {
                let request = dial.request(WatchMembersRequest {
                    service: args.service.clone(),
                    since_revision: since,
                });
                match HeartbeatClient::new(channel).watch_members(request).await {
                    Err(s) => format!("WatchMembers failed: {}", dial.explain(&s)),
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
                                    if let Err(code) = print(&event, args) {
                                        return code;
                                    }
                                }
                                Ok(None) => break "the server ended the stream".to_owned(),
                                Err(s) => break dial.explain(&s),
                            }
                        }
                    }
                }
            }
        };
        failures += 1;
        let delay = backoff.delay(failures, rand::random());
        warn!(error = %why, since_revision = since, retry_in = %humantime::format_duration(delay), "watch interrupted; resuming");
        tokio::time::sleep(delay).await;
    }
}
