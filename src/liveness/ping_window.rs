//! The sliding-window limiter of rule 3 of SPEC §2: more than
//! [`MAX_PINGS_PER_WINDOW`] pings within any window of
//! [`RATE_WINDOW_INTERVALS`] agreed intervals ends the stream.
//!
//! Exact, and small, because every joined stream holds one for its whole
//! life. It remembers the last 50 pings as the 49 gaps between them, each a
//! `u16` in units of one millisecond (of up to 10 ms when the window is
//! longer than a minute, so that a window always spans fewer than 65,535
//! units), plus their running sum and the newest ping's time: 100 bytes of
//! gaps where 50 `u32` times took 200. A gap too long for a `u16` is stored
//! as `u16::MAX`, which is longer than any window: a span that contains
//! one is never inside the window, as the true span is not either, so the
//! answer stays exact.
//!
//! [`RATE_WINDOW_INTERVALS`]: super::timing::RATE_WINDOW_INTERVALS

use std::time::Duration;

use tokio::time::Instant;

use super::timing::MAX_PINGS_PER_WINDOW;

/// Gaps between the remembered pings.
const GAPS: usize = MAX_PINGS_PER_WINDOW - 1;

/// Units in the longest window: below `u16::MAX`, so a saturated gap is
/// always longer than the window.
const MAX_WINDOW_UNITS: u128 = 60_000;

/// Remembers the last [`MAX_PINGS_PER_WINDOW`] pings of one stream.
#[derive(Debug, Clone)]
pub struct PingWindow {
    base: Instant,
    /// The newest remembered ping, in units since `base`.
    last: u32,
    /// The sum of `gaps`: the newest ping minus the oldest.
    sum: u32,
    /// The window, in units.
    window: u32,
    /// Milliseconds per unit.
    unit_ms: u16,
    /// Pings remembered (up to [`MAX_PINGS_PER_WINDOW`]).
    len: u8,
    /// Index of the oldest gap.
    head: u8,
    gaps: [u16; GAPS],
}

impl PingWindow {
    /// A limiter for a stream that started at `base`, over `window` (10
    /// agreed intervals).
    pub fn new(base: Instant, window: Duration) -> Self {
        let window_ms = window.as_millis().max(1);
        let unit_ms = window_ms.div_ceil(MAX_WINDOW_UNITS).max(1);
        Self {
            base,
            last: 0,
            sum: 0,
            window: (window_ms / unit_ms) as u32,
            unit_ms: unit_ms.min(u128::from(u16::MAX)) as u16,
            len: 0,
            head: 0,
            gaps: [0; GAPS],
        }
    }

    /// The window, as given (to a unit).
    pub fn window(&self) -> Duration {
        Duration::from_millis(u64::from(self.window) * u64::from(self.unit_ms))
    }

    /// Records a ping at `now` if it is within the limit; returns false
    /// (and records nothing) when it is one too many.
    pub fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.base).as_millis();
        // Units since the start, wrapping after 2^32 of them (49 days at
        // 1 ms): only differences are used, and a live member pings at
        // least once per timeout.
        let now_units = (elapsed / u128::from(self.unit_ms)) as u32;
        if self.len == 0 {
            self.last = now_units;
            self.len = 1;
            return true;
        }
        let gap = now_units.wrapping_sub(self.last);
        let full = usize::from(self.len) == MAX_PINGS_PER_WINDOW;
        if full && u64::from(gap) + u64::from(self.sum) < u64::from(self.window) {
            return false;
        }
        let gap = gap.min(u32::from(u16::MAX)) as u16;
        let head = usize::from(self.head);
        if full {
            // The oldest ping leaves with the gap after it.
            self.sum -= u32::from(self.gaps[head]);
            self.gaps[head] = gap;
            self.head = ((head + 1) % GAPS) as u8;
        } else {
            self.gaps[(head + usize::from(self.len) - 1) % GAPS] = gap;
            self.len += 1;
        }
        self.sum += u32::from(gap);
        self.last = now_units;
        true
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::liveness::timing::rate_window;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fifty_then_the_fifty_first_is_refused() {
        let t0 = Instant::now();
        let mut w = PingWindow::new(t0, rate_window(ms(1_000)));
        for i in 0..50 {
            assert!(w.admit(t0 + ms(i)), "ping {i}");
        }
        assert!(!w.admit(t0 + ms(50)));
        // A refused ping is not recorded: once the oldest leaves the window,
        // one more ping fits.
        assert!(!w.admit(t0 + ms(9_999)));
        assert!(w.admit(t0 + ms(10_000)));
        assert!(!w.admit(t0 + ms(10_000)));
        assert_eq!(w.window(), ms(10_000));
    }

    #[test]
    fn a_steady_rate_at_the_limit_is_never_refused() {
        let t0 = Instant::now();
        let mut w = PingWindow::new(t0, rate_window(ms(100)));
        // Five pings per interval forever: exactly at the limit.
        for i in 0..10_000u64 {
            assert!(w.admit(t0 + ms(i * 20)), "ping {i}");
        }
    }

    #[test]
    fn the_longest_window_counts_in_ten_millisecond_units() {
        // Interval 60 s: a window of 600 s.
        let t0 = Instant::now();
        let mut w = PingWindow::new(t0, rate_window(Duration::from_secs(60)));
        assert_eq!(w.window(), Duration::from_secs(600));
        for i in 0..50 {
            assert!(w.admit(t0 + Duration::from_secs(i)), "ping {i}");
        }
        assert!(!w.admit(t0 + Duration::from_secs(599)));
        assert!(w.admit(t0 + Duration::from_secs(600)));
    }

    #[test]
    fn a_gap_longer_than_a_u16_never_makes_a_flood() {
        let t0 = Instant::now();
        let mut w = PingWindow::new(t0, rate_window(ms(6_000)));
        // 49 pings at once, a pause of 100 s (over u16::MAX ms), then
        // pings at once again: the pause's gap saturates, and still the
        // window (60 s) takes 50 of them before refusing the 51st.
        for _ in 0..49 {
            assert!(w.admit(t0));
        }
        let later = t0 + Duration::from_secs(100);
        for i in 0..50 {
            assert!(w.admit(later), "ping {i} after the pause");
        }
        assert!(
            !w.admit(later),
            "the 51st within the window is one too many"
        );
    }

    proptest! {
        /// Against the rule itself: a ping is refused exactly when the 50
        /// pings admitted before it all lie within the window before it.
        #[test]
        fn agrees_with_the_rule(
            interval_ms in 100u64..=6_000,
            gaps in proptest::collection::vec(0u64..2_000, 1..400),
        ) {
            let t0 = Instant::now();
            let window = rate_window(ms(interval_ms));
            let mut w = PingWindow::new(t0, window);
            let mut admitted: Vec<u64> = Vec::new();
            let mut at = 0;
            for gap in gaps {
                at += gap;
                let n = admitted.len();
                let want = n < MAX_PINGS_PER_WINDOW
                    || at - admitted[n - MAX_PINGS_PER_WINDOW] >= window.as_millis() as u64;
                prop_assert_eq!(w.admit(t0 + ms(at)), want, "ping at {} ms", at);
                if want {
                    admitted.push(at);
                }
            }
        }
    }
}
