//! Who may join as which service, and who may read.
//!
//! A client's identity is what TLS verified (the DNS and URI subject
//! alternative names of its client certificate, under mTLS) and/or a bearer
//! token (`authorization: Bearer …`). The authorisation file maps identities
//! to the service names they may join, as globs (`*` any run, `?` one
//! character). Tokens are listed by their SHA-256, so the file holds no
//! secrets:
//!
//! ```json
//! {
//!   "read": "authenticated",
//!   "rules": [
//!     { "dns": "orders-agent.internal", "services": ["orders", "orders-*"] },
//!     { "uri": "spiffe://cluster/ns/web/sa/web", "services": ["web"] },
//!     { "token_sha256": "9f86d0…", "services": ["*"] }
//!   ]
//! }
//! ```
//!
//! `read` governs ListMembers, WatchMembers and Health on the gRPC port:
//! `anyone` (default) or `authenticated` (an identity that some rule names).
//! Without an authorisation file, every client may join any service.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Who may read the member table and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadAccess {
    /// Every client.
    #[default]
    Anyone,
    /// Clients whose identity some rule names.
    Authenticated,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    read: ReadAccess,
    rules: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    dns: Option<String>,
    uri: Option<String>,
    token_sha256: Option<String>,
    services: Vec<String>,
}

/// One verified fact about a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A DNS SAN of its verified client certificate.
    Dns(String),
    /// A URI SAN of its verified client certificate.
    Uri(String),
    /// The SHA-256 (lower-case hex) of its bearer token.
    Token(String),
}

/// Everything known about a client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Its principals (none for an anonymous client).
    pub principals: Vec<Principal>,
}

impl Identity {
    /// The identity carried by a request: client-certificate SANs and the
    /// bearer token.
    pub fn of<T>(req: &tonic::Request<T>) -> Self {
        let mut principals = Vec::new();
        if let Some(certs) = req.peer_certs()
            && let Some(leaf) = certs.first()
        {
            principals.extend(sans(leaf.as_ref()));
        }
        principals.extend(bearer(req.metadata().as_ref()));
        Identity { principals }
    }

    /// The identity of a plain HTTP request: its bearer token, if any (the
    /// HTTP port has no TLS of its own, so no certificate).
    pub fn of_http(headers: &http::HeaderMap) -> Self {
        Identity {
            principals: bearer(headers).into_iter().collect(),
        }
    }

    /// A short description for error messages (never the token).
    pub fn describe(&self) -> String {
        let names: Vec<String> = self
            .principals
            .iter()
            .map(|p| match p {
                Principal::Dns(d) => format!("dns:{d}"),
                Principal::Uri(u) => format!("uri:{u}"),
                Principal::Token(_) => "a bearer token".into(),
            })
            .collect();
        if names.is_empty() {
            "an anonymous client".into()
        } else {
            names.join(", ")
        }
    }
}

/// The principal of an `authorization: Bearer …` header (gRPC metadata
/// and HTTP alike).
fn bearer(headers: &http::HeaderMap) -> Option<Principal> {
    let token = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    Some(Principal::Token(sha256_hex(token.trim())))
}

fn sans(der: &[u8]) -> Vec<Principal> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(Principal::Dns(d.to_string())),
            GeneralName::URI(u) => Some(Principal::Uri(u.to_string())),
            _ => None,
        })
        .collect()
}

/// SHA-256 of `s`, lower-case hex.
pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, Clone)]
struct Rule {
    principal: Principal,
    services: Vec<String>,
}

/// A loaded authorisation file.
#[derive(Debug, Clone)]
pub struct Authz {
    read: ReadAccess,
    rules: Vec<Rule>,
}

