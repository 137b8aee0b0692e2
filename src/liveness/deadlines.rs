//! The deadline queue: a binary min-heap of `(when, slot)` plus an index from
//! slot to heap position (etcd's `lease_queue.go` shape), so that every member
//! has at most one entry.
//!
//! Entries are lazy: a ping only moves a member's deadline later and does not
//! touch the queue, so an entry may pop early; the registry then re-arms it at
//! the member's real due time. Only a deadline that moves *earlier* (a rejoin
//! of a DEAD member waiting for removal) needs [`DeadlineQueue::schedule`] to
//! lower the key in place.
//!
//! A deadline is kept as signed nanoseconds from the first one the queue
//! saw, not as an `Instant` (16 bytes): an entry is 16 bytes instead of 24,
//! exactly (±292 years around that first deadline), and compares as one
//! integer.

use std::time::Duration;

use tokio::time::Instant;

const ABSENT: u32 = u32::MAX;

/// Min-heap of deadlines, one entry per slot at most.
#[derive(Debug, Default)]
pub struct DeadlineQueue {
    heap: Vec<(i64, u32)>,
    /// `pos[slot]` = index of the slot's entry in `heap`, or `ABSENT`.
    pos: Vec<u32>,
    /// What key 0 means (the first deadline scheduled).
    epoch: Option<Instant>,
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Signed nanoseconds from `epoch` to `when`.
fn key_of(epoch: Instant, when: Instant) -> i64 {
    match when.checked_duration_since(epoch) {
        Some(after) => nanos(after),
        None => -nanos(epoch - when),
    }
}

impl DeadlineQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The key of `when`, fixing the epoch on first use.
    fn key(&mut self, when: Instant) -> i64 {
        let epoch = *self.epoch.get_or_insert(when);
        key_of(epoch, when)
    }

    /// The instant of a key.
    fn at(&self, key: i64) -> Instant {
        let epoch = self.epoch.expect("a key implies an epoch");
        let d = Duration::from_nanos(key.unsigned_abs());
        if key >= 0 { epoch + d } else { epoch - d }
    }

    /// The key of `when` for a comparison without scheduling (the epoch
    /// is set whenever the heap is not empty).
    fn probe(&self, when: Instant) -> i64 {
        self.epoch.map_or(0, |epoch| key_of(epoch, when))
    }

    /// The earliest deadline.
    pub fn peek(&self) -> Option<Instant> {
        self.heap.first().map(|&(key, _)| self.at(key))
    }

    /// Every entry due before `until`, in no particular order (a walk of
    /// the heap that skips every subtree whose root is not before `until`:
    /// as many steps as such entries, and their children).
    pub fn before(&self, until: Instant, out: &mut Vec<(Instant, u32)>) {
        let until = self.probe(until);
        let mut stack = Vec::new();
        if self.heap.first().is_some_and(|&(when, _)| when < until) {
            stack.push(0usize);
        }
        while let Some(i) = stack.pop() {
            let (key, slot) = self.heap[i];
            out.push((self.at(key), slot));
            for child in [2 * i + 1, 2 * i + 2] {
                if self.heap.get(child).is_some_and(|&(when, _)| when < until) {
                    stack.push(child);
                }
            }
        }
    }

    /// Moves `slot`'s entry to `when`, earlier or later (inserts it when
    /// absent).
    pub fn reschedule(&mut self, slot: u32, when: Instant) {
        let when = self.key(when);
        match self.pos.get(slot as usize) {
            Some(&at) if at != ABSENT => {
                let at = at as usize;
                let old = self.heap[at].0;
                self.heap[at].0 = when;
                if when < old {
                    self.sift_up(at);
                } else {
                    self.sift_down(at);
                }
            }
            _ => {
                self.schedule_key(slot, when);
            }
        }
    }

    /// Makes sure `slot` is due no later than `when`: inserts an entry, or
    /// lowers an existing later one. An existing earlier entry is kept (it
    /// pops early and is re-armed). Returns true when the earliest deadline
    /// of the whole queue moved earlier, so a sleeping driver must wake.
    pub fn schedule(&mut self, slot: u32, when: Instant) -> bool {
        let key = self.key(when);
        self.schedule_key(slot, key)
    }

    fn schedule_key(&mut self, slot: u32, when: i64) -> bool {
        let before = self.heap.first().map(|&(key, _)| key);
        let idx = slot as usize;
        if self.pos.len() <= idx {
            self.pos.resize(idx + 1, ABSENT);
        }
        match self.pos[idx] {
            ABSENT => {
                self.heap.push((when, slot));
                self.pos[idx] = (self.heap.len() - 1) as u32;
                self.sift_up(self.heap.len() - 1);
            }
            at => {
                let at = at as usize;
                if when < self.heap[at].0 {
                    self.heap[at].0 = when;
                    self.sift_up(at);
                }
            }
        }
        before.is_none_or(|b| when < b)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, u32)> {
        let &(when, _) = self.heap.first()?;
        if when > self.probe(now) {
            return None;
        }
        let last = self.heap.len() - 1;
        self.swap(0, last);
        let (when, slot) = self.heap.pop()?;
        self.pos[slot as usize] = ABSENT;
        if !self.heap.is_empty() {
            self.sift_down(0);
        }
        Some((self.at(when), slot))
    }

