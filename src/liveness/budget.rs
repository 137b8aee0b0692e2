//! The server's ping budget: the overload lever of the performance issue.
//!
//! A server sized for `limit` pings per second must degrade past it without
//! killing healthy members. Two levers, both visible to every gRPC client:
//! - **slow down**: every live member's interval is stretched by the same
//!   factor, told in `Pong.interval` (SPEC §2: "set only when the server
//!   changes the agreed interval"). Never beyond `timeout / 2` (the spec's
//!   2× bound: the member's timeout never changes, so neither its deadline
//!   nor the client's own deadline on the server breaks) nor the server's
//!   largest interval;
//! - **refuse**: a Join that would exceed the budget even with everybody at
//!   their slowest allowed interval gets `RESOURCE_EXHAUSTED`.
//!
//! Rates are kept in integer micro-hertz, so adding and removing a member
//! are exact inverses. The stretch moves in steps of 1/[`STEPS`], up at once
//! and down with one step of hysteresis, so a fleet near the limit is not
//! told a new interval on every Join.

use std::time::Duration;

/// The stretch factor moves in steps of 1/STEPS (12.5 %).
pub const STEPS: u64 = 8;

/// Rate of one ping every `interval`, in µHz.
fn micro_hz(interval: Duration) -> u64 {
    let us = interval.as_micros().max(1);
    u64::try_from(1_000_000_000_000u128 / us).unwrap_or(u64::MAX)
}

/// The ping budget and the stretch that keeps the fleet within it.
#[derive(Debug, Clone)]
pub struct PingBudget {
    /// Budget in µHz (`u64::MAX` = unlimited).
    limit: u64,
    /// Pings/s of the live members at their negotiated intervals, in µHz.
    base: u64,
    /// Pings/s of the live members at their slowest allowed intervals.
    slowest: u64,
    /// Stretch factor in 1/STEPS (STEPS = no stretch).
    level: u64,
    /// Largest interval the server agrees to.
    max_interval: Duration,
}

impl PingBudget {
    /// A budget of `limit` pings per second (`None` = unlimited).
    pub fn new(limit: Option<u32>, max_interval: Duration) -> Self {
        Self {
            limit: limit.map_or(u64::MAX, |l| u64::from(l.max(1)) * 1_000_000),
            base: 0,
            slowest: 0,
            level: STEPS,
            max_interval,
        }
    }

    /// The slowest interval a member with this negotiated interval and
    /// timeout may be told.
    pub fn slowest_interval(&self, interval: Duration, timeout: Duration) -> Duration {
        (timeout / 2).min(self.max_interval).max(interval)
    }

    /// Whether one more member (negotiated `interval`, `timeout`) fits,
    /// `replacing` a live one (a takeover) if given.
    pub fn admits(
        &self,
        interval: Duration,
        timeout: Duration,
        replacing: Option<(Duration, Duration)>,
    ) -> bool {
        if self.limit == u64::MAX {
            return true;
        }
        let freed = replacing.map_or(0, |(i, t)| micro_hz(self.slowest_interval(i, t)));
        let needed = micro_hz(self.slowest_interval(interval, timeout));
        self.slowest.saturating_sub(freed).saturating_add(needed) <= self.limit
    }

    /// A member became live.
    pub fn add(&mut self, interval: Duration, timeout: Duration) {
        self.base = self.base.saturating_add(micro_hz(interval));
        self.slowest = self
            .slowest
            .saturating_add(micro_hz(self.slowest_interval(interval, timeout)));
        self.relevel();
    }

    /// A live member ended (DEAD, LEFT, or replaced by a takeover).
    pub fn remove(&mut self, interval: Duration, timeout: Duration) {
        self.base = self.base.saturating_sub(micro_hz(interval));
        self.slowest = self
            .slowest
            .saturating_sub(micro_hz(self.slowest_interval(interval, timeout)));
        self.relevel();
    }

    /// The interval a member with this negotiated interval and timeout
    /// should ping at now.
    pub fn interval(&self, interval: Duration, timeout: Duration) -> Duration {
        if self.level == STEPS {
            return interval;
        }
        let stretched = interval.saturating_mul(self.level as u32) / STEPS as u32;
        // Whole milliseconds: what a client sees in Pong.interval stays tidy.
        let stretched = Duration::from_millis(stretched.as_millis() as u64);
        stretched
            .max(interval)
            .min(self.slowest_interval(interval, timeout))
    }

