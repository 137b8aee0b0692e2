//! The timer driver: one task that sleeps until the registry's earliest
//! deadline, polls it, and sleeps again. It is woken early only when a new
//! deadline lands before the one it sleeps for (a Join), never per ping.
//!
//! It is also the local-pause guard. It never sleeps longer than [`TICK`],
//! and it measures how late it wakes. Lateness beyond [`STALL_THRESHOLD`]
//! means the server itself did not run: a pause, CPU starvation, SIGSTOP.
//! Members could not be heard during that time, so their silence is not
//! their fault. The lag is credited to the registry (every pending deadline
//! moves later by it, once) *before* the registry is polled, so no member is
//! declared DEAD for the server's own stall. A member that really stopped
//! still goes DEAD one timeout after the server resumes.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::state::Shared;

/// Longest sleep: the resolution of stall detection.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// Lateness below this is ordinary timer and scheduling noise.
pub(crate) const STALL_THRESHOLD: Duration = Duration::from_millis(20);

pub(crate) async fn run(shared: Arc<Shared>) {
    let sleep = tokio::time::sleep(TICK);
    tokio::pin!(sleep);
    let mut stall = None;
    loop {
        let now = Instant::now();
        let next = shared.with(|i| {
            if let Some(lag) = stall.take() {
                i.core.stalled(lag);
            }
            i.core.poll(now);
            i.core.next_deadline()
        });
        let target = next.map_or(now + TICK, |n| n.min(now + TICK));
        sleep.as_mut().reset(target);
        tokio::select! {
            _ = &mut sleep => {
                let lag = Instant::now().saturating_duration_since(target);
                shared.metrics.scheduler_lag(lag);
                if lag > STALL_THRESHOLD {
                    warn!(
                        lag_ms = lag.as_millis() as u64,
                        "the server was stalled; pending member deadlines extended by the stall"
                    );
                    shared.metrics.stalled();
                    stall = Some(lag);
                }
            }
            _ = shared.wake.notified() => {}
            _ = shared.drain.cancelled() => return,
        }
    }
}
