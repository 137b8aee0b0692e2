//! Test helpers: a real server on 127.0.0.1:0 that every test shuts down and
//! joins, a Beat member driven message by message, and bounded waits.
#![allow(dead_code)]

pub mod ads;
pub mod cluster;
pub mod etcd;
pub mod h2conn;
pub mod http_client;
pub mod pki;
pub mod process;
pub mod proxy;

#[allow(unused_imports)]
pub use h2conn::{GrpcReader, raw_h2, raw_h2_window, try_raw_h2};

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use heartbeat::config::ServerConfig;
use heartbeat::pb::health::v1::{HealthCheckRequest, health_client::HealthClient};
use heartbeat::pb::heartbeat::v1::{
    BeatRequest, BeatResponse, EventType, Join, Leave, ListMembersRequest, Member, MemberEvent,
    Ping, Pong, WatchMembersRequest, Welcome, beat_request, beat_response,
    heartbeat_client::HeartbeatClient,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

/// Bound on every wait in the tests: generous for a loaded 2-core machine,
/// never a timing assertion.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `f` for at most [`WAIT`], failing the test with `what` otherwise.
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// A server on an ephemeral loopback port.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), heartbeat::server::ServeError>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(quick_drain()).await
    }

    pub async fn with(cfg: ServerConfig) -> Self {
        Self::on("127.0.0.1:0".parse().unwrap(), cfg).await
    }

    /// A server on `addr` (e.g. the address of a server that was stopped:
    /// a restart on the same port).
    pub async fn on(addr: SocketAddr, cfg: ServerConfig) -> Self {
        Self::spawn(addr, cfg, heartbeat::metrics::ServerMetrics::unregistered()).await
    }

    /// A server whose metrics go to a registry the test reads.
    pub async fn with_metrics(cfg: ServerConfig) -> (Self, prometheus_client::registry::Registry) {
        let mut registry = heartbeat::metrics::registry();
        let metrics = heartbeat::metrics::ServerMetrics::new(&mut registry);
        (
            Self::spawn("127.0.0.1:0".parse().unwrap(), cfg, metrics).await,
            registry,
        )
    }

    /// A server with the HTTP port of SPEC §9 on another ephemeral port,
    /// and that port's address.
    pub async fn with_http(cfg: ServerConfig) -> (Self, SocketAddr) {
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        let registry = std::sync::Arc::new(heartbeat::metrics::registry());
        let server = heartbeat::server::Server::new(cfg).http_listener(http, registry);
        (
            Self::spawn_server("127.0.0.1:0".parse().unwrap(), server).await,
            http_addr,
        )
    }

    async fn spawn(
        addr: SocketAddr,
        cfg: ServerConfig,
        metrics: heartbeat::metrics::ServerMetrics,
    ) -> Self {
        Self::spawn_server(addr, heartbeat::server::Server::new(cfg).metrics(metrics)).await
    }

    async fn spawn_server(addr: SocketAddr, server: heartbeat::server::Server) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let handle = tokio::spawn(server.serve(listener, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        within(
            "connect",
            Channel::from_shared(self.url()).unwrap().connect(),
        )
        .await
        .expect("connect to the test server")
    }

    pub async fn client(&self) -> HeartbeatClient<Channel> {
        HeartbeatClient::new(self.channel().await)
    }

    pub async fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel().await)
    }

    /// Starts shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down and joins the server; fails if it takes more than [`WAIT`]
    /// or returns an error.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        let handle = self.handle.take().unwrap();
        within("server shutdown", handle)
            .await
            .expect("server task")
            .expect("server result");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn join_req(service: &str, instance: &str) -> BeatRequest {
    BeatRequest {
        kind: Some(beat_request::Kind::Join(Join {
            service: service.into(),
            instance: instance.into(),
            ..Default::default()
        })),
    }
}

pub fn join_with(join: Join) -> BeatRequest {
    BeatRequest {
        kind: Some(beat_request::Kind::Join(join)),
    }
}

pub fn ping_req(seq: u64) -> BeatRequest {
    BeatRequest {
        kind: Some(beat_request::Kind::Ping(Ping {
            seq,
            ..Default::default()
        })),
    }
}

pub fn ping_status(seq: u64, status: i32) -> BeatRequest {
    BeatRequest {
        kind: Some(beat_request::Kind::Ping(Ping {
            seq,
            status,
            sent_at: None,
        })),
    }
}

pub fn leave_req() -> BeatRequest {
    BeatRequest {
        kind: Some(beat_request::Kind::Leave(Leave {
            reason: "test".into(),
        })),
    }
}

pub fn millis(d: u64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: (d / 1000) as i64,
        nanos: ((d % 1000) * 1_000_000) as i32,
    }
}