    /// The stretch factor now (1.0 = none).
    pub fn stretch(&self) -> f64 {
        self.level as f64 / STEPS as f64
    }

    /// Offered load at the negotiated intervals, in pings per second.
    pub fn offered(&self) -> f64 {
        self.base as f64 / 1e6
    }

    fn relevel(&mut self) {
        if self.limit == u64::MAX {
            return;
        }
        // Smallest level with base / (level / STEPS) <= limit.
        let wanted = u64::try_from(
            (u128::from(self.base) * u128::from(STEPS)).div_ceil(u128::from(self.limit)),
        )
        .unwrap_or(u64::MAX)
        .clamp(STEPS, u64::from(u32::MAX));
        if wanted > self.level || wanted + 1 < self.level {
            self.level = wanted;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const T: Duration = Duration::from_secs(3);
    const MAX: Duration = Duration::from_secs(60);

    #[test]
    fn unlimited_never_stretches_or_refuses() {
        let mut b = PingBudget::new(None, MAX);
        for _ in 0..100_000 {
            b.add(S, T);
        }
        assert_eq!(b.interval(S, T), S);
        assert!(b.admits(S, T, None));
        assert_eq!(b.stretch(), 1.0);
    }

    #[test]
    fn stretch_keeps_the_offered_rate_within_the_limit() {
        let mut b = PingBudget::new(Some(100), MAX);
        for _ in 0..100 {
            b.add(S, Duration::from_secs(10));
        }
        assert_eq!(b.interval(S, Duration::from_secs(10)), S, "at the limit");
        for _ in 0..50 {
            b.add(S, Duration::from_secs(10));
        }
        // 150 pings/s offered for 100: 1.5× (12/8), in whole steps.
        assert_eq!(b.stretch(), 1.5);
        assert_eq!(
            b.interval(S, Duration::from_secs(10)),
            1500 * Duration::from_millis(1)
        );
    }

    #[test]
    fn the_stretch_never_passes_half_the_timeout() {
        let mut b = PingBudget::new(Some(10), MAX);
        for _ in 0..16 {
            b.add(S, T);
        }
        assert_eq!(b.stretch(), 1.625);
        assert_eq!(b.interval(S, T), Duration::from_millis(1500));
    }

    #[test]
    fn joins_are_refused_when_even_the_slowest_fleet_is_over() {
        let mut b = PingBudget::new(Some(10), MAX);
        // At 1.5 s (timeout 3 s / 2), 15 members offer 10 pings/s.
        for _ in 0..15 {
            assert!(b.admits(S, T, None));
            b.add(S, T);
        }
        assert!(!b.admits(S, T, None), "a 16th would exceed 10 pings/s");
        assert!(b.admits(S, T, Some((S, T))), "a takeover replaces its rate");
        b.remove(S, T);
        assert!(b.admits(S, T, None));
    }

    #[test]
    fn stretch_comes_down_with_one_step_of_hysteresis() {
        let mut b = PingBudget::new(Some(8), MAX);
        let t = Duration::from_secs(20);
        for _ in 0..12 {
            b.add(S, t);
        }
        assert_eq!(b.stretch(), 1.5);
        b.remove(S, t); // 11/8 wanted: one step below, kept
        assert_eq!(b.stretch(), 1.5);
        b.remove(S, t); // 10/8: two steps below, lowered
        assert_eq!(b.stretch(), 1.25);
        for _ in 0..10 {
            b.remove(S, t);
        }
        assert_eq!(b.stretch(), 1.0);
        assert_eq!(b.interval(S, t), S);
    }

    #[test]
    fn adding_and_removing_are_exact_inverses() {
        let mut b = PingBudget::new(Some(1000), MAX);
        let odd = Duration::from_millis(333);
        for _ in 0..1000 {
            b.add(odd, Duration::from_secs(7));
        }
        for _ in 0..1000 {
            b.remove(odd, Duration::from_secs(7));
        }
        assert_eq!((b.base, b.slowest, b.offered()), (0, 0, 0.0));
    }
}
