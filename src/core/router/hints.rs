//! Route adds every shard sees at once. A shard that gains its first subscriber on a filter
//! tells the others through the mesh (`RouteAdd`), which they apply between read batches; a
//! PUBLISH another shard reads in the meantime would miss the new subscriber. So the shard also
//! posts a hint here, before it handles anything else, and a shard checks for hints (one atomic
//! load) before it routes each message: a PUBLISH read after a SUBSCRIBE, on any shard, reaches
//! that subscriber, as on a single-threaded broker.
//!
//! The mesh stays the record of route changes; a hint only runs ahead of it. Each change an
//! origin shard makes carries a sequence number, so that a hinted add is not undone by a remove
//! the origin made before it that arrives later (see `Router::route_removed`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::core::filter::Filter;

/// `shard` gained its first subscriber on `filter`: its route change number `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    pub filter: Filter,
    pub shard: usize,
    pub seq: u64,
}

/// One box of hints per shard, shared by every shard of the broker. The lock is taken only
/// when a route is added and by the shard that finds its flag set: never on a message's path.
#[derive(Debug)]
pub struct RouteHints {
    boxes: Vec<Mutex<Vec<Hint>>>,
    pending: Vec<AtomicBool>,
}

impl RouteHints {
    pub fn new(shards: usize) -> RouteHints {
        RouteHints {
            boxes: (0..shards).map(|_| Mutex::default()).collect(),
            pending: (0..shards).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Leaves `hint` for shard `to`.
    pub fn post(&self, to: usize, hint: Hint) {
        let Some(slot) = self.boxes.get(to) else {
            return;
        };
        slot.lock().unwrap_or_else(|e| e.into_inner()).push(hint);
        self.pending[to].store(true, Ordering::SeqCst);
    }

    /// Whether hints wait for shard `me`.
    pub fn pending(&self, me: usize) -> bool {
        self.pending
            .get(me)
            .is_some_and(|p| p.load(Ordering::SeqCst))
    }

    /// The hints waiting for shard `me`, oldest first.
    pub fn take(&self, me: usize) -> Vec<Hint> {
        if !self
            .pending
            .get(me)
            .is_some_and(|p| p.swap(false, Ordering::SeqCst))
        {
            return Vec::new();
        }
        std::mem::take(&mut *self.boxes[me].lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_reach_only_their_shard_once() {
        let hints = RouteHints::new(3);
        let hint = |seq| Hint {
            filter: Filter::from(bytestring::ByteString::from("t")),
            shard: 0,
            seq,
        };
        assert!(!hints.pending(1));
        hints.post(1, hint(1));
        hints.post(1, hint(2));
        assert!(hints.pending(1) && !hints.pending(2));
        assert_eq!(hints.take(1), [hint(1), hint(2)]);
        assert!(!hints.pending(1));
        assert!(hints.take(1).is_empty());
        // A broker alone has no boxes: nothing to post to.
        RouteHints::new(0).post(0, hint(3));
    }
}
