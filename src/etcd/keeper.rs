//! Keeping one lease alive through a frozen or dead etcd member.
//!
//! A keepalive goes out every TTL/5 on a LeaseKeepAlive stream, and its
//! answer must come within the client's deadline. When it does not (the
//! member froze, its leader is gone, the connection is half-open), the
//! stream is dropped and the keepalive re-sent at once on the next endpoint.
//! Measured here (CLUSTER.md): a keeper without that deadline lost its lease
//! when the member its stream was on froze; one with 1.5 s that rotated kept
//! it.
//!
//! The state it publishes is the *send* time of the last acknowledged
//! keepalive (the lease is known to live until that time plus the TTL, on
//! this process's monotonic clock) and whether etcd said the lease is gone
//! (TTL 0). What that means for authority is the caller's to decide.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::Etcd;
use super::pb::etcdserverpb::{LeaseKeepAliveRequest, lease_client::LeaseClient};

/// What the keeper knows of its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeeperState {
    /// When the last keepalive that etcd acknowledged was sent (at start:
    /// when the lease was granted).
    pub acked: Instant,
    /// etcd answered TTL 0: the lease is gone and cannot come back.
    pub lost: bool,
    /// Keepalives that got no answer in time (each moved to the next
    /// endpoint).
    pub missed: u64,
}

/// Keeps lease `id` alive until dropped or lost.
#[derive(Debug)]
pub struct LeaseKeeper {
    state: watch::Receiver<KeeperState>,
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    /// Starts keeping lease `id` (granted at `granted` with `ttl`) alive.
    pub fn start(etcd: Arc<Etcd>, id: i64, ttl: Duration, granted: Instant) -> Self {
        let (tx, state) = watch::channel(KeeperState {
            acked: granted,
            lost: false,
            missed: 0,
        });
        let task = tokio::spawn(keep(etcd, id, ttl, tx));
        Self { state, task }
    }

    /// The state now.
    pub fn state(&self) -> KeeperState {
        *self.state.borrow()
    }

    /// Every change of the state.
    pub fn subscribe(&self) -> watch::Receiver<KeeperState> {
        self.state.clone()
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn keep(etcd: Arc<Etcd>, id: i64, ttl: Duration, state: watch::Sender<KeeperState>) {
    let every = (ttl / 5).max(Duration::from_millis(100));
    let deadline = etcd.deadline();
    let request = LeaseKeepAliveRequest { id };
    loop {
        let (i, _, channel) = etcd.current();
        let (tx, rx) = mpsc::channel(1);
        let mut sent = Instant::now();
        let _ = tx.try_send(request);
        let mut client = LeaseClient::new(channel);
        let call = client.lease_keep_alive(ReceiverStream::new(rx));
        let mut stream = match tokio::time::timeout_at(sent + deadline, call).await {
            Ok(Ok(r)) => r.into_inner(),
            _ => {
                missed(&etcd, i, &state).await;
                continue;
            }
        };
        loop {
            match tokio::time::timeout_at(sent + deadline, stream.message()).await {
                Ok(Ok(Some(answer))) if answer.ttl <= 0 => {
                    state.send_modify(|s| s.lost = true);
                    return;
                }
                Ok(Ok(Some(_))) => {
                    state.send_modify(|s| s.acked = sent);
                    tokio::time::sleep_until(sent + every).await;
                    sent = Instant::now();
                    if tx.send(request).await.is_err() {
                        break;
                    }
                }
                // No answer in time, or the stream broke: the next endpoint.
                _ => {
                    missed(&etcd, i, &state).await;
                    break;
                }
            }
        }
    }
}

/// Counts a missed keepalive and moves to the next endpoint, pausing
/// briefly so that an etcd down everywhere is not dialled in a tight loop.
async fn missed(etcd: &Etcd, endpoint: usize, state: &watch::Sender<KeeperState>) {
    state.send_modify(|s| s.missed += 1);
    etcd.rotate(endpoint);
    tokio::time::sleep(Duration::from_millis(50)).await;
}
