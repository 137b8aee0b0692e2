//! The standard `process_*` metrics of Prometheus client libraries (CPU,
//! memory, descriptors, threads, start time), read from `/proc/self` at
//! each scrape, so a heartbeat process looks like any other to dashboards.
//! On a system without `/proc` they are simply absent.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Linux reports times in clock ticks of USER_HZ, 100 on every common
/// architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// Collects `process_*` for this process.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Reading {
    pub cpu_seconds: f64,
    pub threads: i64,
    pub start_time: f64,
    pub virtual_bytes: i64,
    pub resident_bytes: i64,
    pub open_fds: i64,
    pub max_fds: i64,
}

pub(crate) fn read() -> Option<Reading> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may contain spaces) start at ')';
    // field n of the line is index n - 3 here.
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let ticks = num(11)? + num(12)?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: f64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
    let max_fds = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(soft, _)| i64::try_from(soft).unwrap_or(i64::MAX))
        .unwrap_or(-1);
    Some(Reading {
        cpu_seconds: ticks as f64 / TICKS_PER_SECOND,
        threads: i64::try_from(num(17)?).ok()?,
        start_time: btime + num(19)? as f64 / TICKS_PER_SECOND,
        virtual_bytes: i64::try_from(num(20)?).ok()?,
        resident_bytes: rss_kib * 1024,
        open_fds,
        max_fds,
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
