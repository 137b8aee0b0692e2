//! The `heartbeat.v1.Heartbeat` service: thin glue from tonic to the Beat
//! session and the member RPCs.

use std::sync::Arc;

use tonic::{Request, Response, Status as GrpcStatus, Streaming};

use super::beat::{self, BeatStream};
use super::members::{self, WatchMembersStream};
use super::state::Shared;
use crate::pb::heartbeat::v1::{
    BeatRequest, ListMembersRequest, ListMembersResponse, WatchMembersRequest, heartbeat_server,
};

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
        Ok(Response::new(beat::beat(
            self.shared.clone(),
            request.into_inner(),
        )))
    }

    async fn list_members(
        &self,
        request: Request<ListMembersRequest>,
    ) -> Result<Response<ListMembersResponse>, GrpcStatus> {
        members::list(&self.shared, request.into_inner()).map(Response::new)
    }

    type WatchMembersStream = WatchMembersStream;

    async fn watch_members(
        &self,
        request: Request<WatchMembersRequest>,
    ) -> Result<Response<WatchMembersStream>, GrpcStatus> {
        members::watch(self.shared.clone(), request.into_inner()).map(Response::new)
    }
}
