//! The HTTP port (`serve --http-listen`, SPEC §9): the live status page at
//! `/`, the member table and its event feed under `/api/v1`, and
//! Prometheus metrics at `/metrics`, on one axum router served through the
//! same edge as every other port (handshake deadline, idle timeout,
//! connection limit: [`crate::edge`]).
//!
//! Reads go through [`crate::server::Reads`], the code behind ListMembers
//! and WatchMembers, so the page, `/api/v1` and grpcurl show one table.
//! Under `"read": "authenticated"` the page and the API need
//! `Authorization: Bearer …` of an identity the authorisation file lets
//! read (401 otherwise); `/metrics` and the page's static files (the same
//! in every binary, no data) stay open.
//!
//! The page is a few static files compiled into the binary ([`page`]): no
//! build step, and nothing loaded from anywhere but this port, so it works
//! in an air-gapped cluster.

mod api;
mod json;
mod page;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

pub use json::{JsonError, to_json};

use crate::authz::Identity;
use crate::server::Reads;

/// The router of the HTTP port: `/`, `/assets/*`, `/api/v1/members`,
/// `/api/v1/events` and `/metrics`.
pub fn router(reads: Reads, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/", get(page::index))
        .route("/api/v1/members", get(api::members))
        .route("/api/v1/events", get(api::events))
        .route_layer(middleware::from_fn_with_state(reads.clone(), read_rule))
        .with_state(api::Api::new(reads))
        .route("/assets/{name}", get(page::asset))
        .route("/metrics", crate::metrics::metrics_route(registry))
        .fallback(not_found)
}

/// The read rule of the authorisation file: without an identity it lets
/// read, `/` answers 401 with the page (which asks for a token) and the
/// API 401 with a JSON status.
async fn read_rule(State(reads): State<Reads>, req: Request, next: Next) -> Response {
    if let Some(authz) = reads.authz() {
        let id = Identity::of_http(req.headers());
        if !authz.may_read(&id) {
            let message = if id.principals.is_empty() {
                "reading needs a bearer token (Authorization: Bearer …)"
            } else {
                "this bearer token may not read (see the authorisation file)"
            };
            if req.uri().path() == "/" {
                return page::unauthorized();
            }
            return api::error(&tonic::Status::unauthenticated(message));
        }
    }
    next.run(req).await
}

async fn not_found(req: Request) -> Response {
    let message = format!(
        "no such path {:?}: the status page is at /, the API at /api/v1/members and /api/v1/events, metrics at /metrics",
        req.uri().path()
    );
    if req.uri().path().starts_with("/api/") {
        api::error(&tonic::Status::not_found(message))
    } else {
        (axum::http::StatusCode::NOT_FOUND, message + "\n").into_response()
    }
}
