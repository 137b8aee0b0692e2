//! The standard `process_*` metrics of Prometheus client libraries (CPU,
//! memory, descriptors, threads, start time), read from `/proc/self` at
//! each scrape, so a heartbeat process looks like any other to dashboards.
//! On a system without `/proc` they are simply absent.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::procfs::ProcStats;

/// Collects `process_*` for this process.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// This process's figures, as the metrics report them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    cpu_seconds: f64,
    threads: i64,
    start_time: f64,
    virtual_bytes: i64,
    resident_bytes: i64,
    open_fds: i64,
    max_fds: i64,
}

fn read() -> Option<Reading> {
    let p = ProcStats::own()?;
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Some(Reading {
        cpu_seconds: p.cpu.as_secs_f64(),
        threads: int(p.threads),
        start_time: p.start_time()?,
        virtual_bytes: int(p.virtual_bytes),
        resident_bytes: int(p.rss),
        open_fds: int(crate::procfs::open_fds()?),
        max_fds: rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(-1, |(soft, _)| int(soft)),
    })
}

fn gauge<N: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, unit, g.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(r) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(r.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds.",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let e = &mut encoder;
        gauge(
            e,
            "process_open_fds",
            "Number of open file descriptors.",
            None,
            r.open_fds,
        )?;
        gauge(
            e,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            None,
            r.max_fds,
        )?;
        gauge(
            e,
            "process_virtual_memory",
            "Virtual memory size in bytes.",
            Some(&Unit::Bytes),
            r.virtual_bytes,
        )?;
        gauge(
            e,
            "process_resident_memory",
            "Resident memory size in bytes.",
            Some(&Unit::Bytes),
            r.resident_bytes,
        )?;
        gauge(
            e,
            "process_start_time",
            "Start time of the process since unix epoch in seconds.",
            Some(&Unit::Seconds),
            r.start_time,
        )?;
        gauge(
            e,
            "process_threads",
            "Number of OS threads in the process.",
            None,
            r.threads,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let r = read().expect("/proc is readable");
        assert!(r.resident_bytes > 1 << 20, "{r:?}");
        assert!(
            r.threads >= 1 && r.open_fds >= 3 && r.max_fds >= r.open_fds,
            "{r:?}"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            r.start_time <= now + 1.0 && r.start_time > now - 86_400.0 * 365.0,
            "{r:?}"
        );
    }
}
