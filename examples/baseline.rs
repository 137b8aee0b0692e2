//! The bare baseline for BENCHMARKS.md: the least a tonic server can do and
//! still be a heartbeat server. It speaks the same `heartbeat.v1.Beat`
//! (Welcome, a Pong per Ping), keeps one `tokio::time::Sleep` per stream reset
//! on each ping, and ends a silent stream DEADLINE_EXCEEDED. No registry,
//! health, events, validation or limits: the floor `heartbeat serve` is
//! compared against.
//!
//! ```sh
//! cargo run --release --example baseline -- 127.0.0.1:50061
//! ```

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use heartbeat::pb::heartbeat::v1::{
    BeatRequest, BeatResponse, ListMembersRequest, ListMembersResponse, MemberEvent, Pong,
    WatchMembersRequest, Welcome, beat_request, beat_response, heartbeat_server,
};
use tokio::time::Instant;
use tonic::{Request, Response, Status, Streaming};

struct Baseline;

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn secs(d: Option<prost_types::Duration>, default: Duration) -> Duration {
    d.and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(default)
}

#[tonic::async_trait]
impl heartbeat_server::Heartbeat for Baseline {
    type BeatStream = Out<BeatResponse>;

    async fn beat(
        &self,
        req: Request<Streaming<BeatRequest>>,
    ) -> Result<Response<Out<BeatResponse>>, Status> {
        let inbound = req.into_inner();
        // State: the inbound stream, the agreed timeout, and one Sleep.
        let state = (
            inbound,
            Duration::from_secs(3),
            Box::pin(tokio::time::sleep(Duration::from_secs(5))),
            false,
        );
        let stream = futures_util::stream::unfold(
            state,
            |(mut inbound, mut timeout, mut sleep, done)| async move {
                if done {
                    return None;
                }
                tokio::select! {
                    _ = &mut sleep => {
                        let end = Err(Status::deadline_exceeded("no ping within the timeout"));
                        Some((end, (inbound, timeout, sleep, true)))
                    }
                    msg = inbound.message() => {
                        let Ok(Some(msg)) = msg else { return None };
                        let reply = match msg.kind {
                            Some(beat_request::Kind::Join(j)) => {
                                let interval = secs(j.interval, Duration::from_secs(1));
                                timeout = secs(j.timeout, Duration::from_secs(3));
                                beat_response::Kind::Welcome(Welcome {
                                    server_id: "baseline".into(),
                                    session: 1,
                                    interval: Some(interval.try_into().unwrap_or_default()),
                                    timeout: Some(timeout.try_into().unwrap_or_default()),
                                })
                            }
                            Some(beat_request::Kind::Ping(p)) => beat_response::Kind::Pong(Pong {
                                seq: p.seq,
                                server_time: None,
                                sent_at: p.sent_at,
                                interval: None,
                            }),
                            _ => return None,
                        };
                        sleep.as_mut().reset(Instant::now() + timeout);
                        let item = Ok(BeatResponse { kind: Some(reply) });
                        Some((item, (inbound, timeout, sleep, false)))
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_members(
        &self,
        _: Request<ListMembersRequest>,
    ) -> Result<Response<ListMembersResponse>, Status> {
        Err(Status::unimplemented("baseline"))
    }

    type WatchMembersStream = Out<MemberEvent>;

    async fn watch_members(
        &self,
        _: Request<WatchMembersRequest>,
    ) -> Result<Response<Out<MemberEvent>>, Status> {
        Err(Status::unimplemented("baseline"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50061".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening {}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .max_concurrent_streams(16_384)
        .add_service(heartbeat_server::HeartbeatServer::new(Baseline))
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await?;
    Ok(())
}
