//! `heartbeat xds-bootstrap`: prints the xDS bootstrap file that points
//! gRPC clients at a heartbeat server (SPEC §8). Save it and name it in
//! `GRPC_XDS_BOOTSTRAP`, or put it whole in `GRPC_XDS_BOOTSTRAP_CONFIG`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use heartbeat::xds::bootstrap::{TlsFiles, bootstrap};

/// Flags of `heartbeat xds-bootstrap`.
#[derive(Debug, Args)]
pub struct XdsBootstrapArgs {
    /// The heartbeat server clients ask for endpoints: host:port, http://host:port or https://host:port.
    #[arg(long, env = "HEARTBEAT_SERVER", default_value = "127.0.0.1:50051")]
    server: String,
    /// Node id the clients report (it names them in the server's logs).
    #[arg(
        long,
        env = "HEARTBEAT_NODE_ID",
        default_value = "heartbeat-xds-client"
    )]
    node_id: String,
    /// CA (PEM) the server's certificate must chain to; turns on TLS (host:port means https).
    #[arg(long, env = "HEARTBEAT_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS.
    #[arg(long, env = "HEARTBEAT_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mTLS.
    #[arg(long, env = "HEARTBEAT_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// The file's path as clients in any directory read it.
fn file(flag: &str, path: &Path) -> Result<String, String> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(format!("{flag} {}: {e}", path.display()));
    }
    let abs = std::path::absolute(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    abs.into_os_string()
        .into_string()
        .map_err(|_| format!("{flag} {}: not UTF-8", path.display()))
}

impl XdsBootstrapArgs {
    fn render(&self) -> Result<String, String> {
        if self.node_id.is_empty() {
            return Err("--node-id: must not be empty".into());
        }
        let tls = TlsFiles {
            ca: self
                .tls_ca
                .as_deref()
                .map(|p| file("--tls-ca", p))
                .transpose()?,
            identity: match (&self.tls_cert, &self.tls_key) {
                (Some(c), Some(k)) => Some((file("--tls-cert", c)?, file("--tls-key", k)?)),
                _ => None,
            },
        };
        bootstrap(&self.server, &self.node_id, &tls)
    }
}

pub(crate) fn main(args: XdsBootstrapArgs) -> ExitCode {
    match args.render() {
        Ok(text) => super::output::write(&format!("{text}\n"))
            .err()
            .unwrap_or(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
