//! Prometheus metrics with `prometheus-client`: registered into a registry
//! that is passed in (no globals), typed labels, bounded cardinality (a
//! `service` label, never an `instance` one), served as text on `/metrics`.

mod edge;
mod http;
mod process;
mod server;

#[cfg(feature = "client")]
pub use crate::client::ClientMetrics;
pub use edge::{EdgeMetrics, REFUSED_REASONS};
pub use http::router;
pub use process::ProcessCollector;
pub use server::{MAX_SERVICE_LABELS, OTHER_SERVICES, REJECTION_REASONS, ServerMetrics};

use prometheus_client::registry::Registry;

/// Prefix of every metric of heartbeat's own.
pub const PREFIX: &str = "heartbeat";

/// A registry for everything a heartbeat process exports: the standard
/// `process_*` metrics at its root, and [`ServerMetrics`] or
/// [`ClientMetrics`] under [`PREFIX`] when registered into it.
pub fn registry() -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(ProcessCollector));
    r
}

/// The text exposition of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}
