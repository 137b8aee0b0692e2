//! `heartbeat members`: the member table, as a table or JSON lines.

use std::process::ExitCode;
use std::time::SystemTime;

use clap::Args;
use heartbeat::client::server_url;
use heartbeat::pb::heartbeat::v1::{ListMembersRequest, heartbeat_client::HeartbeatClient};

use super::{output, render};

/// Flags of `heartbeat members`.
#[derive(Debug, Args)]
pub struct MembersArgs {
    /// Server URL (host:port or http://host:port).
    #[arg(long, env = "HEARTBEAT_SERVER", default_value = "127.0.0.1:50051")]
    server: String,
    /// Only this service.
    #[arg(long, env = "HEARTBEAT_SERVICE", default_value = "")]
    service: String,
    /// One JSON object per member and line.
    #[arg(long)]
    json: bool,
}

pub(crate) fn main(args: MembersArgs) -> ExitCode {
    let url = match server_url(&args.server) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: --server: {e}");
            return ExitCode::from(1);
        }
    };
    super::runtime(async move {
        let mut client = match HeartbeatClient::connect(url).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: cannot connect to {}: {e}", args.server);
                return ExitCode::from(2);
            }
        };
        let request = ListMembersRequest {
            service: args.service.clone(),
        };
        let response = match client.list_members(request).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                eprintln!(
                    "error: ListMembers failed with {:?}: {}",
                    s.code(),
                    s.message()
                );
                return ExitCode::from(3);
            }
        };
        let now = SystemTime::now();
        let written = if args.json {
            response
                .members
                .iter()
                .try_for_each(|m| output::line(&render::member_json(m, now).to_string()))
        } else {
            output::write(&render::member_table(&response.members, now))
        };
        written.err().unwrap_or(ExitCode::SUCCESS)
    })
}
