//! Server configuration as plain data with defaults and one `validate()`: the
//! CLI only fills it in, tests build it directly, and a bad combination is
//! refused before anything binds a port.

use std::time::Duration;

use crate::liveness::MassFailure;
use crate::liveness::timing::{Bounds, MAX_TIMEOUT, timeout_range};

/// Smallest interval the server may be configured to agree (SPEC §3).
pub const MIN_INTERVAL_FLOOR: Duration = Duration::from_millis(100);
/// Largest interval the server may be configured to agree (SPEC §3).
pub const MAX_INTERVAL_CEILING: Duration = Duration::from_secs(60);

/// Everything `heartbeat serve` can be told.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Interval for a Join that asks for none.
    pub default_interval: Duration,
    /// Timeout for a Join that asks for none.
    pub default_timeout: Duration,
    /// Smallest interval agreed.
    pub min_interval: Duration,
    /// Largest interval agreed.
    pub max_interval: Duration,
    /// How long DEAD and LEFT members stay listed.
    pub retention: Duration,
    /// How long a new Beat stream may take to send Join.
    pub join_timeout: Duration,
    /// Grace period of shutdown: after Drain, health is answered
    /// NOT_SERVING for this long before the listener closes; then open
    /// connections get at most this long again.
    pub drain: Duration,
    /// Member events kept for WatchMembers resumes.
    pub history: usize,
    /// Member events a WatchMembers stream may fall behind before it is
    /// sent a fresh snapshot.
    pub watch_buffer: usize,
    /// Most WatchMembers streams open at once, server-wide.
    pub max_watches: usize,
    /// Most WatchMembers streams open at once on one connection.
    pub max_watches_per_connection: usize,
    /// HTTP/2 streams per connection (a member needs one).
    pub max_concurrent_streams: u32,
    /// A connection quiet this long is probed by the kernel (TCP
    /// keepalive), to drop dead peers.
    pub keepalive_interval: Duration,
    /// How long probes, or data sent, may go unacknowledged before the
    /// kernel drops the connection.
    pub keepalive_timeout: Duration,
    /// Mass-failure protection (`None` = off).
    pub mass_failure: Option<MassFailure>,
    /// Where the member table is kept across restarts (`None` = memory only).
    pub state_dir: Option<std::path::PathBuf>,
    /// Most listed members; a Join of a new identity beyond it is refused.
    pub max_members: usize,
    /// Most connections at once over every port; at the limit a new one is
    /// admitted by closing the longest-idle one (SPEC §6). The default fits
    /// the process's descriptor limit ([`default_max_connections`]).
    pub max_connections: usize,
    /// A connection with no open stream for this long is closed.
    pub idle_timeout: Duration,
    /// Joins per second, server-wide (bursts up to the same number).
    pub max_join_rate: u32,
    /// Pings per second the server is sized for (`None` = unlimited): past
    /// it, intervals stretch through `Pong.interval`, then Joins are refused.
    pub max_ping_rate: Option<u32>,
    /// TLS on the gRPC port (`None` = plaintext).
    pub tls: Option<TlsFiles>,
    /// Who may join what, and who may read (`None` = everybody may).
    pub authz: Option<crate::authz::Authz>,
    /// Cluster mode: the member table in etcd, shared by every replica
    /// (SPEC §7; `None` = the embedded table of one server).
    pub cluster: Option<ClusterConfig>,
}

/// Where the cluster's records are kept (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd client URLs (`host:port` or `http(s)://host:port`).
    pub endpoints: Vec<String>,
    /// Key prefix of the cluster's records.
    pub prefix: String,
    /// TTL of this replica's lease: how long after it stops its members are
    /// SUSPECT (then one member timeout more until DEAD).
    pub lease_ttl: Duration,
    /// The address peers and operators see (`None` = the bound address).
    pub advertise: Option<String>,
    /// TLS to etcd (`None` = plaintext).
    pub tls: Option<EtcdTls>,
}

