//! Prometheus metrics with `prometheus-client`: registered into a registry
//! that is passed in (no globals), typed labels, bounded cardinality (a
//! `service` label, never an `instance` one), served as text on `/metrics`.

mod client;
mod edge;
mod http;
mod server;

pub use client::ClientMetrics;
pub use edge::{EdgeMetrics, REFUSED_REASONS};
pub use http::{router, serve};
pub use server::{MAX_SERVICE_LABELS, OTHER_SERVICES, ServerMetrics};

use prometheus_client::registry::Registry;

/// A registry for everything heartbeat exports, with the `heartbeat_` prefix.
pub fn registry() -> Registry {
    Registry::with_prefix("heartbeat")
}

/// The text exposition of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}
