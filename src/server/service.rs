//! The `heartbeat.v1.Heartbeat` service: thin glue from tonic to the Beat
//! session and the member RPCs.

use std::sync::Arc;

use tonic::{Request, Response, Status as GrpcStatus, Streaming};

use super::beat::{self, BeatStream};
use super::members::{self, WatchMembersStream};
use super::state::Shared;
use super::watch_limit;
use crate::authz::{Identity, read_allowed};
use crate::edge::PerConnection;
use crate::pb::heartbeat::v1::{
    BeatRequest, ListMembersRequest, ListMembersResponse, WatchMembersRequest, heartbeat_server,
};

/// Refuses a read RPC to a client the authorisation file does not let read.
pub(crate) fn may_read<T>(shared: &Shared, req: &Request<T>) -> Result<(), GrpcStatus> {
    read_allowed(shared.cfg.authz.as_ref(), req)
}

/// The Heartbeat service of one server.
#[derive(Debug, Clone)]
pub(crate) struct HeartbeatService {
    pub(crate) shared: Arc<Shared>,
}

#[tonic::async_trait]
impl heartbeat_server::Heartbeat for HeartbeatService {
    type BeatStream = BeatStream;

    async fn beat(
        &self,
        request: Request<Streaming<BeatRequest>>,
    ) -> Result<Response<BeatStream>, GrpcStatus> {
        let identity = Identity::of(&request);
        Ok(Response::new(beat::beat(
            self.shared.clone(),
            request.into_inner(),
            identity,
        )))
    }

    async fn list_members(
        &self,
        request: Request<ListMembersRequest>,
    ) -> Result<Response<ListMembersResponse>, GrpcStatus> {
        may_read(&self.shared, &request)?;
        members::list(&self.shared, request.into_inner()).map(Response::new)
    }

    type WatchMembersStream = WatchMembersStream;

    async fn watch_members(
        &self,
        request: Request<WatchMembersRequest>,
    ) -> Result<Response<WatchMembersStream>, GrpcStatus> {
        may_read(&self.shared, &request)?;
        let cfg = &self.shared.cfg;
        let slot = watch_limit::acquire(
            &self.shared.watches,
            request.extensions().get::<Arc<PerConnection>>().cloned(),
            cfg.max_watches,
            cfg.max_watches_per_connection,
            &self.shared.metrics,
        )?;
        members::watch(self.shared.clone(), request.into_inner(), slot).map(Response::new)
    }
}
