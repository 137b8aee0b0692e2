//! `heartbeat bench`: the load generator users run against their own
//! deployment (like `redis-benchmark`). N members share C connections (HTTP/2
//! streams), each pinging at the agreed interval; optionally a fraction of them
//! hangs mid-run (stops pinging, keeps its stream open) so the server's
//! detection can be measured from the outside.
//!
//! It reports:
//! - achieved pings/s and pong RTT percentiles (hdrhistogram);
//! - false expiries: a member that kept pinging but whose stream was ended;
//! - detection lateness of the hung members: when DEADLINE_EXCEEDED arrived,
//!   minus their last ping plus the timeout;
//! - join time, and how many Joins the server refused (RESOURCE_EXHAUSTED)
//!   and how many members it slowed down (`Pong.interval`, which the bench
//!   adopts like any client): the overload behaviour of `--max-ping-rate`;
//! - with a server PID, the server's CPU seconds per ping and RSS per member,
//!   read from /proc;
//! - with `--watchers N`, the Health Watch fan-out: N Watch streams on a
//!   service whose health flips once a second, and how long each flip took
//!   to reach them (see `watch.rs`).

mod member;
mod run;
mod watch;

use std::time::Duration;

pub use crate::procfs::ProcStats;
pub use run::run;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Server URL (`http://host:port`, or `https://` with `tls`).
    pub url: String,
    /// TLS towards the server.
    pub tls: Option<crate::client::ClientTls>,
    /// Bearer token sent with every call.
    pub token: Option<String>,
    /// Service name the members join as.
    pub service: String,
    /// Members.
    pub members: usize,
    /// Connections they share.
    pub connections: usize,
    /// Requested interval.
    pub interval: Duration,
    /// Requested timeout (`None` = server default).
    pub timeout: Option<Duration>,
    /// How long the measured phase lasts (after all joined).
    pub duration: Duration,
    /// Fraction of members that hang a third of the way in, in `[0, 1]`.
    pub hung: f64,
    /// The server's PID, for CPU and memory figures.
    pub server_pid: Option<u32>,
    /// Print a progress line every second (to stderr).
    pub progress: bool,
    /// Health Watch streams measuring the fan-out of a flip (0 = none).
    pub watchers: usize,
    /// How long members keep retrying a refused Join (RESOURCE_EXHAUSTED)
    /// before they count as refused.
    pub join_within: Duration,
}

/// The Health Watch fan-out: flips of one service's health and how long
/// each took to reach every watcher.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchReport {
    /// Watch streams.
    pub watchers: usize,
    /// Flips of the service's health.
    pub flips: u64,
    /// Flip messages received (flips × watchers when none was lost).
    pub deliveries: u64,
    /// From the flipping Ping to a watcher's message: p50.
    pub p50: Duration,
    /// p99.
    pub p99: Duration,
    /// Max.
    pub max: Duration,
}

/// What was measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Members the run asked for.
    pub members: usize,
    /// Members that joined: every figure below is about them.
    pub joined: usize,
    /// Members whose every Join within the join window got
    /// RESOURCE_EXHAUSTED (the server at a limit).
    pub refused: usize,
    /// Members that did not join for another reason.
    pub failed: usize,
    /// RESOURCE_EXHAUSTED answers that members retried (with backoff).
    pub join_retries: u64,
    /// Members the server told a longer interval (Pong.interval).
    pub slowed: usize,
    /// From the first Join sent to the last Welcome received.
    pub join_time: Duration,
    /// Pongs received in the measured phase.
    pub pongs: u64,
    /// Pongs per second in the measured phase.
    pub pings_per_sec: f64,
    /// Pong RTT percentiles (p50, p99, p99.9, max).
    pub rtt_p50: Duration,
    /// p99.
    pub rtt_p99: Duration,
    /// p99.9.
    pub rtt_p999: Duration,
    /// Max.
    pub rtt_max: Duration,
    /// Pinging members whose stream ended anyway.
    pub false_expiries: usize,
    /// Hung members.
    pub hung: usize,
    /// Hung members the server ended with DEADLINE_EXCEEDED.
    pub hung_detected: usize,
    /// Detection lateness of the hung members (p50, p99, max).
    pub lateness_p50: Duration,
    /// p99.
    pub lateness_p99: Duration,
    /// Max.
    pub lateness_max: Duration,
    /// Server CPU seconds per ping (with a PID).
    pub cpu_per_ping: Option<Duration>,
    /// Server RSS growth per member, in bytes (with a PID).
    pub rss_per_member: Option<u64>,
    /// Server RSS at the end, in bytes (with a PID).
    pub rss: Option<u64>,
    /// Health Watch fan-out (with `--watchers`).
    pub watch: Option<WatchReport>,
}

