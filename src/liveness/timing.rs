//! Timing maths as pure functions (the memberlist `suspicion.go` habit): every
//! number the liveness rules of SPEC §3 depend on is computed here from plain
//! inputs, so the table tests below pin the contract without a runtime.

use std::time::Duration;

use tokio::time::Instant;

/// Pings allowed within any window of [`RATE_WINDOW_INTERVALS`] agreed
/// intervals: `10 + 4 × (10 intervals / interval)` = 50 (SPEC §2 rule 3).
pub const MAX_PINGS_PER_WINDOW: usize = 10 + 4 * RATE_WINDOW_INTERVALS as usize;

/// Length of the ping-rate window, in agreed intervals.
pub const RATE_WINDOW_INTERVALS: u32 = 10;

/// Upper bound on any agreed timeout (SPEC §3).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// The server's configured interval bounds and defaults (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Interval given to a Join that asks for none.
    pub default_interval: Duration,
    /// Timeout given to a Join that asks for none (before clamping).
    pub default_timeout: Duration,
    /// Smallest interval agreed.
    pub min_interval: Duration,
    /// Largest interval agreed.
    pub max_interval: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            default_interval: Duration::from_secs(1),
            default_timeout: Duration::from_secs(3),
            min_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(60),
        }
    }
}

/// The interval and timeout the server agrees to, from what a Join asked.
///
/// Unset or zero takes the default; the interval is clamped to
/// `[min_interval, max_interval]`, then the timeout to
/// `[2 × interval, min(20 × interval, 10 min)]`.
pub fn negotiate(
    bounds: &Bounds,
    interval: Option<Duration>,
    timeout: Option<Duration>,
) -> (Duration, Duration) {
    let interval = interval
        .filter(|d| !d.is_zero())
        .unwrap_or(bounds.default_interval)
        .clamp(bounds.min_interval, bounds.max_interval);
    let (low, high) = timeout_range(interval);
    let timeout = timeout
        .filter(|d| !d.is_zero())
        .unwrap_or(bounds.default_timeout)
        .clamp(low, high);
    (interval, timeout)
}

/// The allowed timeouts for an agreed interval: 2×–20× it, at most 10 min.
pub fn timeout_range(interval: Duration) -> (Duration, Duration) {
    let low = interval.saturating_mul(2);
    let high = interval.saturating_mul(20).min(MAX_TIMEOUT).max(low);
    (low, high)
}

/// Smallest interval of SPEC §3: no client pings faster, whatever a server
/// says (SPEC §5).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Largest interval of SPEC §3.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// The interval a client pings at when a server tells it `told`
/// (`Welcome.interval` or `Pong.interval`) with the agreed `timeout`: within
/// SPEC §3's bounds and at most half the timeout, so a broken or hostile
/// server can neither make a client flood it nor make it miss its own
/// deadline.
pub fn client_interval(told: Duration, timeout: Duration) -> Duration {
    told.clamp(MIN_INTERVAL, MAX_INTERVAL)
        .min(timeout / 2)
        .max(MIN_INTERVAL)
}

/// Silence after which an ALIVE member becomes SUSPECT: `(interval + timeout) / 2`.
pub fn suspect_after(interval: Duration, timeout: Duration) -> Duration {
    (interval + timeout) / 2
}

/// Length of the ping-rate window for an agreed interval.
pub fn rate_window(interval: Duration) -> Duration {
    interval.saturating_mul(RATE_WINDOW_INTERVALS)
}

pub use super::ping_window::PingWindow;

/// A token bucket: `rate` admissions per second on average, bursts of up
/// to `burst`. Used for the server-wide join rate.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: None,
        }
    }

    /// Takes a token at `now` if there is one.
    pub fn admit(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_interval_table() {
        let ms = Duration::from_millis;
        let cases = [
            // told, timeout, pinged at
            (ms(1_000), ms(3_000), ms(1_000)),
            (ms(1), ms(3_000), ms(100)),
            (Duration::ZERO, ms(3_000), ms(100)),
            (ms(2_500), ms(3_000), ms(1_500)),
            (ms(120_000), ms(600_000), ms(60_000)),
            (ms(1_000), ms(150), ms(100)),
        ];
        for (told, timeout, want) in cases {
            assert_eq!(client_interval(told, timeout), want, "{told:?} {timeout:?}");
        }
    }

    #[test]
    fn token_bucket_table() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5);
        // A burst of 5, then nothing until refilled.
        let admitted: Vec<bool> = (0..7).map(|_| b.admit(t0)).collect();
        assert_eq!(admitted, [true, true, true, true, true, false, false]);
        assert!(!b.admit(t0 + ms(99)));
        assert!(b.admit(t0 + ms(100)), "one token per 100 ms at 10/s");
        assert!(!b.admit(t0 + ms(150)));
        // A long pause refills only up to the burst.
        let later = t0 + ms(60_000);
        assert_eq!((0..7).filter(|_| b.admit(later)).count(), 5);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn negotiate_table() {
        let b = Bounds::default();
        // (asked interval, asked timeout) -> (agreed interval, agreed timeout)
        let table: &[(Option<u64>, Option<u64>, u64, u64)] = &[
            (None, None, 1_000, 3_000),
            (Some(0), Some(0), 1_000, 3_000),
            (Some(500), None, 500, 3_000),
            (Some(50), None, 100, 2_000), // interval up to min, timeout to 20x
            (Some(120_000), None, 60_000, 120_000), // interval down to max, timeout up to 2x
            (Some(1_000), Some(1_000), 1_000, 2_000), // timeout up to 2x
            (Some(1_000), Some(60_000), 1_000, 20_000), // timeout down to 20x
            (Some(60_000), Some(3_600_000), 60_000, 600_000), // 10 min cap
            (None, Some(10_000), 1_000, 10_000),
            (Some(250), Some(750), 250, 750),
        ];
        for &(i, t, wi, wt) in table {
            let got = negotiate(&b, i.map(ms), t.map(ms));
            assert_eq!(got, (ms(wi), ms(wt)), "asked interval {i:?} timeout {t:?}");
        }
    }

    #[test]
    fn negotiate_respects_custom_bounds() {
        let b = Bounds {
            default_interval: ms(200),
            default_timeout: ms(900),
            min_interval: ms(150),
            max_interval: ms(400),
        };
        assert_eq!(negotiate(&b, None, None), (ms(200), ms(900)));
        assert_eq!(negotiate(&b, Some(ms(10)), None), (ms(150), ms(900)));
        assert_eq!(negotiate(&b, Some(ms(1_000)), None), (ms(400), ms(900)));
    }

    #[test]
    fn suspect_and_window_table() {
        let table: &[(u64, u64, u64, u64)] = &[
            // interval, timeout, suspect after, rate window
            (1_000, 3_000, 2_000, 10_000),
            (100, 200, 150, 1_000),
            (60_000, 600_000, 330_000, 600_000),
        ];
        for &(i, t, s, w) in table {
            assert_eq!(suspect_after(ms(i), ms(t)), ms(s));
            assert_eq!(rate_window(ms(i)), ms(w));
        }
        assert_eq!(MAX_PINGS_PER_WINDOW, 50);
    }
}
