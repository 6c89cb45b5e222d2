//! Route changes sent to the other shards and not yet acknowledged by all of them.
//!
//! A SUBACK (or UNSUBACK) waits for the syncs of the route changes it depends on, so that a
//! PUBLISH the client sends after it finds the routes as it says wherever it lands.

use ahash::AHashMap;

use crate::core::filter::Filter;

#[derive(Debug, Default)]
pub struct RouteSyncs {
    pending: AHashMap<u64, Sync>,
    /// Filters whose RouteAdd is on its way, and its sync.
    adds_in_flight: AHashMap<Filter, u64>,
    next: u64,
}

#[derive(Debug)]
struct Sync {
    /// Acknowledgements still to come.
    missing: usize,
    /// Filters whose first subscriber this announced (for a RouteAdd).
    added: Vec<Filter>,
}

impl RouteSyncs {
    /// A new sync waiting for `acks` acknowledgements (none: it is complete at once).
    pub fn start(&mut self, acks: usize) -> u64 {
        self.next += 1;
        let sync = self.next;
        if acks > 0 {
            self.pending.insert(
                sync,
                Sync {
                    missing: acks,
                    added: Vec::new(),
                },
            );
        }
        sync
    }

    /// Records that `sync` announces these filters' first subscribers.
    pub fn adding(&mut self, sync: u64, filters: &[Filter]) {
        let Some(pending) = self.pending.get_mut(&sync) else {
            return;
        };
        for filter in filters {
            self.adds_in_flight.insert(filter.clone(), sync);
        }
        pending.added = filters.to_vec();
    }

    /// A RouteRemove overtakes the RouteAdd of the same filter.
    pub fn removing(&mut self, filter: &Filter) {
        self.adds_in_flight.remove(filter);
    }

    /// The sync of a RouteAdd for `filter` still on its way to some shard.
    pub fn add_in_flight(&self, filter: &Filter) -> Option<u64> {
        self.adds_in_flight
            .get(filter)
            .copied()
            .filter(|sync| self.pending.contains_key(sync))
    }

    pub fn is_pending(&self, sync: u64) -> bool {
        self.pending.contains_key(&sync)
    }

    /// One acknowledgement of `sync`; true when it was the last one.
    pub fn acknowledged(&mut self, sync: u64) -> bool {
        let Some(pending) = self.pending.get_mut(&sync) else {
            return false;
        };
        pending.missing -= 1;
        if pending.missing > 0 {
            return false;
        }
        let done = self.pending.remove(&sync).expect("present");
        for filter in done.added {
            if self.adds_in_flight.get(&filter) == Some(&sync) {
                self.adds_in_flight.remove(&filter);
            }
        }
        true
    }

    /// Syncs not yet complete.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_completes_with_its_last_acknowledgement() {
        let mut syncs = RouteSyncs::default();
        let filter = Filter::new("t");
        let sync = syncs.start(2);
        syncs.adding(sync, std::slice::from_ref(&filter));
        assert_eq!(syncs.add_in_flight(&filter), Some(sync));
        assert!(!syncs.acknowledged(sync));
        assert!(syncs.is_pending(sync));
        assert!(syncs.acknowledged(sync));
        assert!(!syncs.is_pending(sync));
        assert_eq!(syncs.add_in_flight(&filter), None);
        assert!(
            !syncs.acknowledged(sync),
            "a stray acknowledgement changes nothing"
        );
    }

    #[test]
    fn with_no_one_to_ask_a_sync_is_complete_at_once() {
        let mut syncs = RouteSyncs::default();
        let sync = syncs.start(0);
        syncs.adding(sync, &[Filter::new("t")]);
        assert!(!syncs.is_pending(sync));
        assert_eq!(syncs.add_in_flight(&Filter::new("t")), None);
        assert_eq!(syncs.pending(), 0);
    }
}
