//! The two resumes of WatchMembers that only cluster mode has (SPEC §7.3,
//! CLUSTER.md §2.6): from a replica a little ahead of this one (wait, at
//! most [`AHEAD_WAIT`], for this replica's view to get there), and from
//! further back than this replica's own history (catch up from etcd's, see
//! `replica::catchup`). Either falls back to a snapshot.

use std::time::Duration;

use tokio::time::Instant;

use super::members::{MemberWatch, Out, Phase, restart};
use super::replica::catchup::Step;

/// How long a resume from a replica ahead of this one waits for this
/// replica's view to get there (the KEP-2340 "consistent reads from cache"
/// gate).
pub(super) const AHEAD_WAIT: Duration = Duration::from_secs(1);
const AHEAD_POLL: Duration = Duration::from_millis(20);

impl MemberWatch {
    /// Waits (until `until`) for the view to reach the resume revision.
    pub(super) async fn ahead(&mut self, until: Instant) {
        let shared = self.shared.clone();
        let caught_up = shared.with(|i| i.table().revision() >= self.last);
        if caught_up {
            self.phase = Phase::Replay;
        } else if Instant::now() >= until {
            shared.with(|i| restart(i, &shared, &mut self.rx, &mut self.phase, &mut self.out));
        } else {
            tokio::select! {
                _ = tokio::time::sleep(AHEAD_POLL) => {}
                _ = &mut self.drained => {}
            }
        }
    }

    /// One step of catching up from etcd's history.
    pub(super) async fn catch_up(&mut self) {
        let Phase::CatchUp(c) = &mut self.phase else {
            return;
        };
        let step = tokio::select! {
            biased;
            _ = &mut self.drained => return,
            step = c.next() => step,
        };
        match step {
            Step::Events(events) => {
                for e in events {
                    self.last = e.revision;
                    if self.matches(&e) {
                        self.out.push_back(Out::Event(e));
                    }
                }
            }
            Step::Done(at) => {
                self.last = self.last.max(at);
                self.phase = Phase::Replay;
            }
            Step::Failed => {
                let shared = self.shared.clone();
                shared.with(|i| restart(i, &shared, &mut self.rx, &mut self.phase, &mut self.out));
            }
        }
    }
}
