//! The ADS service over real TCP, spoken by envoy-types' generated client:
//! the resources a member's endpoint makes, pushes on every change of the
//! endpoint set, ACK/NACK and nonces, unknown services, unsubscribe, the
//! stream limits and the read rule. (Stock grpcio and grpc-js clients are
//! in tests/interop/test_xds.py.)

mod common;

use common::ads::{Ads, CDS, EDS, LDS, addrs};
use common::*;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest,
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use heartbeat::config::ServerConfig;
use heartbeat::pb::heartbeat::v1::{Join, ListMembersRequest};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

async fn open(server: &TestServer) -> Result<Ads, tonic::Status> {
    Ads::open_on(server.channel().await).await
}

async fn member(server: &TestServer, instance: &str, endpoint: &str) -> Beat {
    let mut client = server.client().await;
    let join = Join {
        service: "web".into(),
        instance: instance.into(),
        endpoint: endpoint.into(),
        ..Default::default()
    };
    Beat::join_with(&mut client, join).await.0
}

#[tokio::test]
async fn a_listener_a_cluster_and_the_endpoints_of_live_serving_members() {
    let server = TestServer::start().await;
    let _a = member(&server, "a", "10.0.0.1:8080").await;
    let mut ads = open(&server).await.unwrap();

    ads.ask(LDS, &["web"], "").await;
    let r = ads.next().await;
    assert_eq!((r.type_url.as_str(), r.resources.len()), (LDS, 1));
    let listener = Listener::decode(r.resources[0].value.as_slice()).unwrap();
    assert_eq!(listener.name, "web");
    let hcm = listener.api_listener.unwrap().api_listener.unwrap();
    let hcm = HttpConnectionManager::decode(hcm.value.as_slice()).unwrap();
    let Some(http_connection_manager::RouteSpecifier::RouteConfig(routes)) = hcm.route_specifier
    else {
        panic!("an inline route table")
    };
    assert_eq!(routes.virtual_hosts[0].domains, ["*"]);
    assert_eq!(hcm.http_filters[0].name, "envoy.filters.http.router");
    ads.ask(LDS, &["web"], &r.nonce).await;

    ads.ask(CDS, &["web"], "").await;
    let r = ads.next().await;
    let cluster = Cluster::decode(r.resources[0].value.as_slice()).unwrap();
    assert_eq!(cluster.name, "web");
    assert_eq!(cluster.eds_cluster_config.unwrap().service_name, "web");

    let r = ads.endpoints(&["web"]).await;
    assert_eq!(addrs(&r), ["10.0.0.1:8080"]);
    ads.ask(EDS, &["web"], &r.nonce).await;

    // Another member: pushed. NOT_SERVING: pushed without it.
    let mut b = member(&server, "b", "[::1]:9090").await;
    let r2 = ads.next().await;
    assert_eq!(addrs(&r2), ["10.0.0.1:8080", "[::1]:9090"]);
    assert_ne!(r2.version_info, r.version_info, "one version per push");
    b.send(ping_status(1, 2)).await;
    b.pong().await;
    let r3 = ads.next().await;
    assert_eq!(addrs(&r3), ["10.0.0.1:8080"]);

    // ListMembers shows the endpoint too.
    let list = server
        .client()
        .await
        .list_members(ListMembersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let endpoints: Vec<&str> = list.members.iter().map(|m| m.endpoint.as_str()).collect();
    assert_eq!(endpoints, ["10.0.0.1:8080", "[::1]:9090"]);
}

#[tokio::test]
async fn an_ack_is_not_answered_and_a_nack_is_counted() {
    let (server, registry) = TestServer::with_metrics(ServerConfig::default()).await;
    let _a = member(&server, "a", "10.0.0.1:1").await;
    let mut ads = open(&server).await.unwrap();
    let r = ads.endpoints(&["web"]).await;
    // ACK, then NACK of the same response: neither is answered, so the next
    // response is the push of the next change.
    ads.ask(EDS, &["web"], &r.nonce).await;
    let nack = DiscoveryRequest {
        type_url: EDS.into(),
        resource_names: vec!["web".into()],
        version_info: r.version_info.clone(),
        response_nonce: r.nonce.clone(),
        error_detail: Some(RpcStatus {
            code: 3,
            message: "test rejects it".into(),
            details: vec![],
        }),
        ..Default::default()
    };
    ads.tx.send(nack).await.unwrap();
    // A request with an old nonce is stale: ignored whole.
    ads.ask(EDS, &["web", "db"], "0").await;
    let _b = member(&server, "b", "10.0.0.2:1").await;
    let r2 = ads.next().await;
    assert_eq!(addrs(&r2), ["10.0.0.1:1", "10.0.0.2:1"]);
    assert_eq!(r2.resources.len(), 1, "the stale subscription was ignored");
    let text = heartbeat::metrics::encode(&registry);
    assert!(
        text.contains(r#"heartbeat_xds_nacks_total{type="EDS"} 1"#),
        "{text}"
    );
    assert!(text.contains("heartbeat_xds_streams 1"), "{text}");
}

#[tokio::test]
async fn unknown_services_are_empty_and_an_empty_list_unsubscribes() {
    let server = TestServer::start().await;
    let mut ads = open(&server).await.unwrap();
    ads.ask(LDS, &["nobody", "not a service!"], "").await;
    let r = ads.next().await;
    assert_eq!(r.resources.len(), 1, "a listener for a valid name only");
    let r = ads.endpoints(&["nobody"]).await;
    assert!(
        addrs(&r).is_empty(),
        "no members: an empty set, not an error"
    );
    // Unsubscribe, then a member of "nobody": nothing is pushed for it.
    ads.ask(EDS, &[], &r.nonce).await;
    let r = ads.next().await;
    assert!(r.resources.is_empty(), "unsubscribed: not a wildcard");
    ads.ask(EDS, &[], &r.nonce).await;
    let mut client = server.client().await;
    let _m = Beat::join_with(
        &mut client,
        Join {
            service: "nobody".into(),
            instance: "x".into(),
            endpoint: "10.0.0.9:1".into(),
            ..Default::default()
        },
    )
    .await;
    ads.ask(CDS, &["web"], "").await;
    let r = ads.next().await;
    assert_eq!(
        r.type_url, CDS,
        "the next response is the CDS asked for, no EDS push"
    );
}

#[tokio::test]
async fn ads_streams_count_against_the_watch_limits() {
    let cfg = ServerConfig {
        max_watches_per_connection: 2,
        ..ServerConfig::default()
    };
    let server = TestServer::with(cfg).await;
    let mut client = AggregatedDiscoveryServiceClient::new(server.channel().await);
    let mut open = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = mpsc::channel::<DiscoveryRequest>(1);
        let s = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap();
        open.push((tx, s));
    }
    let (_tx, rx) = mpsc::channel::<DiscoveryRequest>(1);
    let e = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        e.message().contains("--max-watches-per-connection"),
        "{}",
        e.message()
    );
    // Delta is not served.
    let (_dtx, drx) = mpsc::channel::<DeltaDiscoveryRequest>(1);
    let e = client
        .delta_aggregated_resources(ReceiverStream::new(drx))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
}

#[tokio::test]
async fn ads_follows_the_read_rule() {
    let authz = r#"{"read":"authenticated","rules":[]}"#;
    let cfg = ServerConfig {
        authz: Some(heartbeat::authz::Authz::parse(authz.as_bytes()).unwrap()),
        ..ServerConfig::default()
    };
    let server = TestServer::with(cfg).await;
    let e = open(&server).await.err().expect("refused");
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn shutdown_ends_ads_streams_unavailable() {
    let mut server = TestServer::start().await;
    let mut ads = open(&server).await.unwrap();
    ads.endpoints(&["web"]).await;
    server.begin_shutdown();
    let e = within("the stream ends", ads.rx.message())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
}
