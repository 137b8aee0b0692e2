//! `/metrics` over HTTP/1.1: an axum router (axum comes with tonic) served
//! through the same edge as every other port, so the metrics port has the
//! handshake deadline, idle timeout and connection limit too.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::edge::{Edge, EdgeConfig, Port};
use crate::metrics::EdgeMetrics;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics` for `registry`; anything else 404 (405 for another method).
pub fn router(registry: Arc<Registry>) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let body = super::encode(&registry);
                async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], body) }
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "metrics are at /metrics\n").into_response() })
}

/// Serves `registry` at `/metrics` on `listener` until `shutdown` (for a
/// process with no other port: the agent).
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()>,
) {
    let cfg = EdgeConfig {
        max_connections: 256,
        ..crate::config::ServerConfig::default().edge()
    };
    let edge = Edge::new(cfg, EdgeMetrics::unregistered());
    edge.serve(listener, Port::Http(router(registry)));
    shutdown.await;
    edge.shutdown(Duration::from_secs(1)).await;
}
