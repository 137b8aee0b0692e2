//! One health probe, the way `grpc_health_probe` does it: connect within a
//! connect timeout, call `grpc.health.v1.Health/Check` within an RPC
//! timeout, and classify the outcome into its exit codes (SPEC §6).
//!
//! "Connected" means the peer speaks HTTP/2, not just that TCP accepted: a
//! port that accepts TCP but never answers the HTTP/2 preface must count as
//! "cannot connect" (exit 2), as it does for grpc_health_probe, whose dial
//! waits for the server's SETTINGS. gRPC clients (tonic included) send
//! requests before that SETTINGS arrives, so the probe first exchanges the
//! preface on a short-lived connection of its own, then makes the call.
//! Over TLS the handshake itself is that proof: a peer that accepts TCP and
//! stays silent never completes it within the connect timeout.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

use crate::client::Dial;

use crate::pb::health::v1::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// The outcome of a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// SERVING (exit 0).
    Serving,
    /// Answered, but not SERVING (exit 4).
    NotServing(String),
    /// No HTTP/2 connection within the connect timeout (exit 2).
    ConnectFailed(String),
    /// The RPC failed, NOT_FOUND included (exit 3).
    RpcFailed(Code, String),
}

impl Outcome {
    /// The `grpc_health_probe` exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Serving => 0,
            Outcome::ConnectFailed(_) => 2,
            Outcome::RpcFailed(..) => 3,
            Outcome::NotServing(_) => 4,
        }
    }

    /// One line saying what happened.
    pub fn line(&self, server: &str, service: &str) -> String {
        let name = if service.is_empty() { "\"\"" } else { service };
        match self {
            Outcome::Serving => "status: SERVING".into(),
            Outcome::NotServing(s) => format!("service {name} unhealthy (responded with {s})"),
            Outcome::ConnectFailed(e) => format!("failed to connect to {server}: {e}"),
            Outcome::RpcFailed(code, msg) => {
                format!("health rpc for {name} failed with {code:?}: {msg}")
            }
        }
    }
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
const EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, 4, 0, 0, 0, 0, 0];

/// Checks that `authority` (`host:port`) answers the HTTP/2 preface with a
/// SETTINGS frame.
async fn speaks_http2(authority: &str) -> Result<(), String> {
    let mut stream = TcpStream::connect(authority)
        .await
        .map_err(|e| e.to_string())?;
    stream.write_all(PREFACE).await.map_err(|e| e.to_string())?;
    stream
        .write_all(&EMPTY_SETTINGS)
        .await
        .map_err(|e| e.to_string())?;
    let mut header = [0u8; 9];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| format!("no HTTP/2 answer: {e}"))?;
    if header[3] != 4 {
        return Err("peer does not speak HTTP/2".into());
    }
    Ok(())
}

/// Probes `service` at `url` (`http://host:port`, or `https://` with TLS
/// settings in `dial`).
pub async fn check(
    dial: &Dial,
    url: &str,
    service: &str,
    connect_timeout: Duration,
    rpc_timeout: Duration,
) -> Outcome {
    let authority = match url.parse::<http::Uri>() {
        Ok(uri) => uri.authority().map(|a| a.to_string()).unwrap_or_default(),
        Err(e) => return Outcome::ConnectFailed(e.to_string()),
    };
    let connect = async {
        if !dial.is_tls() {
            speaks_http2(&authority)
                .await
                .map_err(|e| format!("{e} ({})", crate::client::PLAINTEXT_HINT))?;
        }
        dial.channel(url, connect_timeout)
            .await
            .map_err(|e| e.cause)
    };
    let channel = match tokio::time::timeout(connect_timeout, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Outcome::ConnectFailed(e),
        Err(_) => {
            return Outcome::ConnectFailed(format!(
                "timeout after {}",
                humantime::format_duration(connect_timeout)
            ));
        }
    };
    let mut request = dial.request(HealthCheckRequest {
        service: service.to_owned(),
    });
    request.set_timeout(rpc_timeout);
    let mut client = HealthClient::new(channel);
    let call = client.check(request);
    match tokio::time::timeout(rpc_timeout, call).await {
        Err(_) => Outcome::RpcFailed(Code::DeadlineExceeded, "timeout".into()),
        Ok(Err(s)) => Outcome::RpcFailed(s.code(), rpc_message(dial, &s)),
        Ok(Ok(r)) => match ServingStatus::try_from(r.into_inner().status) {
            Ok(ServingStatus::Serving) => Outcome::Serving,
            Ok(other) => Outcome::NotServing(other.as_str_name().to_owned()),
            Err(_) => Outcome::NotServing("an unknown status".into()),
        },
    }
}

/// The message of a failed call, with its transport cause if any.
fn rpc_message(dial: &Dial, s: &tonic::Status) -> String {
    let text = dial.explain(s);
    let code = format!("{:?}: ", s.code());
    text.strip_prefix(&code).map(str::to_owned).unwrap_or(text)
}
