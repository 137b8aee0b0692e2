//! Client configuration as plain data with `validate()`: the same rules the
//! server applies (SPEC §2) are checked before the first connection, so a
//! typo fails at start instead of in a retry loop.

use std::time::Duration;

use super::backoff::Backoff;
use super::metrics::ClientMetrics;
use crate::liveness::{Labels, Status};
use crate::validate;

/// Everything a member needs to know to join.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Server URLs, tried in turn (`host:port` or `http://host:port`).
    pub servers: Vec<String>,
    /// Service name.
    pub service: String,
    /// Instance name.
    pub instance: String,
    /// Requested ping interval (`None` = the server's default).
    pub interval: Option<Duration>,
    /// Requested timeout (`None` = the server's default).
    pub timeout: Option<Duration>,
    /// Labels.
    pub labels: Labels,
    /// `host:port` where this member serves its own traffic, advertised in
    /// the Join so that xDS clients are routed to it (SPEC §8).
    pub endpoint: Option<String>,
    /// Consecutive failed attempts before the client reports OFFLINE.
    pub max_retries: u32,
    /// Reconnect backoff.
    pub backoff: Backoff,
    /// How long `leave()` waits for the server's OK.
    pub leave_timeout: Duration,
    /// Status reported by the first ping (later: `Client::set_status`).
    pub initial_status: Status,
    /// Where to record RTT, pings, reconnects and state, if anywhere.
    pub metrics: Option<ClientMetrics>,
    /// TLS towards the servers (`https://` URLs; plain `host:port` becomes https).
    pub tls: Option<ClientTls>,
    /// Bearer token sent with every Beat (`authorization: Bearer …`).
    pub token: Option<String>,
}

/// PEM contents for TLS from the client.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// CA that the server's certificate must chain to.
    pub ca: Vec<u8>,
    /// Client certificate chain and key, for mTLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the server's certificate must carry, when it is not the
    /// URL's host (e.g. dialling an IP address).
    pub server_name: Option<String>,
}

/// Timeout assumed before any Welcome told the agreed one (the server default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Interval assumed before any Welcome told the agreed one (the server default).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// A configuration that cannot work, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid client configuration: {0}")]
pub struct ClientConfigError(pub String);

impl ClientConfig {
    /// A member `service`/`instance` of the servers at `servers`.
    pub fn new(
        servers: impl IntoIterator<Item = impl Into<String>>,
        service: impl Into<String>,
        instance: impl Into<String>,
    ) -> Self {
        Self {
            servers: servers.into_iter().map(Into::into).collect(),
            service: service.into(),
            instance: instance.into(),
            interval: None,
            timeout: None,
            labels: Labels::new(),
            endpoint: None,
            max_retries: 3,
            backoff: Backoff::default(),
            leave_timeout: Duration::from_secs(1),
            initial_status: Status::Serving,
            metrics: None,
            tls: None,
            token: None,
        }
    }

    /// Requests a ping interval.
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = Some(d);
        self
    }

    /// Requests a timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Advertises `host:port` as where this member serves (SPEC §8).
    pub fn endpoint(mut self, host_port: impl Into<String>) -> Self {
        self.endpoint = Some(host_port.into());
        self
    }

    /// Sets the retries before OFFLINE.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Sets the reconnect backoff.
    pub fn backoff(mut self, b: Backoff) -> Self {
        self.backoff = b;
        self
    }

    /// Checks every value; normalises server URLs to `http://host:port`.
    pub fn validate(&mut self) -> Result<(), ClientConfigError> {
        let err = |m: String| ClientConfigError(m);
        if self.servers.is_empty() {
            return Err(err("at least one server is needed".into()));
        }
        for server in &mut self.servers {
            *server = server_url_with(server, self.tls.is_some()).map_err(err)?;
        }
        super::Dial::new(self.tls.clone(), self.token.as_deref()).map_err(err)?;
        validate::service("service", &self.service).map_err(|e| err(e.to_string()))?;
        validate::instance("instance", &self.instance).map_err(|e| err(e.to_string()))?;
        let labels = self.labels.clone().into_iter().collect();
        validate::labels("labels", labels).map_err(|e| err(e.to_string()))?;
        if let Some(e) = &self.endpoint {
            validate::endpoint("endpoint", e).map_err(|e| err(e.to_string()))?;
        }
        if self.max_retries == 0 {
            return Err(err("max_retries must be at least 1".into()));
        }
        self.backoff.validate().map_err(|e| err(e.to_string()))?;
        Ok(())
    }
}

/// `host:port`, `http://host:port` → `http://host:port`; anything else is
/// refused with the reason. `https://` needs TLS settings (see
/// [`server_url_with`]).
pub fn server_url(s: &str) -> Result<String, String> {
    server_url_with(s, false)
}

/// Like [`server_url`]; with `tls`, a bare `host:port` means `https://` and
/// `http://` is refused (TLS settings would be ignored).
pub fn server_url_with(s: &str, tls: bool) -> Result<String, String> {
    let s = s.trim();
    let url = if s.contains("://") {
        s.to_owned()
    } else if tls {
        format!("https://{s}")
    } else {
        format!("http://{s}")
    };
    match (url.split("://").next(), tls) {
        (Some("http"), false) | (Some("https"), true) => {}
        (Some("https"), false) => {
            return Err(format!("server {s:?}: https needs a CA (--tls-ca)"));
        }
        (Some("http"), true) => {
            return Err(format!(
                "server {s:?}: TLS is configured; use https:// or host:port"
            ));
        }
        _ => {
            return Err(format!(
                "server {s:?}: use host:port or http(s)://host:port"
            ));
        }
    }
    let uri: tonic::codegen::http::Uri = url.parse().map_err(|e| format!("server {s:?}: {e}"))?;
    match (uri.host(), uri.port_u16(), uri.path()) {
        (Some(_), Some(_), "/" | "") => Ok(url.trim_end_matches('/').to_owned()),
        (_, None, _) => Err(format!("server {s:?}: a port is needed (host:port)")),
        _ => Err(format!("server {s:?}: use host:port or http://host:port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            server_url("127.0.0.1:50051").unwrap(),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            server_url("http://localhost:1/").unwrap(),
            "http://localhost:1"
        );
        assert_eq!(server_url("[::1]:50051").unwrap(), "http://[::1]:50051");
        assert!(server_url("localhost").unwrap_err().contains("port"));
        assert!(server_url("ftp://x:1").is_err());
        assert!(server_url("https://x:1").unwrap_err().contains("CA"));
        assert_eq!(server_url_with("x:1", true).unwrap(), "https://x:1");
        assert!(server_url_with("http://x:1", true).is_err());
        assert!(server_url("http://x:1/path").is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let mut ok = ClientConfig::new(["127.0.0.1:1"], "web", "a").label("zone", "z1");
        assert!(ok.validate().is_ok());
        assert_eq!(ok.servers, ["http://127.0.0.1:1"]);
        let e = ClientConfig::new(["127.0.0.1:1"], "bad name", "a")
            .validate()
            .unwrap_err();
        assert!(e.0.contains("service"), "{e}");
        let e = ClientConfig::new(Vec::<String>::new(), "web", "a")
            .validate()
            .unwrap_err();
        assert!(e.0.contains("server"), "{e}");
        let e = ClientConfig::new(["x:1"], "web", "a")
            .max_retries(0)
            .validate()
            .unwrap_err();
        assert!(e.0.contains("max_retries"), "{e}");
        let e = ClientConfig::new(["x:1"], "web", "a")
            .label("bad key", "")
            .validate()
            .unwrap_err();
        assert!(e.0.contains("labels"), "{e}");
    }
}
