//! CPU time and RSS of another process, from /proc (Linux).

use std::time::Duration;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStats {
    /// User + system CPU time so far.
    pub cpu: Duration,
    /// Resident set size, in bytes.
    pub rss: u64,
}

impl ProcStats {
    /// Reads `/proc/PID/stat` and `/proc/PID/status`; `None` when unavailable.
    pub fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may contain spaces) start at ')'.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line: 12 and 13 here.
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        // Linux reports CPU in clock ticks of USER_HZ, 100 on every common
        // architecture.
        Some(ProcStats {
            cpu: Duration::from_millis(ticks * 10),
            rss: rss_kib * 1024,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = ProcStats::read(std::process::id()).expect("/proc is readable");
        assert!(s.rss > 1024 * 1024, "some memory: {s:?}");
        assert!(ProcStats::read(u32::MAX).is_none());
    }
}
