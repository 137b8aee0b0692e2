//! The agent against a broken or hostile server (a fake Heartbeat service
//! written here): told a 1 ms interval it still pings at most every 100 ms
//! (SPEC §5), and a server that welcomes and then never pongs makes it go
//! OFFLINE after `--max-retries` attempts instead of staying SERVING.

mod common;

use std::pin::Pin;
use std::time::Duration;

use common::process::Proc;
use common::*;
use futures_util::Stream;
use heartbeat::pb::health::v1::{HealthCheckRequest, health_client::HealthClient};
use heartbeat::pb::heartbeat::v1::{
    BeatRequest, BeatResponse, ListMembersRequest, ListMembersResponse, MemberEvent, Pong,
    WatchMembersRequest, Welcome, beat_request, beat_response, heartbeat_server,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

#[derive(Clone, Copy)]
enum Mode {
    /// Welcome and every Pong say "ping every millisecond".
    Hurry,
    /// Welcome (timeout 300 ms), then nothing.
    Silent,
}

/// What the fake saw.
enum Seen {
    Join,
    Ping(Instant),
}

#[derive(Clone)]
struct Fake {
    mode: Mode,
    seen: mpsc::UnboundedSender<Seen>,
}

fn ms(n: u64) -> prost_types::Duration {
    millis(n)
}

fn msg(kind: beat_response::Kind) -> Result<BeatResponse, Status> {
    Ok(BeatResponse { kind: Some(kind) })
}

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl heartbeat_server::Heartbeat for Fake {
    type BeatStream = Out<BeatResponse>;

    async fn beat(
        &self,
        request: Request<Streaming<BeatRequest>>,
    ) -> Result<Response<Self::BeatStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let (mode, seen) = (self.mode, self.seen.clone());
        tokio::spawn(async move {
            while let Ok(Some(req)) = inbound.message().await {
                let reply = match req.kind {
                    Some(beat_request::Kind::Join(_)) => {
                        let _ = seen.send(Seen::Join);
                        let timeout = match mode {
                            Mode::Hurry => ms(3_000),
                            Mode::Silent => ms(300),
                        };
                        Some(beat_response::Kind::Welcome(Welcome {
                            server_id: "fake".into(),
                            session: 1,
                            interval: Some(ms(1)),
                            timeout: Some(timeout),
                        }))
                    }
                    Some(beat_request::Kind::Ping(p)) => {
                        let _ = seen.send(Seen::Ping(Instant::now()));
                        match mode {
                            Mode::Hurry => Some(beat_response::Kind::Pong(Pong {
                                seq: p.seq,
                                interval: Some(ms(1)),
                                ..Default::default()
                            })),
                            Mode::Silent => None,
                        }
                    }
                    _ => None,
                };
                if let Some(kind) = reply
                    && tx.send(msg(kind)).await.is_err()
                {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_members(
        &self,
        _: Request<ListMembersRequest>,
    ) -> Result<Response<ListMembersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type WatchMembersStream = Out<MemberEvent>;

    async fn watch_members(
        &self,
        _: Request<WatchMembersRequest>,
    ) -> Result<Response<Self::WatchMembersStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// Starts the fake; returns its URL and what it sees.
async fn fake(mode: Mode) -> (String, mpsc::UnboundedReceiver<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen, rx) = mpsc::unbounded_channel();
    let service = heartbeat_server::HeartbeatServer::new(Fake { mode, seen });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (url, rx)
}

fn agent(url: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "beat",
        "--server",
        url,
        "--service",
        "app",
        "--instance",
        "a",
        "--log-format",
        "json",
    ];
    args.extend_from_slice(extra);
    Proc::spawn(&args)
}

#[tokio::test]
async fn told_to_ping_every_millisecond_the_agent_pings_at_most_every_100ms() {
    let (url, mut seen) = fake(Mode::Hurry).await;
    let _agent = agent(&url, &[]);
    let mut pings = Vec::new();
    while pings.len() < 11 {
        match within("a ping", seen.recv()).await.expect("fake running") {
            Seen::Ping(at) => pings.push(at),
            Seen::Join => {}
        }
    }
    let spent = pings[10].duration_since(pings[0]);
    assert!(
        spent >= Duration::from_millis(950),
        "10 intervals took {spent:?}: faster than 100 ms each"
    );
}

#[tokio::test]
async fn a_server_that_welcomes_and_never_pongs_makes_the_agent_go_offline() {
    let (url, mut seen) = fake(Mode::Silent).await;
    let mut a = agent(
        &url,
        &["--health-listen", "127.0.0.1:0", "--max-retries", "2"],
    );
    let health_addr = a.logged_addr("health endpoint listening").await;
    let mut health = HealthClient::new(connect_addr(&health_addr).await);
    a.wait_log("OFFLINE", |v| v["state"] == "OFFLINE").await;
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "heartbeat.v1.Heartbeat".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = within("the current status", watch.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status, 2, "OFFLINE is NOT_SERVING");
    // Later Welcomes alone never bring it back to SERVING.
    let mut joins = 0;
    while joins < 3 {
        if let Seen::Join = within("another attempt", seen.recv()).await.unwrap() {
            joins += 1;
        }
    }
    let still = check(&mut health, "heartbeat.v1.Heartbeat").await;
    assert_eq!(still, Ok(2), "still NOT_SERVING after 3 more Welcomes");
    assert!(
        futures_util::FutureExt::now_or_never(watch.message()).is_none(),
        "no SERVING in between"
    );
}
