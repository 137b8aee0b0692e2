//! What Linux's `/proc` says of a process: CPU time, memory, threads,
//! start time, descriptors. One parser for the bench (another process's
//! figures) and the `process_*` metrics (this process's).

use std::time::Duration;

/// Linux reports times in clock ticks of USER_HZ, 100 on every common
/// architecture.
const TICKS_PER_SECOND: u64 = 100;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStats {
    /// User + system CPU time so far.
    pub cpu: Duration,
    /// Resident set size, in bytes.
    pub rss: u64,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: u64,
    /// OS threads.
    pub threads: u64,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
}

impl ProcStats {
    /// Reads `/proc/PID/stat` and `/proc/PID/status`; `None` when unavailable.
    pub fn read(pid: u32) -> Option<Self> {
        Self::read_at(&pid.to_string())
    }

    /// [`ProcStats::read`] of this process.
    pub fn own() -> Option<Self> {
        Self::read_at("self")
    }

    fn read_at(pid: &str) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may contain spaces) start at
        // ')'; field n of the line is index n - 3 here.
        let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
        let ticks = num(11)? + num(12)?;
        Some(ProcStats {
            cpu: Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND),
            rss: status_kib(pid, "VmRSS:")? * 1024,
            virtual_bytes: num(20)?,
            threads: num(17)?,
            start_ticks: num(19)?,
        })
    }

    /// When the process started, in seconds since the Unix epoch.
    pub fn start_time(&self) -> Option<f64> {
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let btime: f64 = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(btime + self.start_ticks as f64 / TICKS_PER_SECOND as f64)
    }
}

/// A `kB` field of `/proc/PID/status`.
fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Descriptors this process has open.
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = ProcStats::read(std::process::id()).expect("/proc is readable");
        assert!(s.rss > 1024 * 1024, "some memory: {s:?}");
        assert!(s.threads >= 1 && s.virtual_bytes >= s.rss, "{s:?}");
        assert!(ProcStats::read(u32::MAX).is_none());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = ProcStats::own().unwrap().start_time().unwrap();
        assert!(started <= now + 1.0 && started > now - 86_400.0 * 365.0);
        assert!(open_fds().unwrap() >= 3);
    }
}
