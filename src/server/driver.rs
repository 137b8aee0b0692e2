//! The timer driver: one task that sleeps until the registry's earliest
//! deadline, polls it, and sleeps again. It is woken early only when a new
//! deadline lands before the one it sleeps for (a Join), never per ping.
//!
//! Lazy re-arms wake it on a grid of [`GRANULE`], as ZooKeeper rounds
//! session expiries up to its tick; real deadlines wake it exactly. Every
//! live member has a queue entry that falls due about once per timeout (the
//! lazy re-arm of a pinging member), so a large fleet has a due entry nearly
//! every millisecond. Waking for each costs a thread wake-up, a context
//! switch and the registry lock. Measured at 10k members, 1 Hz, server
//! pinned to one core: 3.6k epoll waits a second before the grid, 2.0k
//! after, and CPU per ping 21.1 -> 20.8 µs. Before it sleeps until the
//! next grid point, the driver re-arms every entry due before it whose
//! member has pinged since ([`crate::liveness::Registry::next_wake`]), the
//! same work done a few milliseconds early. If what is left before that
//! point is the deadline of a member that looks really silent (SUSPECT, or
//! overdue for a ping), it sleeps until exactly then instead. The grid's
//! saving stays (re-arms never wake it on their own), and a member that
//! stops is judged within the timer's millisecond, not up to a granule late.
//!
//! It is also the local-pause guard. It never sleeps longer than [`TICK`],
//! and it measures how late it wakes. Lateness beyond [`STALL_THRESHOLD`]
//! means the server itself did not run: a pause, CPU starvation, SIGSTOP.
//! Members could not be heard during that time, so their silence is not
//! their fault. The lag is credited to the registry (every pending deadline
//! moves later by it, once) *before* the registry is polled, so no member is
//! declared DEAD for the server's own stall. A member that really stopped
//! still goes DEAD one timeout after the server resumes.
//!
//! Every stall is counted (`heartbeat_stalls_total`, and the lag histogram),
//! but only one as long as the smallest agreed interval is logged: a shorter
//! one cannot cost a member even one ping, and on a busy or small machine
//! scheduler noise of a few tens of milliseconds is ordinary.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::state::Shared;

/// Longest sleep: the resolution of stall detection.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// Wake-up grid: a deadline is acted on at most this late (plus scheduling).
pub(crate) const GRANULE: Duration = Duration::from_millis(10);

/// Lateness below this is ordinary timer and scheduling noise.
pub(crate) const STALL_THRESHOLD: Duration = Duration::from_millis(20);

/// What to do about the driver waking `lag` late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stall {
    /// Noise: nothing.
    None,
    /// Credit it to pending deadlines and count it.
    Credit,
    /// Credit and count it, and log it: as long as `min_interval`, it could
    /// have cost members a ping.
    CreditAndWarn,
}

/// Judges a lag, given the smallest interval the server agrees.
pub(crate) fn judge(lag: Duration, min_interval: Duration) -> Stall {
    if lag <= STALL_THRESHOLD {
        Stall::None
    } else if lag < min_interval {
        Stall::Credit
    } else {
        Stall::CreditAndWarn
    }
}

pub(crate) async fn run(shared: Arc<Shared>) {
    let sleep = tokio::time::sleep(TICK);
    tokio::pin!(sleep);
    let mut stall = None;
    let epoch = Instant::now();
    loop {
        let now = Instant::now();
        let next = shared.with(|i| {
            if let Some(lag) = stall.take() {
                i.core.stalled(lag);
            }
            i.core.poll(now);
            let grid = on_grid(epoch, i.core.next_deadline()?);
            Some(i.core.next_wake(now, grid).unwrap_or(grid))
        });
        let target = next.map_or(now + TICK, |n| n.min(now + TICK));
        sleep.as_mut().reset(target);
        let slept = tokio::select! {
            _ = &mut sleep => true,
            _ = shared.wake.notified() => false,
            _ = shared.drain.cancelled() => return,
        };
        // Lateness counts whichever branch woke us: after a stall the
        // timer and a wake-up (a Join that moved the earliest deadline) are
        // ready together, and a wake-up taken first must not skip the
        // credit, or the next poll declares DEAD the members the stall
        // silenced.
        let lag = Instant::now().saturating_duration_since(target);
        if slept || !lag.is_zero() {
            shared.metrics.scheduler_lag(lag);
        }
        let judged = judge(lag, shared.cfg.min_interval);
        if judged == Stall::CreditAndWarn {
            warn!(
                lag_ms = lag.as_millis() as u64,
                "the server was stalled; pending member deadlines extended by the stall"
            );
        }
        if judged != Stall::None {
            shared.metrics.stalled();
            stall = Some(lag);
        }
    }
}