/// One Beat stream, driven message by message.
pub struct Beat {
    tx: Option<mpsc::Sender<BeatRequest>>,
    rx: Streaming<BeatResponse>,
}

impl Beat {
    pub async fn open(client: &mut HeartbeatClient<Channel>) -> Self {
        let (tx, rx) = mpsc::channel(128);
        let response = within("Beat call", client.beat(ReceiverStream::new(rx)))
            .await
            .expect("Beat call accepted");
        Self {
            tx: Some(tx),
            rx: response.into_inner(),
        }
    }

    /// Opens a stream and joins; returns the Welcome.
    pub async fn join(
        client: &mut HeartbeatClient<Channel>,
        service: &str,
        instance: &str,
    ) -> (Self, Welcome) {
        Self::join_with(
            client,
            Join {
                service: service.into(),
                instance: instance.into(),
                ..Default::default()
            },
        )
        .await
    }

    pub async fn join_with(client: &mut HeartbeatClient<Channel>, join: Join) -> (Self, Welcome) {
        let mut beat = Self::open(client).await;
        beat.send(join_with(join)).await;
        let welcome = beat.welcome().await;
        (beat, welcome)
    }

    pub async fn send(&mut self, req: BeatRequest) {
        self.tx
            .as_ref()
            .expect("stream still open for sending")
            .send(req)
            .await
            .expect("request stream open");
    }

    /// Half-closes the request side.
    pub fn close_send(&mut self) {
        self.tx = None;
    }

    /// The next response, the end of the stream (`Ok(None)`), or its error.
    pub async fn recv(&mut self) -> Result<Option<BeatResponse>, Status> {
        within("a Beat response", self.rx.message()).await
    }

