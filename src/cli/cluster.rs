//! `heartbeat serve`'s cluster flags (SPEC §7): with `--etcd-endpoints`
//! the member table lives in etcd, shared by every replica; without, the
//! embedded table is used and nothing here matters.

use clap::Args;
use heartbeat::config::{ClusterConfig, EtcdTls};

use super::serve::{HumanDuration, human_duration};

/// The cluster flags of `heartbeat serve`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Cluster mode: etcd client URLs (comma-separated); every serve with the same endpoints and prefix is a replica of one cluster.
    #[arg(long, env = "HEARTBEAT_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Key prefix of the cluster's records in etcd.
    #[arg(long, env = "HEARTBEAT_ETCD_PREFIX", default_value_t = ClusterConfig::default().prefix)]
    etcd_prefix: String,
    /// TTL of this replica's etcd lease (2s-60s): members of a replica that stops are SUSPECT this long after, then one timeout more until DEAD.
    #[arg(long, env = "HEARTBEAT_ETCD_LEASE_TTL", value_parser = human_duration, default_value_t = ClusterConfig::default().lease_ttl.into())]
    etcd_lease_ttl: HumanDuration,
    /// The address peers and operators see for this replica. Default: the bound gRPC address.
    #[arg(long, env = "HEARTBEAT_ADVERTISE")]
    advertise: Option<String>,
    /// CA certificate (PEM) that etcd's certificates chain to: TLS to etcd.
    #[arg(long, env = "HEARTBEAT_ETCD_CA")]
    etcd_ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for etcd (with --etcd-key).
    #[arg(long, env = "HEARTBEAT_ETCD_CERT", requires = "etcd_key")]
    etcd_cert: Option<std::path::PathBuf>,
    /// Client key (PEM) for etcd (with --etcd-cert).
    #[arg(long, env = "HEARTBEAT_ETCD_KEY", requires = "etcd_cert")]
    etcd_key: Option<std::path::PathBuf>,
}

impl ClusterArgs {
    /// The cluster's configuration; `None` without `--etcd-endpoints`.
    pub fn config(&self) -> Result<Option<ClusterConfig>, String> {
        if self.etcd_endpoints.is_empty() {
            if self.etcd_ca.is_some() || self.etcd_cert.is_some() {
                return Err("--etcd-ca, --etcd-cert and --etcd-key need --etcd-endpoints".into());
            }
            return Ok(None);
        }
        let read = super::serve::read;
        let identity = match (&self.etcd_cert, &self.etcd_key) {
            (Some(cert), Some(key)) => Some((read("--etcd-cert", cert)?, read("--etcd-key", key)?)),
            _ => None,
        };
        let tls = match &self.etcd_ca {
            Some(ca) => Some(EtcdTls {
                ca: read("--etcd-ca", ca)?,
                identity,
            }),
            None if identity.is_some() => {
                return Err("--etcd-cert and --etcd-key need --etcd-ca".into());
            }
            None => None,
        };
        Ok(Some(ClusterConfig {
            endpoints: self.etcd_endpoints.clone(),
            prefix: self.etcd_prefix.clone(),
            lease_ttl: *self.etcd_lease_ttl,
            advertise: self.advertise.clone(),
            tls,
        }))
    }
}
