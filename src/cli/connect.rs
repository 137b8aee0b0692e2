//! The client connection flags, one set for every command that dials a
//! server (`beat`, `check`, `members`, `watch`, `bench`): same names, same
//! environment variables, turned into one [`Dial`] by the library.

use std::path::{Path, PathBuf};

use clap::Args;
use heartbeat::client::{ClientTls, Dial};

/// TLS and token flags of a command that dials a server.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// CA (PEM) the server's certificate must chain to; turns on TLS (host:port means https).
    #[arg(long, env = "HEARTBEAT_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mTLS.
    #[arg(long, env = "HEARTBEAT_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mTLS.
    #[arg(long, env = "HEARTBEAT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Name the server's certificate must carry, when it is not the host dialled (e.g. an IP).
    #[arg(long, env = "HEARTBEAT_TLS_SERVER_NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,
    /// File holding a bearer token sent with every call.
    #[arg(long, env = "HEARTBEAT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

impl ConnectArgs {
    /// The TLS settings, read from their files.
    pub fn tls(&self) -> Result<Option<ClientTls>, String> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((read("--tls-cert", c)?, read("--tls-key", k)?)),
            _ => None,
        };
        Ok(Some(ClientTls {
            ca: read("--tls-ca", ca)?,
            identity,
            server_name: self.tls_server_name.clone(),
        }))
    }

    /// The token, read from its file and trimmed.
    pub fn token(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let token = String::from_utf8(read("--token-file", path)?)
            .map_err(|_| format!("--token-file {}: not UTF-8", path.display()))?;
        Ok(Some(token.trim().to_owned()))
    }

    /// Everything, checked.
    pub fn dial(&self) -> Result<Dial, String> {
        let token = self.token()?;
        Dial::new(self.tls()?, token.as_deref()).map_err(|e| match &self.token_file {
            Some(p) if e.contains("token") => format!("--token-file {}: {e}", p.display()),
            _ => e,
        })
    }

    /// The dial settings and `server` as a URL, or a message for stderr.
    pub fn target(&self, server: &str) -> Result<(Dial, String), String> {
        let dial = self.dial()?;
        let url = dial.url(server).map_err(|e| format!("--server: {e}"))?;
        Ok((dial, url))
    }
}
