//! Dialling a server, for every command and library part that does: the
//! member client, `check`, `members`, `watch` and `bench`. One place turns
//! the connection settings (CA, client certificate, server name, token) into
//! a tonic `Channel` and into request metadata, so that every command speaks
//! TLS the same way; and one place turns a failure into a message naming its
//! cause (refused, timed out, unknown issuer, name mismatch, HTTP/2) and the
//! address, where tonic's own `Display` says only "transport error".

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::config::{ClientTls, server_url_with};

/// How to reach servers: TLS settings and a bearer token, checked once.
/// Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Dial(Arc<Settings>);

#[derive(Debug, Default)]
struct Settings {
    tls: Option<ClientTls>,
    authorization: Option<AsciiMetadataValue>,
}

/// Appended to plaintext failures that look like a TLS port.
pub(crate) const PLAINTEXT_HINT: &str = "is it a TLS port? pass --tls-ca";

/// A connection that could not be made, with its cause chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot connect to {url}: {cause}")]
pub struct DialError {
    /// The server URL dialled.
    pub url: String,
    /// What went wrong, outermost first ("…: connection refused").
    pub cause: String,
}

impl Dial {
    /// Checks the settings: PEM that parses, a token of one line.
    pub fn new(tls: Option<ClientTls>, token: Option<&str>) -> Result<Self, String> {
        if let Some(tls) = &tls {
            tls.validate()?;
        }
        let authorization = match token {
            None => None,
            Some(t) if t.is_empty() || t.contains(['\r', '\n']) => {
                return Err("the token must be one non-empty line".into());
            }
            Some(t) => Some(
                MetadataValue::try_from(format!("Bearer {t}"))
                    .map_err(|_| "the token has characters a header cannot carry".to_owned())?,
            ),
        };
        Ok(Self(Arc::new(Settings { tls, authorization })))
    }

    /// Whether TLS is configured.
    pub fn is_tls(&self) -> bool {
        self.0.tls.is_some()
    }

    /// `server` as a URL: `host:port` means `https://` with TLS settings,
    /// `http://` without.
    pub fn url(&self, server: &str) -> Result<String, String> {
        server_url_with(server, self.0.tls.is_some())
    }

    /// Connects to `url` (TCP, TLS, HTTP/2) within `wait`.
    pub async fn channel(&self, url: &str, wait: Duration) -> Result<Channel, DialError> {
        let fail = |cause: String| DialError {
            url: url.to_owned(),
            cause,
        };
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|e| fail(chain(&e)))?
            .connect_timeout(wait)
            .tcp_nodelay(true);
        if let Some(tls) = &self.0.tls {
            endpoint = endpoint
                .tls_config(tls.tonic())
                .map_err(|e| fail(format!("TLS settings: {}", chain(&e))))?;
        }
        match tokio::time::timeout(wait, endpoint.connect()).await {
            Ok(Ok(channel)) => Ok(channel),
            Ok(Err(e)) => Err(fail(chain(&e))),
            Err(_) => Err(fail(format!(
                "timeout after {}",
                humantime::format_duration(wait)
            ))),
        }
    }

    /// [`status_text`] of a failed call, with a hint when a plaintext call
    /// died in the transport: the usual cause is a TLS port (which closes a
    /// plaintext connection at once).
    pub fn explain(&self, s: &tonic::Status) -> String {
        let text = status_text(s);
        let transport = matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
        ) && s.source().is_some();
        if transport && !self.is_tls() {
            format!("{text} ({PLAINTEXT_HINT})")
        } else {
            text
        }
    }

    /// `message` as a request carrying the token, if any.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(v) = &self.0.authorization {
            request.metadata_mut().insert("authorization", v.clone());
        }
        request
    }
}

impl ClientTls {
    /// Checks that the PEM parses, so a wrong file fails at start.
    pub fn validate(&self) -> Result<(), String> {
        let certs = |flag: &str, pem: &[u8]| -> Result<(), String> {
            let n = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{flag}: {e}"))?
                .len();
            if n == 0 {
                return Err(format!("{flag}: no PEM certificate in the file"));
            }
            Ok(())
        };
        certs("--tls-ca", &self.ca)?;
        if let Some((cert, key)) = &self.identity {
            certs("--tls-cert", cert)?;
            tokio_rustls::rustls::pki_types::PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| format!("--tls-key: {e}"))?;
        }
        if let Some(name) = &self.server_name {
            tokio_rustls::rustls::pki_types::ServerName::try_from(name.as_str())
                .map_err(|e| format!("--tls-server-name {name:?}: {e}"))?;
        }
        Ok(())
    }

    fn tonic(&self) -> ClientTlsConfig {
        let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca));
        if let Some((cert, key)) = &self.identity {
            cfg = cfg.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &self.server_name {
            cfg = cfg.domain_name(name.clone());
        }
        cfg
    }
}

/// An error and its sources, outermost first, joined with ": "; a source
/// whose text the previous one already contains is left out, and tonic's
/// bare "transport error" wrapper with it.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(e) = next {
        let text = e.to_string();
        let repeated = parts.last().is_some_and(|p| p.contains(&text));
        if !repeated && !text.is_empty() {
            parts.push(text);
        }
        next = e.source();
    }
    if parts.len() > 1 && parts[0] == "transport error" {
        parts.remove(0);
    }
    parts.join(": ")
}

/// A failed call as one line: its code, message and, when the message
/// does not already say it, the cause chain underneath (a transport failure).
pub fn status_text(s: &tonic::Status) -> String {
    let message = s.message();
    let detail = match s.source().map(chain) {
        Some(cause) if message.contains(&cause) => message.to_owned(),
        // The cause repeats the message and says more: the cause alone.
        Some(cause) if cause.contains(message) => cause,
        Some(cause) => format!("{message}: {cause}"),
        None => message.to_owned(),
    };
    format!("{:?}: {detail}", s.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct E(&'static str, #[source] Option<Box<E>>);

    #[test]
    fn chain_names_every_cause_once() {
        let inner = E("connection refused", None);
        let mid = E(
            "tcp connect error: connection refused",
            Some(Box::new(inner)),
        );
        let outer = E("transport error", Some(Box::new(mid)));
        assert_eq!(chain(&outer), "tcp connect error: connection refused");
        assert_eq!(chain(&E("transport error", None)), "transport error");
    }

    #[test]
    fn bad_settings_fail_at_start() {
        let tls = ClientTls {
            ca: b"not pem".to_vec(),
            identity: None,
            server_name: None,
        };
        assert!(Dial::new(Some(tls), None).unwrap_err().contains("--tls-ca"));
        assert!(Dial::new(None, Some("a\nb")).unwrap_err().contains("one"));
        assert!(Dial::new(None, Some("")).is_err());
        let d = Dial::new(None, Some("s3cret")).unwrap();
        let r = d.request(());
        assert_eq!(r.metadata().get("authorization").unwrap(), "Bearer s3cret");
    }
}
