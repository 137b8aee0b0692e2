//! Client (agent) metrics: pong RTT, state, reconnects. They live with the
//! client so that the client library depends on no other part of the crate
//! (the `metrics` module re-exports them).

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::state::ClientState;

/// Prefix of the client's metrics (the same as `metrics::PREFIX`).
const PREFIX: &str = "heartbeat";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: ClientState,
}

impl EncodeLabelValue for ClientState {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.name())
    }
}

const STATES: [ClientState; 6] = [
    ClientState::Connecting,
    ClientState::Online,
    ClientState::Reconnecting,
    ClientState::Offline,
    ClientState::Superseded,
    ClientState::Left,
];

/// The metrics of one client; cheap to clone.
#[derive(Clone, Debug)]
pub struct ClientMetrics {
    rtt: Histogram,
    state: Family<StateLabels, Gauge>,
    reconnects: Counter,
    pings: Counter,
}

impl ClientMetrics {
    /// Registers the client metrics in `registry`, under `heartbeat_`.
    pub fn new(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix(PREFIX);
        let m = Self {
            // 50 µs .. ~1.6 s
            rtt: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            state: Family::default(),
            reconnects: Counter::default(),
            pings: Counter::default(),
        };
        registry.register_with_unit(
            "client_pong_rtt",
            "Round trip of answered pings",
            Unit::Seconds,
            m.rtt.clone(),
        );
        registry.register(
            "client_state",
            "1 for the client's current state (CONNECTING, ONLINE, ...)",
            m.state.clone(),
        );
        registry.register(
            "client_reconnects",
            "Sessions lost and re-established attempts started",
            m.reconnects.clone(),
        );
        registry.register("client_pings", "Pings sent", m.pings.clone());
        m.set_state(ClientState::Connecting);
        m
    }

    pub(crate) fn rtt(&self, d: Duration) {
        self.rtt.observe(d.as_secs_f64());
    }

    pub(crate) fn ping(&self) {
        self.pings.inc();
    }

    pub(crate) fn reconnect(&self) {
        self.reconnects.inc();
    }

    pub(crate) fn set_state(&self, current: ClientState) {
        for s in STATES {
            let v = i64::from(s == current);
            self.state.get_or_create(&StateLabels { state: s }).set(v);
        }
    }
}