    pub async fn welcome(&mut self) -> Welcome {
        match self.recv().await {
            Ok(Some(BeatResponse {
                kind: Some(beat_response::Kind::Welcome(w)),
            })) => w,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    pub async fn pong(&mut self) -> Pong {
        match self.recv().await {
            Ok(Some(BeatResponse {
                kind: Some(beat_response::Kind::Pong(p)),
            })) => p,
            other => panic!("expected Pong, got {other:?}"),
        }
    }

    pub async fn ping(&mut self, seq: u64) -> Pong {
        self.send(ping_req(seq)).await;
        let pong = self.pong().await;
        assert_eq!(pong.seq, seq);
        pong
    }

    /// Expects the stream to end with `code`; returns the message.
    pub async fn expect_error(&mut self, code: Code) -> String {
        self.expect_status(code).await.message().to_owned()
    }

    /// Expects the stream to end with `code`; returns the status, trailing
    /// metadata included.
    pub async fn expect_status(&mut self, code: Code) -> Status {
        loop {
            match self.recv().await {
                Ok(Some(BeatResponse {
                    kind: Some(beat_response::Kind::Pong(_)),
                })) => continue,
                Err(status) => {
                    assert_eq!(status.code(), code, "status {status:?}");
                    return status;
                }
                other => panic!("expected {code:?}, got {other:?}"),
            }
        }
    }

    /// Expects the stream to end with OK.
    pub async fn expect_ok_end(&mut self) {
        match self.recv().await {
            Ok(None) => {}
            other => panic!("expected the stream to end with OK, got {other:?}"),
        }
    }
}

/// A WatchMembers stream.
pub struct Events {
    rx: Streaming<MemberEvent>,
}

impl Events {
    pub async fn open(client: &mut HeartbeatClient<Channel>, service: &str, since: u64) -> Self {
        let rx = within(
            "WatchMembers call",
            client.watch_members(WatchMembersRequest {
                service: service.into(),
                since_revision: since,
            }),
        )
        .await
        .expect("WatchMembers accepted")
        .into_inner();
        Self { rx }
    }

    pub async fn next(&mut self) -> MemberEvent {
        within("a member event", self.rx.message())
            .await
            .expect("watch stream healthy")
            .expect("watch stream open")
    }

    pub async fn end(&mut self) -> Result<Option<MemberEvent>, Status> {
        within("the watch to end", self.rx.message()).await
    }

    /// Reads the snapshot; returns its rows and revision.
    pub async fn snapshot(&mut self) -> (Vec<Member>, u64) {
        let mut rows = vec![];
        loop {
            let e = self.next().await;
            match EventType::try_from(e.r#type) {
                Ok(EventType::Snapshot) => rows.push(e.member.expect("snapshot row has a member")),
                Ok(EventType::SnapshotEnd) => return (rows, e.revision),
                other => panic!("expected snapshot rows, got {other:?} in {e:?}"),
            }
        }
    }

    /// Reads events until one of `kind` for `instance`; returns everything read.
    pub async fn until(&mut self, kind: EventType, instance: &str) -> Vec<MemberEvent> {
        let mut seen = vec![];
        loop {
            let e = self.next().await;
            let hit = e.r#type == kind as i32
                && e.member.as_ref().is_some_and(|m| m.instance == instance);
            seen.push(e);
            if hit {
                return seen;
            }
        }
    }
}

/// (type, member state) of each event, for asserting a whole sequence.
pub fn states(seen: &[MemberEvent]) -> Vec<(EventType, i32)> {
    seen.iter()
        .map(|e| (kind_of(e), e.member.as_ref().map_or(0, |m| m.state)))
        .collect()
}

/// JOINED (ALIVE), UPDATED (SUSPECT), DEAD: a silent member's whole life.
pub fn silent_life() -> Vec<(EventType, i32)> {
    use heartbeat::pb::heartbeat::v1::MemberState;
    vec![
        (EventType::Joined, MemberState::Alive as i32),
        (EventType::Updated, MemberState::Suspect as i32),
        (EventType::Dead, MemberState::Dead as i32),
    ]
}

pub fn kind_of(e: &MemberEvent) -> EventType {
    EventType::try_from(e.r#type).expect("known event type")
}

/// Health Check of `name`: the status enum, or the error code.
pub async fn check(health: &mut HealthClient<Channel>, name: &str) -> Result<i32, Code> {
    within(
        "Health/Check",
        health.check(HealthCheckRequest {
            service: name.into(),
        }),
    )
    .await
    .map(|r| r.into_inner().status)
    .map_err(|s| s.code())
}

/// One sample of the text exposition of `registry` (0 when absent).
pub fn metric(registry: &prometheus_client::registry::Registry, key: &str) -> f64 {
    heartbeat::metrics::encode(registry)
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

/// ListMembers of all services.
pub async fn members(client: &mut HeartbeatClient<Channel>) -> Vec<Member> {
    within(
        "ListMembers",
        client.list_members(ListMembersRequest::default()),
    )
    .await
    .expect("ListMembers")
    .into_inner()
    .members
}

/// The default config with a short shutdown grace, so that stopping a test
/// server does not wait the default second.
pub fn quick_drain() -> ServerConfig {
    ServerConfig {
        drain: Duration::from_millis(100),
        ..ServerConfig::default()
    }
}

/// `n` client-library members `<service>/m0000…`, each on its own connection.
pub fn spawn_fleet(url: &str, service: &str, n: usize) -> Vec<heartbeat::client::Client> {
    (0..n)
        .map(|i| {
            let cfg =
                heartbeat::client::ClientConfig::new([url.to_owned()], service, format!("m{i:04}"));
            heartbeat::client::Client::spawn(cfg).expect("valid member config")
        })
        .collect()
}

/// Waits for the client to reach `state`; returns that status.
pub async fn reach(
    rx: &mut tokio::sync::watch::Receiver<heartbeat::client::ClientStatus>,
    state: heartbeat::client::ClientState,
) -> heartbeat::client::ClientStatus {
    within(
        &format!("client state {state}"),
        rx.wait_for(|s| s.state == state),
    )
    .await
    .expect("client task alive")
    .clone()
}

/// Waits until every member is ONLINE (each wait bounded by [`WAIT`]).
pub async fn all_online(members: &[heartbeat::client::Client]) {
    for m in members {
        within(
            "a member ONLINE",
            m.subscribe()
                .wait_for(|s| s.state == heartbeat::client::ClientState::Online),
        )
        .await
        .expect("client task alive");
    }
}

/// A loopback address nobody listens on right now (for a server to start on
/// later, or to restart on).
pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// A fresh, empty temporary directory for this test process.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hb-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A channel to `addr` (`host:port`, plaintext).
pub async fn connect_addr(addr: &str) -> Channel {
    within(
        "connect",
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .expect("connect")
}

/// A config with fast liveness for tests that wait for DEAD.
pub fn fast() -> ServerConfig {
    ServerConfig {
        default_interval: Duration::from_millis(100),
        default_timeout: Duration::from_millis(300),
        ..quick_drain()
    }
}

/// Waits until the server closes `s` (EOF or reset).
pub async fn closed_by_server(mut s: tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    within("the server to close the connection", async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
}

/// GET `path` from `addr` over HTTP/1.1; returns (status code, body).
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = within("connect over HTTP", tokio::net::TcpStream::connect(addr))
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    within("the HTTP response", s.read_to_string(&mut raw))
        .await
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

/// 32 labels of 40-byte values: the most a member may carry, for tests of
/// large tables.
pub fn big_labels() -> std::collections::HashMap<String, String> {
    (0..32)
        .map(|i| (format!("label-{i:02}"), "v".repeat(40)))
        .collect()
}
