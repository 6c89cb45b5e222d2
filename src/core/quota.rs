//! Counts shared by every shard: the broker-wide session limit is checked where a session is
//! made, on its home shard, against the sessions of all shards.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct Quota {
    sessions: AtomicUsize,
    /// Orders the retained messages set on different shards, for the durable store.
    retain_seq: AtomicU64,
}

impl Quota {
    /// Takes a session slot if fewer than `max` are taken.
    pub fn try_add_session(&self, max: usize) -> bool {
        self.sessions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn remove_session(&self) {
        let _ = self
            .sessions
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// A number greater than any handed out before in this run (the first is 1).
    pub fn next_retain_seq(&self) -> u64 {
        self.retain_seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slots_are_taken_up_to_the_maximum_and_given_back() {
        let quota = super::Quota::default();
        assert!(quota.try_add_session(2));
        assert!(quota.try_add_session(2));
        assert!(!quota.try_add_session(2));
        quota.remove_session();
        assert!(quota.try_add_session(2));
        assert_eq!(quota.sessions(), 2);
    }
}
