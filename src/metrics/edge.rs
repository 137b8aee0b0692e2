//! Metrics of the edge (every listening port): connections open, refused by
//! reason, closed for idleness, and evicted to make room. Every reason is
//! created at 0, so dashboards see a series before the first event.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

label_values! {
    /// Why a connection was closed before it could be served (the `reason`
    /// of `heartbeat_connections_refused_total`).
    pub enum Refused {
        /// Every connection is busy (has a stream) at --max-connections.
        ConnectionLimit => "connection_limit",
        /// No TLS handshake, HTTP/2 preface or HTTP/1 request head within
        /// --join-timeout.
        HandshakeTimeout => "handshake_timeout",
        /// The bytes are not HTTP/2 on a gRPC port.
        NotHttp2 => "not_http2",
        /// Plaintext on a TLS port.
        NotTls => "not_tls",
        /// The TLS handshake failed.
        TlsHandshake => "tls_handshake",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: Refused,
}

/// The edge's metrics; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct EdgeMetrics {
    connections: Gauge,
    refused: Family<ReasonLabels, Counter>,
    idle_closed: Counter,
    evicted: Counter,
}

impl EdgeMetrics {
    /// Registers the edge metrics in `registry`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        for &reason in Refused::ALL {
            let _ = m.refused.get_or_create(&ReasonLabels { reason });
        }
        registry.register(
            "connections",
            "Open connections on every port (those still in their handshake included)",
            m.connections.clone(),
        );
        registry.register(
            "connections_refused",
            format!(
                "Connections closed before being served, by reason ({})",
                Refused::list()
            ),
            m.refused.clone(),
        );
        registry.register(
            "connections_idle_closed",
            "Connections closed after --idle-timeout with no open stream",
            m.idle_closed.clone(),
        );
        registry.register(
            "connections_evicted",
            "Idle connections closed to admit a new one at --max-connections",
            m.evicted.clone(),
        );
        m
    }

    /// Metrics registered nowhere.
    pub fn unregistered() -> Self {
        Self::default()
    }

    pub(crate) fn opened(&self) {
        self.connections.inc();
    }

    pub(crate) fn closed(&self) {
        self.connections.dec();
    }

    pub(crate) fn refused(&self, reason: Refused) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub(crate) fn idle_closed(&self) {
        self.idle_closed.inc();
    }

    pub(crate) fn evicted(&self) {
        self.evicted.inc();
    }
}
