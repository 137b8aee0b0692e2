//! The timer driver: one task that sleeps until the registry's earliest
//! deadline, polls it, and sleeps again. It is woken early only when a new
//! deadline lands before the one it sleeps for (a Join), never per ping.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::state::Shared;

/// Sleep used when nothing is scheduled (a Join wakes the driver anyway).
const IDLE: Duration = Duration::from_secs(3600);

pub(crate) async fn run(shared: Arc<Shared>) {
    let sleep = tokio::time::sleep(IDLE);
    tokio::pin!(sleep);
    loop {
        let next = shared.with(|i| {
            i.core.poll(Instant::now());
            i.core.next_deadline()
        });
        sleep
            .as_mut()
            .reset(next.unwrap_or_else(|| Instant::now() + IDLE));
        tokio::select! {
            _ = &mut sleep => {}
            _ = shared.wake.notified() => {}
            _ = shared.drain.cancelled() => return,
        }
    }
}
