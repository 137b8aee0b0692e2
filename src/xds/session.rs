//! One ADS stream's protocol state (state of the world, xDS protocol
//! "ACK/NACK and resource type instance version"): per resource type the
//! names subscribed and the nonce of the last response; per service of EDS
//! the generation last sent. Pure: requests and hub generations in,
//! responses out; the stream task does the I/O.
//!
//! - A request whose `response_nonce` is not the last one sent for its type
//!   is stale and ignored whole (the client has not seen that response yet).
//! - `error_detail` set is a NACK of that version: logged and counted, and
//!   not answered by sending the same again.
//! - A changed name set (or the first request of a type) is answered with
//!   every subscribed resource of the type. An empty set after a
//!   subscription unsubscribes; it is never a wildcard.
//! - Listeners and Clusters are answered for any valid service name (so a
//!   service with no members yet is an empty endpoint set, not an error);
//!   other names are left out, which clients report as "does not exist".

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tonic::Status as GrpcStatus;

use super::hub::Hub;
use super::resources::{self, Kind};

/// Names of one type a stream may subscribe to.
pub const MAX_NAMES: usize = 128;

/// What one request meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// The subscription of this type changed: send it.
    Push(Kind),
    /// The client accepted the last response of this type.
    Ack(Kind),
    /// The client rejected `version` of this type.
    Nack {
        /// The type.
        kind: Kind,
        /// The version rejected.
        version: String,
        /// The client's reason.
        message: String,
    },
    /// An answer to an older response; ignored.
    Stale(Kind),
    /// A type heartbeat does not serve.
    Unknown(String),
}

#[derive(Debug, Default)]
struct Subscription {
    asked: bool,
    names: BTreeSet<String>,
    nonce: String,
    /// EDS: each service's generation as last sent.
    sent: BTreeMap<String, u64>,
}

/// The protocol state of one stream.
#[derive(Debug, Default)]
pub struct Session {
    subs: [Subscription; 3],
    pushes: u64,
}

fn index(kind: Kind) -> usize {
    match kind {
        Kind::Listener => 0,
        Kind::Cluster => 1,
        Kind::Endpoints => 2,
    }
}

fn served(name: &str) -> bool {
    crate::validate::service("resource_names", name).is_ok()
}

impl Session {
    /// Takes one request in.
    pub fn request(&mut self, req: DiscoveryRequest) -> Result<Handled, GrpcStatus> {
        let Some(kind) = Kind::of(&req.type_url) else {
            return Ok(Handled::Unknown(req.type_url));
        };
        let sub = &mut self.subs[index(kind)];
        if !req.response_nonce.is_empty() && req.response_nonce != sub.nonce {
            return Ok(Handled::Stale(kind));
        }
        if req.resource_names.len() > MAX_NAMES {
            return Err(GrpcStatus::resource_exhausted(format!(
                "resource_names: {} names of {}; at most {MAX_NAMES} per type on one stream",
                req.resource_names.len(),
                kind.name()
            )));
        }
        let names: BTreeSet<String> = req.resource_names.into_iter().collect();
        let changed = !sub.asked || names != sub.names;
        sub.asked = true;
        sub.names = names;
        if changed {
            sub.sent.retain(|n, _| sub.names.contains(n));
            return Ok(Handled::Push(kind));
        }
        match req.error_detail {
            Some(e) => Ok(Handled::Nack {
                kind,
                version: req.version_info,
                message: e.message,
            }),
            None => Ok(Handled::Ack(kind)),
        }
    }

    /// Whether a subscribed service's endpoints changed since last sent.
    pub fn endpoints_due(&self, hub: &Hub) -> bool {
        let sub = &self.subs[index(Kind::Endpoints)];
        sub.asked
            && sub
                .names
                .iter()
                .filter(|n| served(n))
                .any(|n| hub.changed(n) != sub.sent.get(n).copied().unwrap_or(0))
    }

    /// The response of `kind` now: every subscribed resource, a new
    /// version and nonce.
    pub fn respond(&mut self, kind: Kind, hub: &Hub) -> DiscoveryResponse {
        self.pushes += 1;
        let stamp = self.pushes.to_string();
        let sub = &mut self.subs[index(kind)];
        let mut resources = Vec::with_capacity(sub.names.len());
        for name in sub.names.iter().filter(|n| served(n)) {
            resources.push(match kind {
                Kind::Listener => resources::listener(name),
                Kind::Cluster => resources::cluster(name),
                Kind::Endpoints => {
                    let endpoints = hub.endpoints(name);
                    sub.sent.insert(name.clone(), endpoints.changed);
                    resources::assignment(name, &endpoints)
                }
            });
        }
        sub.nonce = stamp.clone();
        DiscoveryResponse {
            version_info: stamp.clone(),
            resources,
            type_url: kind.type_url().to_owned(),
            nonce: stamp,
            ..Default::default()
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