    /// The scheduled deadline of `slot`, if any.
    pub fn get(&self, slot: u32) -> Option<Instant> {
        match self.pos.get(slot as usize) {
            Some(&at) if at != ABSENT => Some(self.at(self.heap[at as usize].0)),
            _ => None,
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].1 as usize] = a as u32;
        self.pos[self.heap[b].1 as usize] = b as u32;
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i].0 >= self.heap[parent].0 {
                break;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut min = i;
            if l < n && self.heap[l].0 < self.heap[min].0 {
                min = l;
            }
            if r < n && self.heap[r].0 < self.heap[min].0 {
                min = r;
            }
            if min == i {
                break;
            }
            self.swap(i, min);
            i = min;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    #[test]
    fn an_entry_is_16_bytes() {
        assert_eq!(std::mem::size_of::<(i64, u32)>(), 16);
    }

    #[test]
    fn deadlines_before_the_first_come_back_exactly() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut q = DeadlineQueue::new();
        q.schedule(1, t0);
        q.schedule(2, t0 - Duration::from_nanos(90_000_000_001));
        assert_eq!(q.peek(), Some(t0 - Duration::from_nanos(90_000_000_001)));
        assert_eq!(q.pop_due(t0).map(|e| e.1), Some(2));
        assert_eq!(q.pop_due(t0), Some((t0, 1)));
    }

    #[test]
    fn pops_in_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::new();
        assert!(q.schedule(3, t0 + Duration::from_secs(3)));
        assert!(q.schedule(1, t0 + Duration::from_secs(1)));
        assert!(!q.schedule(2, t0 + Duration::from_secs(2)));
        assert_eq!(q.pop_due(t0), None);
        assert_eq!(q.pop_due(t0 + Duration::from_secs(2)).map(|e| e.1), Some(1));
        assert_eq!(q.pop_due(t0 + Duration::from_secs(2)).map(|e| e.1), Some(2));
        assert_eq!(q.pop_due(t0 + Duration::from_secs(2)), None);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn schedule_keeps_one_entry_and_only_lowers() {
        let t0 = Instant::now();
        let mut q = DeadlineQueue::new();
        q.schedule(7, t0 + Duration::from_secs(5));
        q.schedule(7, t0 + Duration::from_secs(9)); // later: kept at 5
        assert_eq!(q.get(7), Some(t0 + Duration::from_secs(5)));
        q.schedule(7, t0 + Duration::from_secs(1)); // earlier: lowered
        assert_eq!(q.get(7), Some(t0 + Duration::from_secs(1)));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn entries_before_a_time_are_found_and_can_move_either_way() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut q = DeadlineQueue::new();
        for slot in 0..20u32 {
            q.schedule(slot, t0 + s(u64::from((slot * 7) % 20)));
        }
        let mut found = Vec::new();
        q.before(t0 + s(5), &mut found);
        let mut slots: Vec<u32> = found.iter().map(|&(_, slot)| slot).collect();
        slots.sort_unstable();
        let want: Vec<u32> = (0..20).filter(|slot| (slot * 7) % 20 < 5).collect();
        assert_eq!(slots, want);
        // Later, then earlier again: the heap stays ordered.
        q.reschedule(0, t0 + s(30));
        q.reschedule(19, t0 + s(0));
        assert_eq!(q.pop_due(t0 + s(0)).map(|e| e.1), Some(19));
        assert_eq!(q.get(0), Some(t0 + s(30)));
        let mut last = t0;
        while let Some((when, _)) = q.pop_due(t0 + s(60)) {
            assert!(when >= last);
            last = when;
        }
    }

    proptest! {
        /// Against a reference model (a map slot -> earliest deadline).
        #[test]
        fn behaves_like_a_map_of_minimums(ops in prop::collection::vec((0u32..40, 0u64..1_000, any::<bool>()), 1..300)) {
            let t0 = Instant::now();
            let mut q = DeadlineQueue::new();
            let mut model: BTreeMap<u32, u64> = BTreeMap::new();
            for (slot, at, pop) in ops {
                if pop {
                    let now = t0 + Duration::from_millis(at);
                    let want = model.iter().map(|(&s, &w)| (w, s)).min().filter(|&(w, _)| w <= at);
                    let got = q.pop_due(now);
                    match want {
                        None => prop_assert!(got.is_none()),
                        Some((w, _)) => {
                            let (gw, gs) = got.expect("an entry is due");
                            prop_assert_eq!(gw, t0 + Duration::from_millis(w));
                            prop_assert_eq!(model.remove(&gs), Some(w));
                        }
                    }
                } else {
                    q.schedule(slot, t0 + Duration::from_millis(at));
                    let e = model.entry(slot).or_insert(at);
                    *e = (*e).min(at);
                }
                prop_assert_eq!(q.len(), model.len());
            }
        }
    }
}
