//! `/metrics` as an axum route (axum comes with tonic), served through the
//! same edge as every other port (`crate::edge`), so the metrics port has
//! the handshake deadline, idle timeout and connection limit too. The same
//! route is part of the `--http-listen` port (`crate::http`).

use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::MethodRouter;
use prometheus_client::registry::Registry;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics` for `registry`; anything else 404 (405 for another method).
pub fn router(registry: Arc<Registry>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", route(registry))
        .fallback(|| async { (StatusCode::NOT_FOUND, "metrics are at /metrics\n").into_response() })
}

/// The `GET` handler of `/metrics` for `registry`, to mount on any router.
pub fn route<S: Clone + Send + Sync + 'static>(registry: Arc<Registry>) -> MethodRouter<S> {
    axum::routing::get(move || {
        let body = super::encode(&registry);
        async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], body) }
    })
}