/// PEM contents for TLS to etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA that etcd's certificates chain to.
    pub ca: Vec<u8>,
    /// Client certificate and key, when etcd asks for one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Shortest `--etcd-lease-ttl` (SPEC §7): about etcd's own minimum (1.5×
/// its election timeout) with room for one missed keepalive.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
/// Longest `--etcd-lease-ttl` (SPEC §7).
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(60);

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            prefix: "/heartbeat/".into(),
            lease_ttl: Duration::from_secs(10),
            advertise: None,
            tls: None,
        }
    }
}

/// PEM contents for TLS on the server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: Vec<u8>,
    /// Private key.
    pub key: Vec<u8>,
    /// CA that client certificates must chain to (mTLS); `None` = no client certs.
    pub client_ca: Option<Vec<u8>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let bounds = Bounds::default();
        Self {
            default_interval: bounds.default_interval,
            default_timeout: bounds.default_timeout,
            min_interval: bounds.min_interval,
            max_interval: bounds.max_interval,
            retention: Duration::from_secs(60),
            join_timeout: Duration::from_secs(5),
            drain: Duration::from_secs(1),
            history: 8192,
            watch_buffer: 1024,
            max_watches: 10_000,
            max_watches_per_connection: 100,
            max_concurrent_streams: 16_384,
            keepalive_interval: Duration::from_secs(20),
            keepalive_timeout: Duration::from_secs(10),
            mass_failure: Some(MassFailure::default()),
            state_dir: None,
            max_members: 100_000,
            max_connections: default_max_connections(),
            idle_timeout: Duration::from_secs(300),
            max_join_rate: 2_000,
            max_ping_rate: None,
            tls: None,
            authz: None,
            cluster: None,
        }
    }
}

/// Descriptors kept free of connections: listeners, standard streams, the
/// state dir's files, etcd and metrics clients, and connections still
/// closing after an eviction.
pub const RESERVED_DESCRIPTORS: u64 = 64 + crate::edge::EVICTION_HEADROOM as u64;

/// The most connections the process's descriptor limit (`RLIMIT_NOFILE`,
/// soft) leaves room for; 20,000 when the limit cannot be read.
pub fn default_max_connections() -> usize {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => {
            usize::try_from(soft.saturating_sub(RESERVED_DESCRIPTORS).clamp(1, 1 << 20))
                .unwrap_or(1 << 20)
        }
        Err(_) => 20_000,
    }
}

