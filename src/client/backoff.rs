//! Reconnect backoff as validated plain data and pure functions (linkerd's
//! `exp-backoff` shape): the schedule of gRPC's connection-backoff spec
//! (initial 100 ms, ×1.6, ±20 % jitter, cap 10 s), with the random draw passed
//! in so tests pin every bound.

use std::time::Duration;

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry.
    pub initial: Duration,
    /// Growth factor per failed attempt (≥ 1).
    pub multiplier: f64,
    /// Relative jitter in `[0, 1)`: the delay is spread by ± this fraction.
    pub jitter: f64,
    /// Cap of the delay before jitter.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            multiplier: 1.6,
            jitter: 0.2,
            max: Duration::from_secs(10),
        }
    }
}

/// A backoff that cannot work, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid backoff: {0}")]
pub struct BackoffError(&'static str);

impl Backoff {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), BackoffError> {
        if self.initial.is_zero() {
            return Err(BackoffError("initial delay must be positive"));
        }
        if self.max < self.initial {
            return Err(BackoffError("max must be at least the initial delay"));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(BackoffError("multiplier must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(BackoffError("jitter must be in [0, 1)"));
        }
        Ok(())
    }

    /// The un-jittered delay after `failures` consecutive failed attempts
    /// (1 = the first failure): `min(initial × multiplier^(failures-1), max)`.
    pub fn base(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(64) as i32;
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exp);
        Duration::from_secs_f64(secs.min(self.max.as_secs_f64()))
    }

    /// The delay after `failures` failed attempts, jittered by `unit` (a
    /// uniform draw from `[0, 1)`): `base × (1 + jitter × (2·unit − 1))`.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let spread = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        self.base(failures).mul_f64(spread)
    }
}

/// Delay before the first reconnect after a lost server: uniform in
/// `[0, interval)` by `unit`. A fleet that lost the same server at the same
/// moment (a restart) spreads its rejoins over one interval instead of
/// arriving in lockstep; one interval is well inside the timeout (≥ 2
/// intervals) the server gives a member before it is declared DEAD.
pub fn first_reconnect_delay(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn schedule_table() {
        let b = Backoff::default();
        // failures -> base delay in ms (100 × 1.6^(n-1), capped at 10 s)
        let table = [
            (1, 100),
            (2, 160),
            (3, 256),
            (4, 409),
            (5, 655),
            (10, 6_871),
            (11, 10_000),
            (40, 10_000),
        ];
        for (failures, want) in table {
            assert_eq!(ms(b.base(failures)), want, "failures {failures}");
        }
        assert_eq!(ms(b.base(0)), 100);
    }

    #[test]
    fn jitter_extremes() {
        let b = Backoff::default();
        assert_eq!(ms(b.delay(1, 0.0)), 80);
        assert_eq!(ms(b.delay(1, 0.5)), 100);
        assert_eq!(ms(b.delay(1, 0.999_999_9)), 119);
        assert_eq!(ms(b.delay(20, 0.0)), 8_000);
        assert_eq!(ms(b.delay(20, 1.0)), 12_000);
    }

    #[test]
    fn validation() {
        assert!(Backoff::default().validate().is_ok());
        let bad = [
            Backoff {
                initial: Duration::ZERO,
                ..Backoff::default()
            },
            Backoff {
                max: Duration::from_millis(50),
                ..Backoff::default()
            },
            Backoff {
                multiplier: 0.5,
                ..Backoff::default()
            },
            Backoff {
                multiplier: f64::NAN,
                ..Backoff::default()
            },
            Backoff {
                jitter: 1.0,
                ..Backoff::default()
            },
            Backoff {
                jitter: -0.1,
                ..Backoff::default()
            },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?}");
        }
    }

    proptest! {
        #[test]
        fn delay_is_within_jitter_of_a_monotone_capped_base(failures in 1u32..200, unit in 0.0f64..1.0) {
            let b = Backoff::default();
            let base = b.base(failures).as_secs_f64();
            let d = b.delay(failures, unit).as_secs_f64();
            prop_assert!(d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9);
            prop_assert!(d <= 12.0 + 1e-9);
            prop_assert!(b.base(failures + 1) >= b.base(failures));
        }

        #[test]
        fn first_reconnect_is_within_one_interval(ms in 100u64..60_000, unit in 0.0f64..1.0) {
            let i = Duration::from_millis(ms);
            prop_assert!(first_reconnect_delay(i, unit) <= i);
        }
    }
}
