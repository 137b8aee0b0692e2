//! TLS, mTLS identities and the authorisation file, with certificates made
//! by the test (rcgen), never committed: members join only as the services
//! their identity allows (PERMISSION_DENIED otherwise), reads follow the
//! read rule, plaintext never reaches the TLS port, and the plaintext
//! health-only port serves kubelet probes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::pki::{Pki, pki};
use common::*;
use heartbeat::authz::{Authz, sha256_hex};
use heartbeat::client::{Client, ClientConfig, ClientState, ClientTls};
use heartbeat::config::{ServerConfig, TlsFiles};
use heartbeat::pb::health::v1::{HealthCheckRequest, health_client::HealthClient};
use heartbeat::pb::heartbeat::v1::{ListMembersRequest, heartbeat_client::HeartbeatClient};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const TOKEN: &str = "batch-token-123";

struct Secure {
    addr: SocketAddr,
    health: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), heartbeat::server::ServeError>>,
}

async fn secure_server(pki: &Pki) -> Secure {
    let authz = format!(
        r#"{{"read":"authenticated","rules":[
            {{"dns":"orders-agent","services":["orders","orders-*"]}},
            {{"uri":"spiffe://test/web","services":["web"]}},
            {{"token_sha256":"{}","services":["batch-*"]}}]}}"#,
        sha256_hex(TOKEN)
    );
    let cfg = ServerConfig {
        tls: Some(TlsFiles {
            cert: pki.server.0.clone().into_bytes(),
            key: pki.server.1.clone().into_bytes(),
            client_ca: Some(pki.ca.clone().into_bytes()),
        }),
        authz: Some(Authz::parse(authz.as_bytes()).unwrap()),
        ..fast()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, health_addr) = (listener.local_addr().unwrap(), health.local_addr().unwrap());
    let (tx, rx) = oneshot::channel();
    let server = heartbeat::server::Server::new(cfg).health_listener(health);
    let task = tokio::spawn(server.serve(listener, async {
        let _ = rx.await;
    }));
    Secure {
        addr,
        health: health_addr,
        stop: Some(tx),
        task,
    }
}

impl Secure {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        within("shutdown", self.task).await.unwrap().unwrap();
    }
}

async fn tls_channel(
    addr: SocketAddr,
    pki: &Pki,
    identity: Option<&(String, String)>,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let ep = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap();
    within("TLS connect", ep.connect())
        .await
        .map_err(|e| format!("{e:?}"))
}

fn member(
    addr: SocketAddr,
    pki: &Pki,
    service: &str,
    identity: Option<&(String, String)>,
    token: Option<&str>,
) -> Client {
    let mut cfg = ClientConfig::new([format!("https://{addr}")], service, "i-1").max_retries(1);
    cfg.tls = Some(ClientTls {
        ca: pki.ca.clone().into_bytes(),
        identity: identity.map(|(c, k)| (c.clone().into_bytes(), k.clone().into_bytes())),
        server_name: None,
    });
    cfg.token = token.map(str::to_owned);
    Client::spawn(cfg).unwrap()
}

async fn outcome(c: &Client) -> ClientState {
    let mut rx = c.subscribe();
    within(
        "a join outcome",
        rx.wait_for(|s| matches!(s.state, ClientState::Online | ClientState::Offline)),
    )
    .await
    .unwrap()
    .state
}

#[tokio::test]
async fn members_join_only_as_their_identity_allows() {
    let pki = pki();
    let server = secure_server(&pki).await;
    let cases = [
        ("orders", Some(&pki.orders), None, ClientState::Online),
        ("orders-eu", Some(&pki.orders), None, ClientState::Online),
        ("web", Some(&pki.orders), None, ClientState::Offline),
        ("web", Some(&pki.web), None, ClientState::Online),
        ("batch-7", None, Some(TOKEN), ClientState::Online),
        ("batch-7", None, Some("wrong-token"), ClientState::Offline),
        ("orders", None, None, ClientState::Offline),
    ];
    for (service, id, token, want) in cases {
        let c = member(server.addr, &pki, service, id, token);
        let got = outcome(&c).await;
        assert_eq!(
            got,
            want,
            "{service} with cert {} token {token:?}",
            id.is_some()
        );
        if want == ClientState::Offline {
            let err = c.status().last_error.unwrap_or_default();
            assert!(
                err.contains("PermissionDenied") && err.contains(service),
                "{err}"
            );
        } else {
            c.leave().await.unwrap();
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn reads_follow_the_read_rule_and_plaintext_is_refused() {
    let pki = pki();
    let server = secure_server(&pki).await;
    // Authenticated reader.
    let mut reader = HeartbeatClient::new(
        tls_channel(server.addr, &pki, Some(&pki.orders))
            .await
            .unwrap(),
    );
    reader
        .list_members(ListMembersRequest::default())
        .await
        .unwrap();
    // Anonymous TLS client: no reads, no health on the gRPC port.
    let anon = tls_channel(server.addr, &pki, None).await.unwrap();
    let err = HeartbeatClient::new(anon.clone())
        .list_members(ListMembersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = HealthClient::new(anon)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // A certificate from another CA is refused in the handshake.
    let stranger = common::pki::pki().orders;
    let refused = match tls_channel(server.addr, &pki, Some(&stranger)).await {
        Err(_) => true,
        Ok(ch) => HeartbeatClient::new(ch)
            .list_members(ListMembersRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from another CA is refused");
    // Plaintext on the TLS port never gets an answer.
    let plain = Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(2));
    let plain_ok = match tokio::time::timeout(Duration::from_secs(5), plain.connect()).await {
        Ok(Ok(ch)) => HealthClient::new(ch)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok(),
        _ => false,
    };
    assert!(!plain_ok);
    // The plaintext health-only port serves kubelet probes, without authorisation.
    let mut probe = HealthClient::new(
        within(
            "connect",
            Channel::from_shared(format!("http://{}", server.health))
                .unwrap()
                .connect(),
        )
        .await
        .unwrap(),
    );
    assert_eq!(check(&mut probe, "").await, Ok(1));
    assert_eq!(check(&mut probe, "heartbeat.v1.Heartbeat").await, Ok(1));
    server.stop().await;
}

#[tokio::test]
async fn the_plaintext_health_port_shows_no_member_names_when_reads_need_identity() {
    let pki = pki();
    let server = secure_server(&pki).await;
    let m = member(server.addr, &pki, "orders", Some(&pki.orders), None);
    assert_eq!(outcome(&m).await, ClientState::Online);
    // An authenticated reader on the gRPC port sees the member's names ...
    let mut reader = HealthClient::new(
        tls_channel(server.addr, &pki, Some(&pki.orders))
            .await
            .unwrap(),
    );
    assert_eq!(check(&mut reader, "orders").await, Ok(1));
    // ... the anonymous plaintext port only the server's own.
    let mut probe = HealthClient::new(connect_addr(&server.health.to_string()).await);
    assert_eq!(check(&mut probe, "").await, Ok(1));
    assert_eq!(check(&mut probe, "heartbeat.v1.Heartbeat").await, Ok(1));
    assert_eq!(check(&mut probe, "orders").await, Err(Code::NotFound));
    assert_eq!(check(&mut probe, "orders/i-1").await, Err(Code::NotFound));
    let listed = probe
        .list(heartbeat::pb::health::v1::HealthListRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<_> = listed.statuses.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["", "heartbeat.v1.Heartbeat"]);
    let mut watch = probe
        .watch(HealthCheckRequest {
            service: "orders".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = within("the first Watch message", watch.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status, 3, "SERVICE_UNKNOWN");
    m.leave().await.unwrap();
    server.stop().await;
}
