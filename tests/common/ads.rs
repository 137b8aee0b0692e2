//! An ADS client (envoy-types' generated one) driven request by request,
//! and the endpoints of an EDS response as `ip:port` strings.

use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use envoy_types::pb::envoy::service::discovery::v3::{
    DiscoveryRequest, DiscoveryResponse,
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::within;

pub const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

pub struct Ads {
    pub tx: mpsc::Sender<DiscoveryRequest>,
    pub rx: tonic::Streaming<DiscoveryResponse>,
}

impl Ads {
    pub async fn open_on(channel: Channel) -> Result<Self, tonic::Status> {
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(8);
        let rx = within(
            "the ADS stream opens",
            client.stream_aggregated_resources(ReceiverStream::new(rx)),
        )
        .await?
        .into_inner();
        Ok(Self { tx, rx })
    }

    pub async fn ask(&mut self, type_url: &str, names: &[&str], nonce: &str) {
        let req = DiscoveryRequest {
            type_url: type_url.into(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            response_nonce: nonce.into(),
            ..Default::default()
        };
        self.tx.send(req).await.unwrap();
    }

    pub async fn next(&mut self) -> DiscoveryResponse {
        within("an ADS response", self.rx.message())
            .await
            .unwrap()
            .expect("the stream is open")
    }

    /// Subscribes EDS to `names` and returns the first response.
    pub async fn endpoints(&mut self, names: &[&str]) -> DiscoveryResponse {
        self.ask(EDS, names, "").await;
        let r = self.next().await;
        assert_eq!(r.type_url, EDS);
        r
    }
}

/// The `ip:port`s of a ClusterLoadAssignment response's first resource.
pub fn addrs(r: &DiscoveryResponse) -> Vec<String> {
    let cla = ClusterLoadAssignment::decode(r.resources[0].value.as_slice()).unwrap();
    assert_eq!(cla.endpoints.len(), 1, "one locality");
    let locality = &cla.endpoints[0];
    assert!(
        locality.load_balancing_weight.is_some(),
        "a locality without weight gets no traffic"
    );
    locality
        .lb_endpoints
        .iter()
        .map(|e| {
            assert_eq!(e.health_status, 1, "HEALTHY");
            let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
                panic!("an endpoint");
            };
            let sa = ep.address.as_ref().unwrap().address.as_ref().unwrap();
            let envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(sa) = sa
            else {
                panic!("a socket address")
            };
            let Some(
                envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(
                    port,
                ),
            ) = sa.port_specifier
            else {
                panic!("a port")
            };
            let ip: std::net::IpAddr = sa.address.parse().expect("an IP, never a name");
            std::net::SocketAddr::new(ip, port as u16).to_string()
        })
        .collect()
}