impl Report {
    /// The report as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let ms3 =
            |p50, p99, max| serde_json::json!({ "p50": ms(p50), "p99": ms(p99), "max": ms(max) });
        serde_json::json!({
            "members": self.members,
            "joined": self.joined,
            "refused": self.refused,
            "failed": self.failed,
            "join_retries": self.join_retries,
            "slowed": self.slowed,
            "join_time_ms": self.join_time.as_secs_f64() * 1e3,
            "pongs": self.pongs,
            "pings_per_sec": self.pings_per_sec,
            "rtt_us": { "p50": us(self.rtt_p50), "p99": us(self.rtt_p99), "p999": us(self.rtt_p999), "max": us(self.rtt_max) },
            "false_expiries": self.false_expiries,
            "hung": self.hung,
            "hung_detected": self.hung_detected,
            "detection_lateness_ms": ms3(self.lateness_p50, self.lateness_p99, self.lateness_max),
            "server_cpu_us_per_ping": self.cpu_per_ping.map(us),
            "server_rss_per_member_bytes": self.rss_per_member,
            "server_rss_bytes": self.rss,
            "watch": self.watch.as_ref().map(|w| serde_json::json!({
                "watchers": w.watchers,
                "flips": w.flips,
                "deliveries": w.deliveries,
                "fanout_ms": ms3(w.p50, w.p99, w.max),
            })),
        })
    }

    /// The report for a human.
    pub fn human(&self) -> String {
        let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
        let mut out = format!(
            "members joined      {}\njoin time           {}\npings/s             {:.0}\n\
             pong RTT            p50 {}  p99 {}  p99.9 {}  max {}\nfalse expiries      {}\n",
            if self.joined < self.members {
                format!(
                    "{} of {} ({} refused: RESOURCE_EXHAUSTED, {} failed)",
                    self.joined, self.members, self.refused, self.failed
                )
            } else {
                self.joined.to_string()
            },
            ms(self.join_time),
            self.pings_per_sec,
            ms(self.rtt_p50),
            ms(self.rtt_p99),
            ms(self.rtt_p999),
            ms(self.rtt_max),
            self.false_expiries,
        );
        self.human_optional(&mut out);
        out
    }

    /// The lines only some runs have: retries, hung members, slowed members,
    /// the watch fan-out, the server's CPU and memory.
    fn human_optional(&self, out: &mut String) {
        let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
        if self.join_retries > 0 {
            *out += &format!(
                "join retries        {} (RESOURCE_EXHAUSTED, retried with backoff)\n",
                self.join_retries
            );
        }
        if self.hung > 0 {
            *out += &format!(
                "hung detected       {}/{}\ndetection lateness  p50 {}  p99 {}  max {}\n",
                self.hung_detected,
                self.hung,
                ms(self.lateness_p50),
                ms(self.lateness_p99),
                ms(self.lateness_max)
            );
        }
        if self.slowed > 0 {
            *out += &format!("slowed by server    {} (Pong.interval)\n", self.slowed);
        }
        if let Some(w) = &self.watch {
            *out += &format!(
                "health watch        {} flips to {} watchers: {}/{} delivered\n\
                 watch fan-out       p50 {}  p99 {}  max {}\n",
                w.flips,
                w.watchers,
                w.deliveries,
                w.flips * w.watchers as u64,
                ms(w.p50),
                ms(w.p99),
                ms(w.max)
            );
        }
        if let Some(cpu) = self.cpu_per_ping {
            *out += &format!("server CPU/ping     {:.1} us\n", cpu.as_secs_f64() * 1e6);
        }
        if let (Some(per), Some(rss)) = (self.rss_per_member, self.rss) {
            *out += &format!(
                "server RSS          {:.1} MiB ({:.2} KiB per member)\n",
                rss as f64 / 1048576.0,
                per as f64 / 1024.0
            );
        }
    }
}
