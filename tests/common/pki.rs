//! Certificates made by the tests (rcgen), never committed: a CA, a server
//! leaf for localhost and 127.0.0.1, and client leaves with the identities
//! the authorisation tests use.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};

pub struct Pki {
    pub ca: String,
    pub server: (String, String),
    /// A server leaf for the DNS name `localhost` only (no IP address).
    pub server_dns_only: (String, String),
    pub orders: (String, String),
    pub web: (String, String),
}

fn leaf(issuer: &CertifiedIssuer<'_, KeyPair>, sans: Vec<SanType>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans;
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

pub fn pki() -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    Pki {
        ca: ca.pem(),
        server: leaf(
            &ca,
            vec![
                dns("localhost"),
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
            ],
        ),
        server_dns_only: leaf(&ca, vec![dns("localhost")]),
        orders: leaf(&ca, vec![dns("orders-agent")]),
        web: leaf(
            &ca,
            vec![SanType::URI("spiffe://test/web".try_into().unwrap())],
        ),
    }
}

/// A self-signed certificate and key for localhost and 127.0.0.1, as
/// `openssl req -x509` makes them.
pub fn self_signed() -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}
