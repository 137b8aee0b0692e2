//! The reads of the member table for front ends other than gRPC (the HTTP
//! API of SPEC §9): the same ListMembers and WatchMembers code, the same
//! watch limit and the same read rule, so the page and `/api/v1` can never
//! disagree with what grpcurl sees.

use std::sync::Arc;

use tonic::Status as GrpcStatus;

use super::members::{self, WatchMembersStream};
use super::state::Shared;
use super::watch_limit;
use crate::authz::Authz;
use crate::pb::heartbeat::v1::{ListMembersRequest, ListMembersResponse, WatchMembersRequest};

/// A handle on one server's table for reading.
#[derive(Debug, Clone)]
pub struct Reads {
    shared: Arc<Shared>,
}

impl Reads {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The authorisation file, whose read rule the caller applies.
    pub fn authz(&self) -> Option<&Authz> {
        self.shared.cfg.authz.as_ref()
    }

    /// ListMembers of `service` (empty: every service).
    pub fn list(&self, service: &str) -> Result<ListMembersResponse, GrpcStatus> {
        let req = ListMembersRequest {
            service: service.to_owned(),
        };
        members::list(&self.shared, req)
    }

    /// WatchMembers of `service` after `since_revision` (0: a snapshot
    /// first). It takes a place under `--max-watches` for as long as it
    /// lasts, and ends with UNAVAILABLE when the server shuts down.
    pub fn watch(
        &self,
        service: &str,
        since_revision: u64,
    ) -> Result<WatchMembersStream, GrpcStatus> {
        let cfg = &self.shared.cfg;
        let slot = watch_limit::acquire(
            &self.shared.watches,
            None,
            cfg.max_watches,
            cfg.max_watches_per_connection,
            &self.shared.metrics,
        )?;
        let req = WatchMembersRequest {
            service: service.to_owned(),
            since_revision,
        };
        members::watch(self.shared.clone(), req, slot)
    }
}