impl Authz {
    /// Parses and checks an authorisation file (JSON); the error says which
    /// rule is wrong.
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let file: File = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let mut rules = Vec::new();
        for (i, r) in file.rules.into_iter().enumerate() {
            let principal = match (r.dns, r.uri, r.token_sha256) {
                (Some(d), None, None) => Principal::Dns(d),
                (None, Some(u), None) => Principal::Uri(u),
                (None, None, Some(t)) => {
                    let t = t.to_ascii_lowercase();
                    if t.len() != 64 || !t.chars().all(|c| c.is_ascii_hexdigit()) {
                        return Err(format!("rules[{i}].token_sha256: not 64 hex digits"));
                    }
                    Principal::Token(t)
                }
                _ => return Err(format!("rules[{i}]: exactly one of dns, uri, token_sha256")),
            };
            if r.services.is_empty() {
                return Err(format!("rules[{i}].services: empty"));
            }
            rules.push(Rule {
                principal,
                services: r.services,
            });
        }
        Ok(Authz {
            read: file.read,
            rules,
        })
    }

    /// Whether `id` may join (and then ping and leave) as `service`.
    pub fn may_join(&self, id: &Identity, service: &str) -> bool {
        self.rules.iter().any(|r| {
            id.principals.contains(&r.principal) && r.services.iter().any(|g| glob(g, service))
        })
    }

    /// Whether reading needs an identity (`"read": "authenticated"`).
    pub fn reads_need_identity(&self) -> bool {
        self.read == ReadAccess::Authenticated
    }

    /// Whether `id` may read the member table and health.
    pub fn may_read(&self, id: &Identity) -> bool {
        match self.read {
            ReadAccess::Anyone => true,
            ReadAccess::Authenticated => self
                .rules
                .iter()
                .any(|r| id.principals.contains(&r.principal)),
        }
    }
}

/// Glob match: `*` matches any run of characters, `?` exactly one.
pub fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The read rule of `authz` (if any) for `req`: UNAUTHENTICATED without an
/// identity, PERMISSION_DENIED for one the file does not let read.
pub fn read_allowed<T>(
    authz: Option<&Authz>,
    req: &tonic::Request<T>,
) -> Result<(), tonic::Status> {
    let Some(authz) = authz else {
        return Ok(());
    };
    let id = Identity::of(req);
    if authz.may_read(&id) {
        Ok(())
    } else if id.principals.is_empty() {
        Err(tonic::Status::unauthenticated(
            "reading needs a client certificate or a bearer token",
        ))
    } else {
        Err(tonic::Status::permission_denied(format!(
            "{} may not read",
            id.describe()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, s, want) in [
            ("*", "anything", true),
            ("orders", "orders", true),
            ("orders", "orders-x", false),
            ("orders-*", "orders-eu", true),
            ("orders-*", "orders", false),
            ("o?ders", "orders", true),
            ("*-api", "web-api", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("", "", true),
        ] {
            assert_eq!(glob(p, s), want, "{p} ~ {s}");
        }
    }

    #[test]
    fn rules_and_reads() {
        let token = sha256_hex("s3cret");
        let file = format!(
            r#"{{"read":"authenticated","rules":[
                {{"dns":"orders-agent","services":["orders","orders-*"]}},
                {{"uri":"spiffe://t/web","services":["web"]}},
                {{"token_sha256":"{token}","services":["*"]}}]}}"#
        );
        let a = Authz::parse(file.as_bytes()).unwrap();
        let dns = Identity {
            principals: vec![Principal::Dns("orders-agent".into())],
        };
        let uri = Identity {
            principals: vec![Principal::Uri("spiffe://t/web".into())],
        };
        let tok = Identity {
            principals: vec![Principal::Token(sha256_hex("s3cret"))],
        };
        let nobody = Identity::default();
        assert!(a.may_join(&dns, "orders") && a.may_join(&dns, "orders-eu"));
        assert!(!a.may_join(&dns, "web"));
        assert!(a.may_join(&uri, "web") && !a.may_join(&uri, "orders"));
        assert!(a.may_join(&tok, "anything"));
        assert!(!a.may_join(&nobody, "orders"));
        assert!(a.may_read(&dns) && !a.may_read(&nobody));
        assert_eq!(nobody.describe(), "an anonymous client");
        assert!(!tok.describe().contains("s3cret"));
    }

    #[test]
    fn bad_files_name_the_rule() {
        let bad = [
            (r#"{"rules":[{"services":["*"]}]}"#, "rules[0]"),
            (
                r#"{"rules":[{"dns":"a","uri":"b","services":["*"]}]}"#,
                "rules[0]",
            ),
            (
                r#"{"rules":[{"token_sha256":"xyz","services":["*"]}]}"#,
                "token_sha256",
            ),
            (r#"{"rules":[{"dns":"a","services":[]}]}"#, "services"),
            (r#"{"rules":[],"extra":1}"#, "extra"),
        ];
        for (text, want) in bad {
            let e = Authz::parse(text.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
