//! The Aggregated Discovery Service on the gRPC port: one task per stream
//! reads requests, wakes on every change of the hub, and sends what is due.
//!
//! Responses are built when they can be sent (a channel of one), so a slow
//! reader gets the latest endpoints once instead of every step in between:
//! pushes coalesce by construction. Streams count against the watch-stream
//! limits (`--max-watches`, `--max-watches-per-connection`) and follow the
//! read rule of the authorisation file; shutdown ends them UNAVAILABLE, and
//! clients keep the endpoints they have.

use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    aggregated_discovery_service_server::{
        AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
    },
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status as GrpcStatus, Streaming};
use tracing::{debug, warn};

use super::hub::Hub;
use super::resources::Kind;
use super::session::{Handled, Session};
use crate::authz::{Authz, read_allowed};
use crate::metrics::XdsMetrics;

/// A stream's place in the watch-stream limits, taken before it starts.
pub type Admit = Box<
    dyn Fn(Option<Arc<crate::edge::PerConnection>>) -> Result<Box<dyn Send>, GrpcStatus>
        + Send
        + Sync,
>;

/// The ADS of one server.
pub struct Ads {
    hub: Arc<Hub>,
    authz: Option<Authz>,
    metrics: XdsMetrics,
    drain: CancellationToken,
    admit: Admit,
}

impl Ads {
    /// ADS over `hub`; streams end when `drain` is cancelled.
    pub fn new(
        hub: Arc<Hub>,
        authz: Option<Authz>,
        metrics: XdsMetrics,
        drain: CancellationToken,
        admit: Admit,
    ) -> Self {
        Self {
            hub,
            authz,
            metrics,
            drain,
            admit,
        }
    }

    /// As a tonic service, with the server's message limits.
    pub fn into_server(self, max_decode: usize) -> AggregatedDiscoveryServiceServer<Self> {
        AggregatedDiscoveryServiceServer::new(self).max_decoding_message_size(max_decode)
    }
}

type Responses = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, GrpcStatus>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for Ads {
    type StreamAggregatedResourcesStream = Responses;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Responses>, GrpcStatus> {
        read_allowed(self.authz.as_ref(), &request)?;
        let conn = request.extensions().get().cloned();
        let slot = (self.admit)(conn)?;
        let (tx, rx) = mpsc::channel(1);
        let stream = AdsStream {
            hub: self.hub.clone(),
            metrics: self.metrics.clone(),
            drain: self.drain.clone(),
            requests: request.into_inner(),
            tx,
        };
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _open = metrics.stream_opened();
            stream.run().await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type DeltaAggregatedResourcesStream =
        Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, GrpcStatus>> + Send>>;

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, GrpcStatus> {
        Err(GrpcStatus::unimplemented(
            "heartbeat serves the state-of-the-world protocol (StreamAggregatedResources), not delta",
        ))
    }
}

/// One stream's task.
struct AdsStream {
    hub: Arc<Hub>,
    metrics: XdsMetrics,
    drain: CancellationToken,
    requests: Streaming<DiscoveryRequest>,
    tx: mpsc::Sender<Result<DiscoveryResponse, GrpcStatus>>,
}

impl AdsStream {
    async fn run(mut self) {
        let mut session = Session::default();
        let mut generation = self.hub.subscribe();
        let mut node = String::new();
        loop {
            let due = tokio::select! {
                biased;
                () = self.drain.cancelled() => {
                    let _ = self.tx.send(Err(GrpcStatus::unavailable("the server is shutting down"))).await;
                    return;
                }
                () = self.tx.closed() => return,
                req = self.requests.message() => match req {
                    Ok(Some(req)) => {
                        if node.is_empty() && let Some(n) = &req.node {
                            node = n.id.clone();
                            debug!(node = %node, "xDS client subscribed");
                        }
                        match session.request(req) {
                            Ok(handled) => self.handled(handled, &node),
                            Err(status) => {
                                let _ = self.tx.send(Err(status)).await;
                                return;
                            }
                        }
                    }
                    Ok(None) => return,
                    Err(status) => {
                        debug!(error = %status, "xDS stream ended by the client");
                        return;
                    }
                },
                changed = generation.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    generation.borrow_and_update();
                    session.endpoints_due(&self.hub).then_some(Kind::Endpoints)
                }
            };
            if let Some(kind) = due {
                // Waits for room first, so the response carries the
                // endpoints of the moment it is sent.
                let Ok(permit) = self.tx.reserve().await else {
                    return;
                };
                permit.send(Ok(session.respond(kind, &self.hub)));
                self.metrics.pushed(kind);
            }
        }
    }

    fn handled(&self, handled: Handled, node: &str) -> Option<Kind> {
        match handled {
            Handled::Push(kind) => return Some(kind),
            Handled::Ack(_) | Handled::Stale(_) => {}
            Handled::Nack {
                kind,
                version,
                message,
            } => {
                self.metrics.nacked(kind);
                warn!(node = %node, r#type = kind.name(), version = %version, error = %message,
                    "an xDS client rejected a response");
            }
            Handled::Unknown(type_url) => {
                debug!(node = %node, type_url = %type_url, "xDS request of a type heartbeat does not serve");
            }
        }
        None
    }
}
