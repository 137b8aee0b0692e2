//! `heartbeat members`: the member table, as a table or JSON lines, with
//! kubectl-like filters (`--state`, `--label k=v`) applied to the listing.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use heartbeat::pb::heartbeat::v1::{ListMembersRequest, heartbeat_client::HeartbeatClient};

use super::filter::{self, StateFilter};
use super::{duration, output, render};

/// Flags of `heartbeat members`.
#[derive(Debug, Args)]
pub struct MembersArgs {
    /// Server URL (host:port or http(s)://host:port).
    #[arg(long, env = "HEARTBEAT_SERVER", default_value = "127.0.0.1:50051")]
    server: String,
    /// Only this service.
    #[arg(long, env = "HEARTBEAT_SERVICE", default_value = "")]
    service: String,
    /// Only members in this state; repeat or comma-separate for several.
    #[arg(long, value_enum, value_delimiter = ',', ignore_case = true)]
    state: Vec<StateFilter>,
    /// Only members with this label, key=value (or just key: any value); repeat: all must match.
    #[arg(long = "label", value_parser = filter::label_selector)]
    labels: Vec<(String, Option<String>)>,
    /// One JSON object per member and line.
    #[arg(long)]
    json: bool,
    /// Bound on connecting, and on the call.
    #[arg(long, env = "HEARTBEAT_REQUEST_TIMEOUT", value_parser = duration, default_value = "5s")]
    request_timeout: Duration,
    #[command(flatten)]
    connect: super::connect::ConnectArgs,
}

pub(crate) fn main(args: MembersArgs) -> ExitCode {
    let (dial, url) = match args.connect.target(&args.server) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    super::runtime(async move {
        let channel = match dial.channel(&url, args.request_timeout).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let mut request = dial.request(ListMembersRequest {
            service: args.service.clone(),
        });
        request.set_timeout(args.request_timeout);
        let response = match HeartbeatClient::new(channel).list_members(request).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                eprintln!("error: ListMembers failed: {}", dial.explain(&s));
                return ExitCode::from(3);
            }
        };
        let members: Vec<_> = response
            .members
            .into_iter()
            .filter(|m| filter::matches(m, &args.state, &args.labels))
            .collect();
        let now = SystemTime::now();
        let written = if args.json {
            members
                .iter()
                .try_for_each(|m| output::line(&render::member_json(m, now).to_string()))
        } else {
            output::write(&render::member_table(&members, now))
        };
        written.err().unwrap_or(ExitCode::SUCCESS)
    })
}
