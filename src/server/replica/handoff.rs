//! Drain or hold (SPEC §7.6, CLUSTER.md §2.8): while this replica's
//! authority is not OK, it asks its peers, every second, whether they
//! accept Beat streams (the standard `Health/Check("heartbeat.v1.Heartbeat")`
//! at their advertised addresses, 500 ms each).
//!
//! - A peer is SERVING (on two probes in a row): this replica is the one cut off. Its members are
//!   asked to move (Drain with a spread `reconnect_after`, then
//!   UNAVAILABLE) and take over at the peer with no flap: the cluster
//!   declares orphans DEAD no earlier than this replica's lease end plus
//!   one timeout, and this starts at half the lease.
//! - None is: etcd itself is probably down. It holds: streams stay up and
//!   nobody can write DEAD anywhere.
//!
//! Probes are plaintext: a cluster with TLS on its gRPC ports serves
//! `--health-listen` for them (and advertises that address) or holds.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::{Authority, Replica};
use crate::liveness::StreamEnd;
use crate::pb::health::v1::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use crate::server::HEARTBEAT_SERVICE;
use crate::server::state::Shared;

const EVERY: Duration = Duration::from_secs(1);
const PROBE_DEADLINE: Duration = Duration::from_millis(500);

/// Runs until aborted.
pub(super) async fn run(shared: Arc<Shared>, r: Arc<Replica>) {
    let mut changes = r.authority.subscribe();
    let mut holding = false;
    let mut seen_serving = false;
    // When etcd fails for everyone, every replica's doubt begins within one
    // keepalive period of the others' (each sends every TTL/5): a peer that
    // still answers SERVING later than that was heard by etcd after this
    // replica was not.
    let settle = r.cfg.lease_ttl / 5 + Duration::from_millis(250);
    loop {
        let authority = *changes.borrow_and_update();
        if matches!(authority, Authority::Ok | Authority::Starting) {
            holding = false;
            seen_serving = false;
            if changes.changed().await.is_err() {
                return;
            }
            if *changes.borrow() != Authority::Ok {
                tokio::select! {
                    _ = tokio::time::sleep(settle) => {}
                    _ = changes.changed() => {}
                }
            }
            continue;
        }
        let peer = serving_peer(&shared, &r).await;
        // A peer must be SERVING on two probes in a row: when etcd comes
        // back, replicas become OK a keepalive apart, and the one still in
        // doubt must not drain its members to the one that just recovered.
        let confirmed = peer.is_some() && seen_serving;
        seen_serving = peer.is_some();
        match peer.filter(|_| confirmed) {
            Some(peer) => {
                let moved = shared.with(|i| i.streams.end_all(StreamEnd::Moved));
                if moved > 0 {
                    warn!(
                        members = moved,
                        %peer,
                        "cut off from etcd while a peer is not: asking this replica's members to move"
                    );
                }
            }
            None if !holding && !seen_serving => {
                holding = true;
                info!(
                    "no peer accepts Beat streams either (etcd itself is probably down): holding every stream"
                );
            }
            None => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = changes.changed() => {}
        }
    }
}

/// The advertised address of a peer that answers SERVING, if any.
async fn serving_peer(shared: &Shared, r: &Replica) -> Option<String> {
    let peers: Vec<String> = shared.with(|i| {
        let records = i.cluster.as_ref()?.records.as_ref()?;
        Some(
            records
                .replicas
                .iter()
                .filter(|(id, _)| **id != r.id)
                .map(|(_, p)| p.stored.advertise.clone())
                .filter(|a| !a.is_empty())
                .collect(),
        )
    })?;
    for peer in peers {
        if probe(&peer).await {
            return Some(peer);
        }
    }
    None
}

async fn probe(peer: &str) -> bool {
    let url = if peer.contains("://") {
        peer.to_owned()
    } else {
        format!("http://{peer}")
    };
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url) else {
        return false;
    };
    let check = async {
        let channel = endpoint
            .connect_timeout(PROBE_DEADLINE)
            .connect()
            .await
            .ok()?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: HEARTBEAT_SERVICE.into(),
            })
            .await
            .ok()?;
        Some(answer.into_inner().status == ServingStatus::Serving as i32)
    };
    matches!(
        tokio::time::timeout(PROBE_DEADLINE, check).await,
        Ok(Some(true))
    )
}
