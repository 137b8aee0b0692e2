//! `/metrics` as an axum router (axum comes with tonic), served through the
//! same edge as every other port (`crate::edge`), so the metrics port has
//! the handshake deadline, idle timeout and connection limit too.

use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus_client::registry::Registry;

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
