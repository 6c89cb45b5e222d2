//! Deadlines, earliest first: what the clock ends is found by popping the due ones, not by
//! scanning every connection and session on every tick.
//!
//! An entry says "look at this then", not "this happens then": the owner checks its own state
//! when an entry falls due and schedules again if the deadline moved later. So a deadline that
//! moves on every packet (keep alive) costs nothing until it falls due.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug)]
pub struct Timers<T> {
    heap: BinaryHeap<Entry<T>>,
    /// Orders entries of the same instant by when they were scheduled.
    seq: u64,
}

#[derive(Debug)]
struct Entry<T> {
    at: Instant,
    seq: u64,
    what: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest entry must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<T> Timers<T> {
    pub fn schedule(&mut self, at: Instant, what: T) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            what,
        });
    }

    /// The earliest entry due at `now`, with the instant it was scheduled for.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, T)> {
        if self.heap.peek()?.at > now {
            return None;
        }
        self.heap.pop().map(|e| (e.at, e.what))
    }

    /// When the earliest entry falls due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops the entries `keep` says no longer matter (their connection or session is gone):
    /// otherwise entries of closed connections would stay until they fall due.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        self.heap.retain(|e| keep(&e.what));
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn due_entries_come_out_earliest_first_and_in_order_of_scheduling() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut timers = Timers::default();
        timers.schedule(t0 + s(3), "c");
        timers.schedule(t0 + s(1), "a");
        timers.schedule(t0 + s(1), "b");
        timers.schedule(t0 + s(9), "later");
        assert_eq!(timers.next_deadline(), Some(t0 + s(1)));
        assert_eq!(timers.pop_due(t0), None);
        let due: Vec<_> = std::iter::from_fn(|| timers.pop_due(t0 + s(5)))
            .map(|(_, what)| what)
            .collect();
        assert_eq!(due, ["a", "b", "c"]);
        assert_eq!(timers.len(), 1);
        assert_eq!(timers.next_deadline(), Some(t0 + s(9)));
        timers.schedule(t0 + s(2), "gone");
        timers.retain(|what| *what != "gone");
        assert_eq!(timers.len(), 1);
        assert_eq!(timers.next_deadline(), Some(t0 + s(9)));
    }
}