/// A configuration that cannot work, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl ServerConfig {
    /// The rules of every listening port.
    pub fn edge(&self) -> crate::edge::EdgeConfig {
        crate::edge::EdgeConfig {
            max_connections: self.max_connections,
            handshake_timeout: self.join_timeout,
            idle_timeout: self.idle_timeout,
            keepalive_interval: self.keepalive_interval,
            keepalive_timeout: self.keepalive_timeout,
            max_concurrent_streams: self.max_concurrent_streams,
        }
    }

    /// The interval bounds for the liveness core.
    pub fn bounds(&self) -> Bounds {
        Bounds {
            default_interval: self.default_interval,
            default_timeout: self.default_timeout,
            min_interval: self.min_interval,
            max_interval: self.max_interval,
        }
    }

    /// Checks every rule of SPEC §3 that the values must obey.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_timing()?;
        self.validate_limits()?;
        self.validate_cluster()
    }

    /// Cluster mode's flags, and what cannot go with them.
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let Some(c) = &self.cluster else {
            return Ok(());
        };
        let err = |m: String| Err(ConfigError(m));
        if self.state_dir.is_some() {
            return err(
                "--state-dir and --etcd-endpoints cannot be used together: the table is either on disk or in etcd"
                    .into(),
            );
        }
        if c.endpoints.is_empty() || c.endpoints.iter().any(|e| e.trim().is_empty()) {
            return err("--etcd-endpoints needs at least one URL, and no empty one".into());
        }
        if !(MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&c.lease_ttl) {
            return err(format!(
                "--etcd-lease-ttl {} is outside [2s, 60s]",
                humantime::format_duration(c.lease_ttl)
            ));
        }
        if !c.prefix.starts_with('/') || !c.prefix.ends_with('/') {
            return err(format!(
                "--etcd-prefix {:?} must start and end with '/'",
                c.prefix
            ));
        }
        Ok(())
    }

    /// The intervals and timeouts.
    fn validate_timing(&self) -> Result<(), ConfigError> {
        let fmt = |d: Duration| humantime::format_duration(d).to_string();
        let err = |m: String| Err(ConfigError(m));
        if self.min_interval < MIN_INTERVAL_FLOOR {
            return err(format!(
                "--min-interval {} is below {}",
                fmt(self.min_interval),
                fmt(MIN_INTERVAL_FLOOR)
            ));
        }
        if self.max_interval > MAX_INTERVAL_CEILING {
            return err(format!(
                "--max-interval {} is above {}",
                fmt(self.max_interval),
                fmt(MAX_INTERVAL_CEILING)
            ));
        }
        if self.min_interval > self.max_interval {
            return err(format!(
                "--min-interval {} is above --max-interval {}",
                fmt(self.min_interval),
                fmt(self.max_interval)
            ));
        }
        if !(self.min_interval..=self.max_interval).contains(&self.default_interval) {
            return err(format!(
                "--default-interval {} is outside [{}, {}]",
                fmt(self.default_interval),
                fmt(self.min_interval),
                fmt(self.max_interval)
            ));
        }
        let (low, high) = timeout_range(self.default_interval);
        if !(low..=high).contains(&self.default_timeout) {
            return err(format!(
                "--default-timeout {} must be 2x-20x --default-interval (and at most {}): [{}, {}]",
                fmt(self.default_timeout),
                fmt(MAX_TIMEOUT),
                fmt(low),
                fmt(high)
            ));
        }
        for (name, d) in [
            ("--join-timeout", self.join_timeout),
            ("--retention", self.retention),
            ("--idle-timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return err(format!("{name} must be greater than zero"));
            }
        }
        Ok(())
    }

    /// The thresholds and limits.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        if let Some(m) = self.mass_failure
            && !(m.threshold > 0.0 && m.threshold < 1.0)
        {
            return err(format!(
                "--mass-failure-threshold {} must be between 0 and 1 (exclusive), or off",
                m.threshold
            ));
        }
        if self.max_members == 0 || self.max_connections == 0 || self.max_join_rate == 0 {
            return err(
                "--max-members, --max-connections and --max-join-rate must be positive".into(),
            );
        }
        if self.max_ping_rate == Some(0) {
            return err("--max-ping-rate must be positive (leave it out for no limit)".into());
        }
        if self.max_watches == 0 || self.max_watches_per_connection == 0 {
            return err("--max-watches and --max-watches-per-connection must be positive".into());
        }
        if self.watch_buffer == 0 || self.max_concurrent_streams == 0 {
            return err("watch buffer and max concurrent streams must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(ServerConfig::default().validate(), Ok(()));
        type Change = fn(&mut ServerConfig);
        let cases: &[(Change, &str)] = &[
            (
                |c| c.min_interval = Duration::from_millis(50),
                "--min-interval",
            ),
            (
                |c| c.max_interval = Duration::from_millis(61_000),
                "--max-interval",
            ),
            (
                |c| c.default_interval = Duration::from_millis(70_000),
                "--default-interval",
            ),
            (
                |c| c.default_timeout = Duration::from_millis(1_000),
                "--default-timeout",
            ),
            (
                |c| c.default_timeout = Duration::from_millis(30_000),
                "--default-timeout",
            ),
            (
                |c| c.join_timeout = Duration::from_millis(0),
                "--join-timeout",
            ),
            (|c| c.retention = Duration::from_millis(0), "--retention"),
            (|c| c.max_ping_rate = Some(0), "--max-ping-rate"),
            (|c| c.idle_timeout = Duration::ZERO, "--idle-timeout"),
        ];
        for (change, flag) in cases {
            let mut c = ServerConfig::default();
            change(&mut c);
            let e = c.validate().unwrap_err();
            assert!(e.0.contains(flag), "{e} names {flag}");
        }
    }
}
