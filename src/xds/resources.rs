//! The three resources a gRPC client asks for per service name, in the
//! shapes stock grpcio and grpc-js accept (measured, see issue 13): a
//! Listener whose `api_listener` is an HttpConnectionManager with an
//! inline route table sending everything to the cluster of the same name
//! and the router filter; a Cluster of type EDS fed over ADS with round
//! robin; a ClusterLoadAssignment with one weighted locality (without the
//! weight nothing is routed) of IP:port endpoints.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, HealthStatus, Locality,
    SocketAddress, address, config_source, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, endpoint, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{ApiListener, Listener};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use prost::{Message, Name};

use super::hub::Endpoints;

/// A resource type of the state-of-the-world protocol that heartbeat serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// LDS: `envoy.config.listener.v3.Listener`.
    Listener,
    /// CDS: `envoy.config.cluster.v3.Cluster`.
    Cluster,
    /// EDS: `envoy.config.endpoint.v3.ClusterLoadAssignment`.
    Endpoints,
}

impl Kind {
    /// Every kind, in the order clients subscribe.
    pub const ALL: [Kind; 3] = [Kind::Listener, Kind::Cluster, Kind::Endpoints];

    /// The `type_url` of the kind.
    pub fn type_url(self) -> &'static str {
        match self {
            Kind::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            Kind::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            Kind::Endpoints => "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        }
    }

    /// The kind of `type_url`, if heartbeat serves it.
    pub fn of(type_url: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.type_url() == type_url)
    }

    /// Short name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Listener => "LDS",
            Kind::Cluster => "CDS",
            Kind::Endpoints => "EDS",
        }
    }
}

fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// The Listener `service`: every request of a channel to
/// `xds:///<service>` goes to the cluster `service`.
pub fn listener(service: &str) -> Any {
    let route = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix(String::new())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(service.to_owned())),
            ..Default::default()
        })),
        ..Default::default()
    };
    let manager = HttpConnectionManager {
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
            RouteConfiguration {
                name: service.to_owned(),
                virtual_hosts: vec![VirtualHost {
                    name: service.to_owned(),
                    domains: vec!["*".to_owned()],
                    routes: vec![route],
                    ..Default::default()
                }],
                ..Default::default()
            },
        )),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".to_owned(),
            config_type: Some(http_filter::ConfigType::TypedConfig(
                any(&Router::default()),
            )),
            ..Default::default()
        }],
        ..Default::default()
    };
    any(&Listener {
        name: service.to_owned(),
        api_listener: Some(ApiListener {
            api_listener: Some(any(&manager)),
        }),
        ..Default::default()
    })
}

/// The Cluster `service`: its endpoints come over this same ADS stream,
/// balanced round robin.
pub fn cluster(service: &str) -> Any {
    any(&Cluster {
        name: service.to_owned(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ConfigSource {
                resource_api_version: ApiVersion::V3 as i32,
                config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
                    AggregatedConfigSource {},
                )),
                ..Default::default()
            }),
            service_name: service.to_owned(),
        }),
        lb_policy: cluster::LbPolicy::RoundRobin as i32,
        ..Default::default()
    })
}

fn address(a: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: a.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                a.port(),
            ))),
            ..Default::default()
        })),
    }
}

/// The ClusterLoadAssignment `service`: one locality of the routable
/// members, each HEALTHY at its first address (the others as additional
/// addresses, for clients that try several).
pub fn assignment(service: &str, endpoints: &Endpoints) -> Any {
    let lb_endpoints = endpoints
        .members
        .iter()
        .map(|(_, addrs)| LbEndpoint {
            health_status: HealthStatus::Healthy as i32,
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(address(addrs[0])),
                additional_addresses: addrs[1..]
                    .iter()
                    .map(|&a| endpoint::AdditionalAddress {
                        address: Some(address(a)),
                    })
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    any(&ClusterLoadAssignment {
        cluster_name: service.to_owned(),
        endpoints: vec![LocalityLbEndpoints {
            locality: Some(Locality {
                region: "heartbeat".to_owned(),
                ..Default::default()
            }),
            lb_endpoints,
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            ..Default::default()
        }],
        ..Default::default()
    })
}
