//! `grpc.health.v1.Health` served over a [`HealthMap`]: Check, Watch and List
//! exactly as the health-checking spec and gRFC A90 describe them.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status as GrpcStatus};

use super::map::HealthMap;
use crate::authz::{Authz, read_allowed};
use crate::liveness::{Health, Status};
use crate::pb::health::v1::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
    health_check_response::ServingStatus, health_server,
};

/// Most names List returns before it answers RESOURCE_EXHAUSTED (gRFC A90).
pub const LIST_LIMIT: usize = 100;

/// The Health service over a status map.
#[derive(Debug, Clone)]
pub struct HealthService {
    map: HealthMap,
    /// Who may read; `None` = everybody. Checked in each method rather than
    /// by an interceptor layer, which would rebuild every request (Check is
    /// the hot read path: kubelet probes, load balancers).
    authz: Option<Arc<Authz>>,
    /// Only the server's own names (`""`, `heartbeat.v1.Heartbeat`): the
    /// plaintext health port when reads need authentication (SPEC §6).
    server_only: bool,
}

/// The names the plaintext health port answers when reads need
/// authentication: the server's own, never a member's.
pub const SERVER_NAMES: [&str; 2] = ["", crate::pb::HEARTBEAT_SERVICE];

impl HealthService {
    /// Serves `map` to everybody.
    pub fn new(map: HealthMap) -> Self {
        Self {
            map,
            authz: None,
            server_only: false,
        }
    }

    /// For a port that cannot verify identities (the plaintext health port):
    /// everybody may read, but when `authz` makes reads need an identity only
    /// [`SERVER_NAMES`] exist there; every other name is NOT_FOUND and `List`
    /// returns those two.
    pub fn public_port(mut self, authz: Option<Authz>) -> Self {
        self.server_only = authz.is_some_and(|a| a.reads_need_identity());
        self
    }

    fn visible(&self, name: &str) -> bool {
        !self.server_only || SERVER_NAMES.contains(&name)
    }

    /// Serves only to the identities `authz`'s read rule lets read.
    pub fn read_rule(mut self, authz: Option<Authz>) -> Self {
        self.authz = authz.map(Arc::new);
        self
    }

    fn may_read<T>(&self, req: &Request<T>) -> Result<(), GrpcStatus> {
        read_allowed(self.authz.as_deref(), req)
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> health_server::HealthServer<Self> {
        health_server::HealthServer::new(self)
    }
}

fn serving_status(h: Health) -> ServingStatus {
    match h {
        Some(Status::Serving) => ServingStatus::Serving,
        Some(Status::NotServing) => ServingStatus::NotServing,
        None => ServingStatus::ServiceUnknown,
    }
}

fn response(h: Health) -> HealthCheckResponse {
    HealthCheckResponse {
        status: serving_status(h) as i32,
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, GrpcStatus>> + Send>>;

#[tonic::async_trait]
impl health_server::Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, GrpcStatus> {
        self.may_read(&request)?;
        let name = request.into_inner().service;
        let status = if self.visible(&name) {
            self.map.get(&name)
        } else {
            None
        };
        match status {
            Some(status) => Ok(Response::new(response(Some(status)))),
            None => Err(GrpcStatus::not_found(format!(
                "unknown health name {name:?}"
            ))),
        }
    }

    async fn list(
        &self,
        request: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, GrpcStatus> {
        self.may_read(&request)?;
        let names = if self.server_only {
            let own = SERVER_NAMES
                .iter()
                .filter_map(|n| Some((n.to_string(), self.map.get(n)?)));
            Ok(own.collect())
        } else {
            self.map.list(LIST_LIMIT)
        };
        match names {
            Ok(names) => Ok(Response::new(HealthListResponse {
                statuses: names
                    .into_iter()
                    .map(|(name, s)| (name, response(Some(s))))
                    .collect(),
            })),
            Err(count) => Err(GrpcStatus::resource_exhausted(format!(
                "{count} health names exceed the List limit of {LIST_LIMIT}; use Check or Watch per name"
            ))),
        }
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, GrpcStatus> {
        self.may_read(&request)?;
        let name = request.into_inner().service;
        if !self.visible(&name) {
            // Unknown here for good: SERVICE_UNKNOWN, then open until shutdown.
            let closed = self.map.closed();
            let stream = futures_util::stream::once(async { Ok(response(None)) })
                .chain(futures_util::stream::once(closed).filter_map(|()| async { None }));
            return Ok(Response::new(Box::pin(stream)));
        }
        let watch = self.map.watch(&name);
        let stream = futures_util::stream::unfold(watch, |mut w| async move {
            let h = w.next().await?;
            Some((Ok(response(h)), w))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
