//! Discovery's metrics (SPEC §8): open ADS streams, responses pushed and
//! responses rejected (NACKs) by resource type. Registered in every server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::xds::Kind;

label_values! {
    /// An xDS resource type.
    pub enum TypeLabel {
        /// Listeners.
        Lds => "LDS",
        /// Clusters.
        Cds => "CDS",
        /// Endpoints (ClusterLoadAssignment).
        Eds => "EDS",
    }
}

impl From<Kind> for TypeLabel {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Listener => TypeLabel::Lds,
            Kind::Cluster => TypeLabel::Cds,
            Kind::Endpoints => TypeLabel::Eds,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    r#type: TypeLabel,
}

/// Discovery's metrics; cheap to clone.
#[derive(Clone, Debug)]
pub struct XdsMetrics {
    streams: Gauge,
    pushes: Family<TypeLabels, Counter>,
    nacks: Family<TypeLabels, Counter>,
}

/// An open stream's share of the gauge; lowers it when dropped.
#[derive(Debug)]
pub struct OpenStream(Gauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl XdsMetrics {
    pub(crate) fn new(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("xds");
        let m = Self {
            streams: Gauge::default(),
            pushes: Family::default(),
            nacks: Family::default(),
        };
        for &r#type in TypeLabel::ALL {
            let _ = m.pushes.get_or_create(&TypeLabels { r#type });
            let _ = m.nacks.get_or_create(&TypeLabels { r#type });
        }
        registry.register(
            "streams",
            "Open ADS streams (xDS clients)",
            m.streams.clone(),
        );
        registry.register(
            "pushes",
            format!("ADS responses sent, by type ({})", TypeLabel::list()),
            m.pushes.clone(),
        );
        registry.register(
            "nacks",
            format!(
                "ADS responses a client rejected, by type ({})",
                TypeLabel::list()
            ),
            m.nacks.clone(),
        );
        m
    }

    /// A stream opened; the guard closes it.
    pub fn stream_opened(&self) -> OpenStream {
        self.streams.inc();
        OpenStream(self.streams.clone())
    }

    /// A response of `kind` was sent.
    pub fn pushed(&self, kind: Kind) {
        let r#type = kind.into();
        self.pushes.get_or_create(&TypeLabels { r#type }).inc();
    }

    /// A client rejected a response of `kind`.
    pub fn nacked(&self, kind: Kind) {
        let r#type = kind.into();
        self.nacks.get_or_create(&TypeLabels { r#type }).inc();
    }
}
