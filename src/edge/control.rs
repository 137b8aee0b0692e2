//! What the edge asks of a connection (close it to make room or because it
//! idled too long, shut down, drop it now), set by other tasks and read by
//! the connection's own task on every poll.
//!
//! A connection task is polled for every frame it reads or writes: a few
//! times per ping of every member on it. Watching these requests through
//! cancellation futures and a per-connection idle timer cost that path a
//! mutex per future and a timer-wheel visit on each poll (about a tenth of
//! a ping's instructions, by callgrind). Here a poll costs one atomic load
//! and a waker registration that clones nothing when the task is the same;
//! idleness is swept by one task for the whole table (`ConnTable::close_idle`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::task::Context;

use futures_util::task::AtomicWaker;

/// Send GOAWAY and close within the close grace: evicted to make room, or
/// idle for the idle timeout.
pub(crate) const CLOSE: u8 = 1;
/// The process shuts down: GOAWAY; the edge's shutdown grace bounds it.
pub(crate) const SHUTDOWN: u8 = 2;
/// The shutdown grace is over: drop the connection.
pub(crate) const FORCE: u8 = 4;

/// One connection's requests.
#[derive(Debug, Default)]
pub(crate) struct Control {
    flags: AtomicU8,
    waker: AtomicWaker,
}

impl Control {
    /// Asks `flag` of the connection and wakes its task.
    pub(crate) fn signal(&self, flag: u8) {
        self.flags.fetch_or(flag, Ordering::AcqRel);
        self.waker.wake();
    }

    /// The requests so far; the task is woken on the next one. (The waker
    /// is registered before the flags are read, so none is missed.)
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> u8 {
        self.waker.register(cx.waker());
        self.flags.load(Ordering::Acquire)
    }

    /// The requests so far, without registering for more.
    #[cfg(test)]
    pub(crate) fn get(&self) -> u8 {
        self.flags.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Poll;

    #[tokio::test]
    async fn a_signal_wakes_the_task_that_polled() {
        let control = Arc::new(Control::default());
        let waiting = control.clone();
        let task = tokio::spawn(std::future::poll_fn(move |cx| match waiting.poll(cx) {
            0 => Poll::Pending,
            flags => Poll::Ready(flags),
        }));
        tokio::task::yield_now().await;
        control.signal(SHUTDOWN);
        control.signal(FORCE);
        let flags = task.await.unwrap();
        assert_ne!(flags & SHUTDOWN, 0);
        assert_eq!(control.get() & CLOSE, 0);
    }
}
