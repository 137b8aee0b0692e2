//! The xDS bootstrap file gRPC clients read (gRFC A27: `GRPC_XDS_BOOTSTRAP`
//! names it, or `GRPC_XDS_BOOTSTRAP_CONFIG` holds it): the heartbeat
//! server as the one xDS server, plaintext or TLS (gRFC A65 `tls`
//! credentials) by the URL's scheme, and a node id.

use serde_json::json;

/// PEM files an xDS client uses towards a TLS server (gRFC A65's `tls`
/// channel credentials); unset: the system roots, no client certificate.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// CA the server's certificate must chain to.
    pub ca: Option<String>,
    /// The client's certificate chain and key, for mTLS.
    pub identity: Option<(String, String)>,
}

/// The bootstrap for clients of the server at `server` (`host:port`,
/// `http://host:port` or `https://host:port`); `node` names the client in
/// the server's logs.
pub fn bootstrap(server: &str, node: &str, tls: &TlsFiles) -> Result<String, String> {
    let (secure, rest) = match server.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        Some((scheme, _)) => {
            return Err(format!(
                "--server {server:?}: the scheme {scheme:?} is not http or https"
            ));
        }
        None => (tls.ca.is_some() || tls.identity.is_some(), server),
    };
    let authority = rest.trim_end_matches('/');
    crate::validate::endpoint("--server", authority).map_err(|e| e.to_string())?;
    let creds = if secure {
        let mut config = serde_json::Map::new();
        if let Some(ca) = &tls.ca {
            config.insert("ca_certificate_file".into(), ca.as_str().into());
        }
        if let Some((cert, key)) = &tls.identity {
            config.insert("certificate_file".into(), cert.as_str().into());
            config.insert("private_key_file".into(), key.as_str().into());
        }
        json!([{ "type": "tls", "config": config }])
    } else {
        json!([{ "type": "insecure" }])
    };
    let doc = json!({
        "xds_servers": [{
            "server_uri": authority,
            "channel_creds": creds,
            "server_features": [],
        }],
        "node": { "id": node, "cluster": "heartbeat", "locality": {} },
    });
    Ok(serde_json::to_string_pretty(&doc).expect("JSON of plain values"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_and_tls_servers() {
        let b: serde_json::Value =
            serde_json::from_str(&bootstrap("127.0.0.1:50051", "n", &TlsFiles::default()).unwrap())
                .unwrap();
        assert_eq!(b["xds_servers"][0]["server_uri"], "127.0.0.1:50051");
        assert_eq!(b["xds_servers"][0]["channel_creds"][0]["type"], "insecure");
        assert_eq!(b["node"]["id"], "n");
        let tls = TlsFiles {
            ca: Some("ca.pem".into()),
            identity: None,
        };
        let b: serde_json::Value =
            serde_json::from_str(&bootstrap("https://hb.example:443", "n", &tls).unwrap()).unwrap();
        assert_eq!(b["xds_servers"][0]["server_uri"], "hb.example:443");
        let creds = &b["xds_servers"][0]["channel_creds"][0];
        assert_eq!(creds["type"], "tls");
        assert_eq!(creds["config"]["ca_certificate_file"], "ca.pem");
    }

    #[test]
    fn bad_servers_name_the_flag() {
        for bad in ["ftp://x:1", "nohost", "x:0", "http://x:99999"] {
            let e = bootstrap(bad, "n", &TlsFiles::default()).unwrap_err();
            assert!(e.contains("--server"), "{bad}: {e}");
        }
    }
}
