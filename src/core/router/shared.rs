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

    pub fn members(&self) -> impl Iterator<Item = SessionKey> + '_ {
        self.members.iter().map(|(key, _)| *key)
    }

    /// A member for the next message, among those that may read it: by publisher, or the
    /// next in turn among those of the best [`Room`] (a backlogged member does not hold the
    /// group back while another has room; a stalled or offline one gets a message only when
    /// no one else can, and its session queues it). None when no member may read it.
    pub fn pick(
        &mut self,
        policy: SharedPolicy,
        publisher: u64,
        may_read: impl Fn(SessionKey) -> bool,
        room: impl Fn(SessionKey) -> Room,
    ) -> Option<((SessionKey, Subscription), Room)> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        if policy == SharedPolicy::Publisher {
            let member = self.members[publisher as usize % n];
            if may_read(member.0) && room(member.0) == Room::Free {
                return Some((member, Room::Free));
            }
        }
        let start = self.next;
        self.next = self.next.wrapping_add(1);
        let mut best: Option<((SessionKey, Subscription), Room)> = None;
        for member in (0..n).map(|i| self.members[(start + i) % n]) {
            if !may_read(member.0) {
                continue;
            }
            let room = room(member.0);
            if room == Room::Free {
                return Some((member, room));
            }
            if best.is_none_or(|(_, b)| room < b) {
                best = Some((member, room));
            }
        }
        best
    }
}

/// How well a member can take a message now, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Room {
    /// Connected, with no backlog past its high-water mark.
    Free,
    /// Connected and taking messages, but behind by this many queued messages: a message for
    /// it holds its publisher, so the least behind is best.
    Backlogged(usize),
    /// Offline, or connected and taking nothing: a message for it queues, up to its limits.
    Away,
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

    fn picks(group: &mut SharedGroup, n: usize, room: impl Fn(SessionKey) -> Room) -> Vec<u64> {
        (0..n)
            .filter_map(|_| group.pick(SharedPolicy::RoundRobin, 0, |_| true, &room))
            .map(|((key, _), _)| key)
            .collect()
    }

    #[test]
    fn round_robin_takes_members_in_turn_and_prefers_those_with_room() {
        let mut g = group(&[1, 2, 3]);
        assert_eq!(picks(&mut g, 4, |_| Room::Free), [1, 2, 3, 1]);
        // 2 is behind: the turn passes to the next member with room.
        let behind = |key| {
            if key == 2 {
                Room::Backlogged(60)
            } else {
                Room::Free
            }
        };
        assert_eq!(picks(&mut g, 3, behind), [3, 3, 1]);
        // Behind is better than away; away only when no one else can.
        let rooms = |key| {
            if key == 2 {
                Room::Backlogged(60)
            } else {
                Room::Away
            }
        };
        assert_eq!(picks(&mut g, 3, rooms), [2, 2, 2]);
        assert_eq!(picks(&mut g, 1, |_| Room::Away).len(), 1);
    }

    #[test]
    fn members_that_may_not_read_are_skipped_and_none_means_none() {
        let mut g = group(&[1, 2]);
        let pick = g.pick(SharedPolicy::Publisher, 7, |key| key == 1, |_| Room::Free);
        assert_eq!(pick.map(|((key, _), _)| key), Some(1));
        assert_eq!(
            g.pick(SharedPolicy::RoundRobin, 0, |_| false, |_| Room::Free),
            None
        );
    }

    #[test]
    fn by_publisher_goes_elsewhere_while_the_publishers_member_is_behind() {
        let mut g = group(&[1, 2]);
        let mut pick = |room: fn(SessionKey) -> Room| {
            g.pick(SharedPolicy::Publisher, 0, |_| true, room)
                .map(|((k, _), _)| k)
        };
        assert_eq!(pick(|_| Room::Free), Some(1));
        assert_eq!(
            pick(|k| if k == 1 {
                Room::Backlogged(60)
            } else {
                Room::Free
            }),
            Some(2)
        );
        assert_eq!(
            pick(|k| Room::Backlogged(100 - k as usize)),
            Some(2),
            "the least behind"
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