/// The first grid point at or after `t`: `epoch + k * GRANULE`.
fn on_grid(epoch: Instant, t: Instant) -> Instant {
    let granule = GRANULE.as_nanos();
    let since = t.saturating_duration_since(epoch).as_nanos();
    let steps = since.div_ceil(granule);
    epoch + Duration::from_nanos(u64::try_from(steps * granule).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stalls_that_could_cost_a_ping_are_logged() {
        let ms = Duration::from_millis;
        let min = ms(100);
        let cases = [
            (ms(0), Stall::None),
            (ms(20), Stall::None),
            (ms(21), Stall::Credit),
            (ms(60), Stall::Credit),
            (ms(99), Stall::Credit),
            (ms(100), Stall::CreditAndWarn),
            (ms(5_000), Stall::CreditAndWarn),
        ];
        for (lag, want) in cases {
            assert_eq!(judge(lag, min), want, "{lag:?}");
        }
        assert_eq!(
            judge(ms(300), ms(500)),
            Stall::Credit,
            "follows --min-interval"
        );
    }

    #[test]
    fn deadlines_round_up_to_the_grid() {
        let epoch = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(on_grid(epoch, epoch), epoch);
        assert_eq!(on_grid(epoch, epoch + ms(1)), epoch + ms(10));
        assert_eq!(on_grid(epoch, epoch + ms(10)), epoch + ms(10));
        assert_eq!(
            on_grid(epoch, epoch + Duration::from_nanos(10_000_001)),
            epoch + ms(20)
        );
        // A deadline already past (before the epoch) is due now.
        assert_eq!(on_grid(epoch + ms(5), epoch), epoch + ms(5));
    }

    /// The pause guard with the driver itself, in paused time: the clock
    /// jumps 10 s at once (the server did not run), which no silent member
    /// may pay for; a member that really stopped is DEAD one timeout after
    /// the server runs again, not before.
    #[tokio::test(start_paused = true)]
    async fn a_stall_of_the_server_is_credited_before_anyone_is_judged() {
        use crate::liveness::{JoinRequest, State, Status};
        let cfg = crate::config::ServerConfig::default();
        let shared = Shared::new(
            cfg,
            crate::health::HealthMap::new(),
            crate::metrics::ServerMetrics::unregistered(),
            std::time::SystemTime::now(),
        )
        .expect("embedded mode");
        let req = JoinRequest {
            service: "web".into(),
            instance: "a".into(),
            interval: None,
            timeout: None,
            labels: Default::default(),
            status: Status::Serving,
            endpoint: None,
        };
        shared.with(|i| i.core.join(req, Instant::now()));
        let state = || shared.with(|i| i.core.members(None)[0].state);
        let driver = tokio::spawn(run(shared.clone()));
        // Let the driver go to sleep, then stop the world for 10 s; a
        // wake-up (a Join elsewhere) is ready at the same moment as the
        // late timer.
        tokio::time::sleep(Duration::from_millis(100)).await;
        tokio::time::advance(Duration::from_secs(10)).await;
        shared.wake.notify_one();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(state(), State::Alive, "the stall is not the member's fault");
        assert!(shared.with(|i| i.core.stall()) >= Duration::from_secs(9));
        // Silent from here on: SUSPECT after (1 s + 3 s) / 2, DEAD after 3 s.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(state(), State::Suspect);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(state(), State::Dead);
        shared.drain.cancel();
        driver.await.unwrap();
    }

    /// In paused time: a member that stops pinging at an instant off the
    /// grid turns SUSPECT and DEAD at its deadlines (the timer's
    /// millisecond), while another one's lazy re-arms go on around it.
    #[tokio::test(start_paused = true)]
    async fn a_member_that_stops_is_judged_at_its_deadline_not_on_the_grid() {
        use crate::liveness::{JoinRequest, State, Status};
        let shared = Shared::new(
            crate::config::ServerConfig::default(),
            crate::health::HealthMap::new(),
            crate::metrics::ServerMetrics::unregistered(),
            std::time::SystemTime::now(),
        )
        .expect("embedded mode");
        let req = |instance: &str| JoinRequest {
            service: "web".into(),
            instance: instance.into(),
            interval: None,
            timeout: None,
            labels: Default::default(),
            status: Status::Serving,
            endpoint: None,
        };
        let driver = tokio::spawn(run(shared.clone()));
        let t0 = Instant::now();
        let busy = shared.with(|i| i.core.join(req("busy"), t0)).id;
        let quiet = shared.with(|i| i.core.join(req("quiet"), t0)).id;
        let ms = Duration::from_millis;
        let ping = |id| shared.with(|i| i.core.ping(id, Status::Serving, Instant::now()).unwrap());
        // Both ping every 500 ms; quiet's last ping is 3 ms past a grid
        // point (the driver's grid starts at t0).
        for k in 1..=4u64 {
            tokio::time::sleep_until(t0 + ms(500 * k) + ms(3)).await;
            ping(busy);
            ping(quiet);
        }
        let last = t0 + ms(2_003);
        let state = || {
            shared.with(|i| {
                let all = i.core.members(None);
                all.iter().find(|m| m.instance() == "quiet").unwrap().state
            })
        };
        for k in 5..=7u64 {
            tokio::time::sleep_until(t0 + ms(500 * k) + ms(3)).await;
            ping(busy);
        }
        // SUSPECT at last + 2 s, DEAD at last + 3 s: checked 2 ms after
        // each (the grid would have acted 7 ms after).
        tokio::time::sleep_until(last + ms(2_000) - ms(1)).await;
        assert_eq!(state(), State::Alive);
        tokio::time::sleep_until(last + ms(2_000) + ms(2)).await;
        assert_eq!(state(), State::Suspect);
        ping(busy);
        tokio::time::sleep_until(last + ms(2_500)).await;
        ping(busy);
        tokio::time::sleep_until(last + ms(3_000) - ms(1)).await;
        assert_eq!(state(), State::Suspect);
        tokio::time::sleep_until(last + ms(3_000) + ms(2)).await;
        assert_eq!(state(), State::Dead);
        shared.drain.cancel();
        driver.await.unwrap();
    }
}
