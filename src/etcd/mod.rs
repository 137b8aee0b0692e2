//! A thin client of etcd's v3 API for cluster mode (SPEC §7): KV reads,
//! writes and compare-and-swap transactions, watches, and leases with a
//! keeper that survives a frozen etcd member.
//!
//! Why not the `etcd-client` crate: its build script needs `protoc`, and
//! the default build must not (SPEC §7); and its lease keeper has no
//! response deadline, which lost its lease here when the member its stream
//! was on froze (CLUSTER.md). So build.rs compiles the subset of etcd's own
//! protos that heartbeat uses (`proto/etcd/`) with protox, like ours, and
//! this module adds the two things that matter: a deadline on every call
//! and rotation to the next endpoint when one fails. On top: the lease
//! keeper (`keeper.rs`) and the prefix mirror (`mirror.rs`).

mod keeper;
mod mirror;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub use keeper::{KeeperState, LeaseKeeper};
pub use mirror::{Mirrored, history, mirror, prefix_end};

/// Generated etcd API (clients only).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    /// Keys, values and their events.
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    /// KV, Watch and Lease.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

use pb::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse, kv_client::KvClient,
    lease_client::LeaseClient, watch_client::WatchClient,
};

/// A failed etcd call: which endpoint, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("etcd {endpoint}: {cause}")]
pub struct EtcdError {
    /// The endpoint the call went to.
    pub endpoint: String,
    /// Code and message (or "no answer within …").
    pub cause: String,
}

/// Clients of every endpoint; calls go to the current one, and a failure
/// moves the next call to the next endpoint.
#[derive(Debug)]
pub struct Etcd {
    endpoints: Vec<String>,
    channels: Vec<Channel>,
    current: AtomicUsize,
    deadline: Duration,
}

/// `host:port` or `http(s)://host:port` → a URL (https when `tls`).
fn url(endpoint: &str, tls: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else if tls {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

impl Etcd {
    /// Clients of `endpoints` (connected lazily, reconnecting by
    /// themselves); every call is bounded by `deadline`.
    pub fn new(endpoints: &[String], deadline: Duration) -> Result<Self, String> {
        Self::with_tls(endpoints, deadline, None)
    }

    /// [`Etcd::new`] over TLS when `tls` is given (`https://` endpoints;
    /// a bare `host:port` then means https).
    pub fn with_tls(
        endpoints: &[String],
        deadline: Duration,
        tls: Option<&crate::config::EtcdTls>,
    ) -> Result<Self, String> {
        if endpoints.is_empty() {
            return Err("no etcd endpoint".into());
        }
        let tls = tls.map(|t| {
            let mut cfg = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&t.ca));
            if let Some((cert, key)) = &t.identity {
                cfg = cfg.identity(Identity::from_pem(cert, key));
            }
            cfg
        });
        let channels = endpoints
            .iter()
            .map(|e| {
                let url = url(e, tls.is_some());
                let ep = Endpoint::from_shared(url)
                    .map_err(|err| format!("etcd endpoint {e:?}: {err}"))?;
                let ep = match &tls {
                    Some(cfg) => ep
                        .tls_config(cfg.clone())
                        .map_err(|err| format!("etcd endpoint {e:?}: TLS: {err}"))?,
                    None => ep,
                };
                Ok(ep
                    .connect_timeout(deadline)
                    .tcp_nodelay(true)
                    .connect_lazy())
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            endpoints: endpoints.to_vec(),
            channels,
            current: AtomicUsize::new(0),
            deadline,
        })
    }

    /// The deadline of one call.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The endpoint the next call goes to, and its channel.
    pub(crate) fn current(&self) -> (usize, &str, Channel) {
        let i = self.current.load(Ordering::Relaxed) % self.channels.len();
        (i, &self.endpoints[i], self.channels[i].clone())
    }

    /// Moves on from endpoint `failed` (unless another caller already did).
    pub(crate) fn rotate(&self, failed: usize) {
        let next = (failed + 1) % self.channels.len();
        let _ = self
            .current
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Runs `call` on the current endpoint within the deadline; a failure
    /// rotates to the next endpoint for the next call.
    async fn call<T, F>(&self, call: impl FnOnce(Channel) -> F) -> Result<T, EtcdError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let (i, endpoint, channel) = self.current();
        let result = match tokio::time::timeout(self.deadline, call(channel)).await {
            Ok(Ok(r)) => return Ok(r.into_inner()),
            Ok(Err(s)) => format!("{:?}: {}", s.code(), s.message()),
            Err(_) => format!(
                "no answer within {}",
                humantime::format_duration(self.deadline)
            ),
        };
        self.rotate(i);
        Err(EtcdError {
            endpoint: endpoint.to_owned(),
            cause: result,
        })
    }

    /// A Range read.
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, EtcdError> {
        self.call(|c| async move { KvClient::new(c).range(req).await })
            .await
    }

    /// A Put.
    pub async fn put(&self, req: PutRequest) -> Result<PutResponse, EtcdError> {
        self.call(|c| async move { KvClient::new(c).put(req).await })
            .await
    }

    /// A DeleteRange.
    pub async fn delete(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse, EtcdError> {
        self.call(|c| async move { KvClient::new(c).delete_range(req).await })
            .await
    }

    /// A transaction (compare, then success or failure operations).
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, EtcdError> {
        self.call(|c| async move { KvClient::new(c).txn(req).await })
            .await
    }

    /// Compacts the history up to `revision` (watches from before it can no
    /// longer resume).
    pub async fn compact(&self, revision: i64) -> Result<(), EtcdError> {
        let req = CompactionRequest {
            revision,
            physical: true,
        };
        self.call(|c| async move { KvClient::new(c).compact(req).await })
            .await
            .map(|_| ())
    }

    /// The endpoint calls go to now.
    pub fn current_endpoint(&self) -> &str {
        self.current().1
    }

    /// Grants a lease of `ttl`; returns its id and the TTL etcd gave.
    pub async fn lease_grant(&self, ttl: Duration) -> Result<(i64, Duration), EtcdError> {
        let req = LeaseGrantRequest {
            ttl: ttl.as_secs().max(1) as i64,
            id: 0,
        };
        let r = self
            .call(|c| async move { LeaseClient::new(c).lease_grant(req).await })
            .await?;
        Ok((r.id, Duration::from_secs(r.ttl.max(0) as u64)))
    }

    /// Revokes lease `id`: every key attached to it is deleted, in one
    /// revision.
    pub async fn lease_revoke(&self, id: i64) -> Result<(), EtcdError> {
        let req = LeaseRevokeRequest { id };
        self.call(|c| async move { LeaseClient::new(c).lease_revoke(req).await })
            .await
            .map(|_| ())
    }

    /// What etcd knows of lease `id` (TTL -1: gone).
    pub async fn lease_ttl(&self, id: i64) -> Result<LeaseTimeToLiveResponse, EtcdError> {
        let req = LeaseTimeToLiveRequest { id, keys: false };
        self.call(|c| async move { LeaseClient::new(c).lease_time_to_live(req).await })
            .await
    }

    /// A Watch client on the current endpoint (the mirror runs its own
    /// stream and rotates on its own).
    pub fn watch_client(&self) -> (usize, WatchClient<Channel>) {
        let (i, _, channel) = self.current();
        (i, WatchClient::new(channel))
    }
}
