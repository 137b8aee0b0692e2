//! Cluster-mode fixtures: `heartbeat serve` replicas as real processes on
//! one real etcd, members from the Rust client library (each with its
//! list of replicas to try), and observers that record every replica's
//! WatchMembers feed and Health Watch of a service from the start, so a
//! test asserts on what every replica showed, not on a sample.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use heartbeat::client::{Client, ClientConfig, ClientState};
use heartbeat::pb::health::v1::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use heartbeat::pb::heartbeat::v1::{
    EventType, ListMembersRequest, Member, MemberEvent, WatchMembersRequest,
    heartbeat_client::HeartbeatClient,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;

use super::WAIT;
use super::etcd::EtcdCluster;
use super::process::Proc;

/// Member timing in the cluster tests: slow enough that a loaded 2-core
/// machine never starves a member into a false DEAD.
pub const INTERVAL: Duration = Duration::from_millis(500);
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// The replicas' lease TTL (longer than an etcd election, so a leader
/// change does not put replicas in doubt).
pub const LEASE_TTL: &str = "5s";

/// A replica in this test process: the library's server in cluster mode on
/// `endpoints` under `prefix` (lease TTL 5 s, a short drain).
pub fn replica_cfg(endpoints: &[String], prefix: &str) -> heartbeat::config::ServerConfig {
    heartbeat::config::ServerConfig {
        cluster: Some(heartbeat::config::ClusterConfig {
            endpoints: endpoints.to_vec(),
            prefix: prefix.into(),
            lease_ttl: Duration::from_secs(5),
            ..Default::default()
        }),
        ..super::quick_drain()
    }
}

/// ListMembers of an in-process server.
pub async fn list_of(
    server: &super::TestServer,
) -> heartbeat::pb::heartbeat::v1::ListMembersResponse {
    server
        .client()
        .await
        .list_members(ListMembersRequest::default())
        .await
        .expect("ListMembers")
        .into_inner()
}

/// Health/Check of `name` on an in-process server (an error reads as `None`).
pub async fn check(server: &super::TestServer, name: &str) -> Option<i32> {
    let r = server
        .health()
        .await
        .check(HealthCheckRequest {
            service: name.into(),
        })
        .await;
    r.ok().map(|r| r.into_inner().status)
}

/// Waits (bounded) until an in-process server answers `name` with `want`.
pub async fn health_is(server: &super::TestServer, name: &str, want: ServingStatus) {
    let until = Instant::now() + WAIT;
    loop {
        let got = check(server, name).await;
        if got == Some(want as i32) {
            return;
        }
        assert!(
            Instant::now() < until,
            "{name} never became {want:?}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One `heartbeat serve --etcd-endpoints …` process.
pub struct Replica {
    pub proc: Proc,
    pub addr: String,
}

impl Replica {
    /// Starts a replica of the cluster under `prefix` and waits until it
    /// accepts Beat streams.
    pub async fn start(etcd: &EtcdCluster, prefix: &str, extra: &[&str]) -> Self {
        Self::start_on(etcd.endpoints(), prefix, extra).await
    }

    /// A replica reaching etcd at `endpoints` (e.g. through proxies).
    pub async fn start_on(endpoints: &[String], prefix: &str, extra: &[&str]) -> Self {
        let endpoints = endpoints.join(",");
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--drain",
            "300ms",
            "--etcd-endpoints",
            &endpoints,
            "--etcd-prefix",
            prefix,
            "--etcd-lease-ttl",
            LEASE_TTL,
        ];
        args.extend_from_slice(extra);
        let mut proc = Proc::spawn(&args);
        let addr = proc.logged_addr("listening").await;
        let r = Self { proc, addr };
        r.wait_health("heartbeat.v1.Heartbeat", ServingStatus::Serving)
            .await;
        r
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The log lines so far (for a failing test's report).
    pub fn logs(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.proc.logs.try_recv() {
            out.push(line);
        }
        out
    }

    pub async fn channel(&self) -> Channel {
        super::within(
            "connect to a replica",
            Channel::from_shared(self.url()).unwrap().connect(),
        )
        .await
        .expect("connect to the replica")
    }

    pub async fn list(&self) -> (Vec<Member>, u64) {
        let r = HeartbeatClient::new(self.channel().await)
            .list_members(ListMembersRequest::default())
            .await
            .expect("ListMembers")
            .into_inner();
        (r.members, r.revision)
    }

    /// Health/Check of `name` (an error reads as `None`).
    pub async fn health(&self, name: &str) -> Option<i32> {
        let mut h = HealthClient::new(self.channel().await);
        let r = h
            .check(HealthCheckRequest {
                service: name.into(),
            })
            .await;
        r.ok().map(|r| r.into_inner().status)
    }

    /// Waits (bounded) until `name` is `want` here.
    pub async fn wait_health(&self, name: &str, want: ServingStatus) {
        let until = Instant::now() + WAIT * 2;
        loop {
            if self.health(name).await == Some(want as i32) {
                return;
            }
            assert!(
                Instant::now() < until,
                "{name} never became {want:?} on {}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded by `bound`) until `check` holds for this replica's
    /// ListMembers.
    pub async fn wait_list(&self, what: &str, bound: Duration, check: impl Fn(&[Member]) -> bool) {
        let until = Instant::now() + bound;
        loop {
            let (members, _) = self.list().await;
            if check(&members) {
                return;
            }
            assert!(
                Instant::now() < until,
                "{what} not seen on {} within {bound:?}; table: {members:?}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A member run by the client library, trying `servers` in order.
pub fn member(servers: &[&Replica], service: &str, instance: &str) -> Client {
    let servers: Vec<String> = servers.iter().map(|r| r.addr.clone()).collect();
    let cfg = ClientConfig::new(servers, service, instance)
        .interval(INTERVAL)
        .timeout(TIMEOUT);
    Client::spawn(cfg).expect("client config")
}

/// Waits (bounded) until every client is ONLINE.
pub async fn all_online(clients: &[Client]) {
    for c in clients {
        let mut s = c.subscribe();
        super::within(
            "a member ONLINE",
            s.wait_for(|s| s.state == ClientState::Online),
        )
        .await
        .expect("client running");
    }
}

/// Everything one replica showed from the moment the observer started.
#[derive(Default)]
pub struct Seen {
    /// WatchMembers events after the snapshot, in order.
    pub events: Vec<MemberEvent>,
    /// Health Watch statuses of each watched name, in order.
    pub health: HashMap<String, Vec<i32>>,
    /// A watch ended with this error.
    pub broken: Option<String>,
}

/// Records a replica's WatchMembers feed and Health Watch of `names`.
pub struct Observer {
    pub seen: Arc<Mutex<Seen>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Observer {
    pub async fn start(r: &Replica, names: &[&str]) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut tasks = Vec::new();
        let channel = r.channel().await;
        let mut watch = HeartbeatClient::new(channel.clone())
            .watch_members(WatchMembersRequest::default())
            .await
            .expect("WatchMembers")
            .into_inner();
        // The snapshot first, so events after it are what happened later.
        loop {
            let e = super::within("the snapshot", watch.message())
                .await
                .expect("watch")
                .expect("open");
            if e.r#type == EventType::SnapshotEnd as i32 {
                break;
            }
        }
        let s = seen.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match watch.message().await {
                    Ok(Some(e)) => s.lock().unwrap().events.push(e),
                    Ok(None) => return,
                    Err(e) => {
                        s.lock().unwrap().broken = Some(e.to_string());
                        return;
                    }
                }
            }
        }));
        for &name in names {
            let mut h = HealthClient::new(channel.clone())
                .watch(HealthCheckRequest {
                    service: name.into(),
                })
                .await
                .expect("Health Watch")
                .into_inner();
            let s = seen.clone();
            let name = name.to_owned();
            tasks.push(tokio::spawn(async move {
                while let Ok(Some(r)) = h.message().await {
                    s.lock()
                        .unwrap()
                        .health
                        .entry(name.clone())
                        .or_default()
                        .push(r.status);
                }
            }));
        }
        Self { seen, tasks }
    }

    /// Events of `kind` for instances of `service` accepted by `pick`.
    pub fn count(&self, kind: EventType, pick: impl Fn(&Member) -> bool) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.events
            .iter()
            .filter(|e| e.r#type == kind as i32)
            .filter(|e| e.member.as_ref().is_some_and(&pick))
            .count()
    }

    /// The Health Watch statuses of `name` so far.
    pub fn health_of(&self, name: &str) -> Vec<i32> {
        let seen = self.seen.lock().unwrap();
        seen.health.get(name).cloned().unwrap_or_default()
    }

    /// `name` was SERVING throughout: the watch's first answer and every
    /// later one.
    pub fn always_serving(&self, name: &str) -> bool {
        let statuses = self.health_of(name);
        !statuses.is_empty() && statuses.iter().all(|&s| s == ServingStatus::Serving as i32)
    }

    /// The events so far.
    pub fn events(&self) -> Vec<MemberEvent> {
        self.seen.lock().unwrap().events.clone()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The current etcd revision of the cluster.
pub fn etcd_revision(etcd: &EtcdCluster) -> i64 {
    let out = etcd
        .etcdctl(&["endpoint", "status", "-w", "json"])
        .expect("etcdctl endpoint status");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    v.as_array()
        .and_then(|a| {
            a.iter()
                .filter_map(|e| e["Status"]["header"]["revision"].as_i64())
                .max()
        })
        .expect("a revision")
}
