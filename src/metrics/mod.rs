//! Prometheus metrics with `prometheus-client`: registered into a registry
//! that is passed in (no globals), typed labels, bounded cardinality (a
//! `service` label, never an `instance` one), served as text on `/metrics`.

/// A closed set of label values as an enum: its `ALL` (to create every
/// series at 0), its text, and its Prometheus encoding. Help texts list
/// `ALL`, so they cannot go stale.
macro_rules! label_values {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
        $vis enum $name { $($(#[$vm])* $variant,)* }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            /// The values, comma-separated, for help texts.
            pub(crate) fn list() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl prometheus_client::encoding::EncodeLabelValue for $name {
            fn encode(
                &self,
                encoder: &mut prometheus_client::encoding::LabelValueEncoder<'_>,
            ) -> std::fmt::Result {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

mod cluster;
mod edge;
mod http;
mod labels;
mod process;
mod server;
mod xds;

#[cfg(feature = "client")]
pub use crate::client::ClientMetrics;
pub use cluster::{AuthorityLabel, ClusterMetrics};
pub use edge::{EdgeMetrics, Refused};
pub use http::{route as metrics_route, router};
pub use process::ProcessCollector;
pub use server::{MAX_SERVICE_LABELS, OTHER_SERVICES, Rejection, ServerMetrics};
pub use xds::{OpenStream, TypeLabel, XdsMetrics};

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
