//! A shared subscription group's members on one shard, and which of them gets the next
//! message.

use crate::core::features::SharedPolicy;
use crate::core::session::Subscription;
use crate::core::sessions::SessionKey;

#[derive(Debug, Default)]
pub struct SharedGroup {
    members: Vec<(SessionKey, Subscription)>,
    next: usize,
}

impl SharedGroup {
    /// Adds or updates a member; true when it is the group's first on this shard.
    pub fn join(&mut self, key: SessionKey, sub: Subscription) -> bool {
        let first = self.members.is_empty();
        match self.members.iter_mut().find(|(k, _)| *k == key) {
            Some(member) => member.1 = sub,
            None => self.members.push((key, sub)),
        }
        first
    }

    /// Removes a member; true when the group has none left on this shard.
    pub fn leave(&mut self, key: SessionKey) -> bool {
        self.members.retain(|(k, _)| *k != key);
        self.members.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// A member for the next message, among those that may read it: by publisher, or the
    /// next connected one in turn (any member if none is connected: its session queues the
    /// message). None when no member may read it.
    pub fn pick(
        &mut self,
        policy: SharedPolicy,
        publisher: u64,
        may_read: impl Fn(SessionKey) -> bool,
        connected: impl Fn(SessionKey) -> bool,
    ) -> Option<(SessionKey, Subscription)> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        if policy == SharedPolicy::Publisher {
            let member = self.members[publisher as usize % n];
            if may_read(member.0) {
                return Some(member);
            }
        }
        let start = self.next;
        self.next = self.next.wrapping_add(1);
        let mut readers = (0..n)
            .map(|i| self.members[(start + i) % n])
            .filter(|(key, _)| may_read(*key));
        let first = readers.next()?;
        if connected(first.0) {
            return Some(first);
        }
        Some(readers.find(|(key, _)| connected(*key)).unwrap_or(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub() -> Subscription {
        Subscription {
            options: Default::default(),
            id: None,
            since: std::time::Instant::now(),
        }
    }

    fn group(members: &[SessionKey]) -> SharedGroup {
        let mut group = SharedGroup::default();
        for &key in members {
            group.join(key, sub());
        }
        group
    }

    fn picks(
        group: &mut SharedGroup,
        n: usize,
        connected: impl Fn(SessionKey) -> bool,
    ) -> Vec<u64> {
        (0..n)
            .filter_map(|_| group.pick(SharedPolicy::RoundRobin, 0, |_| true, &connected))
            .map(|(key, _)| key)
            .collect()
    }

    #[test]
    fn round_robin_takes_members_in_turn_and_prefers_connected_ones() {
        let mut g = group(&[1, 2, 3]);
        assert_eq!(picks(&mut g, 4, |_| true), [1, 2, 3, 1]);
        // 2 is offline: the turn passes to the next connected member.
        assert_eq!(picks(&mut g, 3, |key| key != 2), [3, 3, 1]);
        // None connected: one of them all the same (its session queues the message).
        assert_eq!(picks(&mut g, 1, |_| false).len(), 1);
    }

    #[test]
    fn members_that_may_not_read_are_skipped_and_none_means_none() {
        let mut g = group(&[1, 2]);
        let pick = g.pick(SharedPolicy::Publisher, 7, |key| key == 1, |_| true);
        assert_eq!(pick.map(|(key, _)| key), Some(1));
        assert_eq!(
            g.pick(SharedPolicy::RoundRobin, 0, |_| false, |_| true),
            None
        );
    }

    #[test]
    fn joining_twice_updates_and_the_last_to_leave_empties_the_group() {
        let mut g = SharedGroup::default();
        assert!(g.join(1, sub()));
        assert!(!g.join(1, sub()));
        assert!(!g.join(2, sub()));
        assert!(!g.leave(1));
        assert!(g.leave(2));
        assert!(g.is_empty());
    }
}
