use std::time::Instant;

use super::*;

fn sub() -> Subscription {
    Subscription {
        options: Default::default(),
        id: None,
        since: Instant::now(),
    }
}

/// Delivers what `from` sent `to`, as the mesh would; returns how many messages.
fn carry(from: &mut Router, to: &mut Router) -> usize {
    let batch = from.take_outbox(to.shard(), usize::MAX, 0);
    let n = batch.len();
    for msg in batch {
        match msg {
            ShardMsg::RouteAdd {
                filter,
                shard,
                sync,
                seq,
            } => {
                to.route_added(&filter, shard, seq);
                to.acknowledge(from.shard(), sync);
            }
            ShardMsg::RouteRemove {
                filter,
                shard,
                sync,
                seq,
            } => {
                to.route_removed(&filter, shard, seq);
                to.acknowledge(from.shard(), sync);
            }
            ShardMsg::Barrier { sync } => to.acknowledge(from.shard(), sync),
            ShardMsg::RouteAck { sync } => {
                to.acknowledged(sync);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    n
}

#[test]
fn the_first_and_last_subscriber_of_a_filter_change_the_route() {
    let mut r = Router::new(0, 1);
    let filter = Filter::new("a/+");
    assert!(r.subscribe(&filter, 1, sub()));
    assert!(!r.subscribe(&filter, 2, sub()));
    assert!(
        !r.subscribe(&filter, 1, sub()),
        "an update is not a new subscriber"
    );
    assert_eq!(r.targets("a/b").plain, 1);
    assert!(!r.unsubscribe(&filter, 1));
    assert!(r.unsubscribe(&filter, 2));
    assert!(r.targets("a/b").is_empty());
    assert_eq!((r.subscription_filters(), r.route_filters()), (0, 0));
}

#[test]
fn one_shard_announces_to_no_one_and_waits_for_nothing() {
    let mut r = Router::new(0, 1);
    let filter = Filter::new("t");
    r.subscribe(&filter, 1, sub());
    let sync = r.announce(vec![filter.clone()]);
    assert!(!r.sync_pending(sync));
    assert_eq!(r.add_in_flight(&filter), None);
    assert_eq!(r.barrier(), None);
    assert!(!r.has_outbox(0));
}

#[test]
fn a_route_announced_is_pending_until_every_shard_acknowledges_it() {
    let mut a = Router::new(0, 2);
    let mut b = Router::new(1, 2);
    let filter = Filter::new("t/#");
    assert!(b.subscribe(&filter, 7, sub()));
    let sync = b.announce(vec![filter.clone()]);
    assert!(b.sync_pending(sync));
    assert_eq!(b.add_in_flight(&filter), Some(sync));
    assert_eq!(a.targets("t/x").plain, 0, "not there yet");
    assert_eq!(carry(&mut b, &mut a), 1);
    assert_eq!(a.targets("t/x").plain, 0b10);
    carry(&mut a, &mut b);
    assert!(!b.sync_pending(sync));
    // And back out, acknowledged the same way.
    assert!(b.unsubscribe(&filter, 7));
    let sync = b.withdraw(vec![filter]);
    carry(&mut b, &mut a);
    assert!(a.targets("t/x").is_empty());
    carry(&mut a, &mut b);
    assert!(!b.sync_pending(sync));
    assert_eq!(a.route_filters() + b.route_filters(), 0);
}

#[test]
fn shared_groups_are_routed_by_shard_in_turn() {
    let mut r = Router::new(0, 2);
    let group = Filter::new("$share/g/t");
    r.subscribe(&group, 1, sub());
    r.add_route(&group, 1);
    let targets = r.targets("t");
    assert_eq!(targets.plain, 0);
    assert_eq!(targets.groups, vec![(group.clone(), 0b11)]);
    assert_eq!(r.group_shards(&group), 0b11);
    let picks: Vec<usize> = (0..4)
        .map(|_| r.pick_shard(&group, 0b11, SharedPolicy::RoundRobin, 0))
        .collect();
    assert_eq!(picks, [1, 0, 1, 0]);
    assert_eq!(r.pick_shard(&group, 0b11, SharedPolicy::Publisher, 3), 1);
    assert!(r.group_mut(&group).is_some());
    assert!(r.group_mut(&Filter::new("$share/other/t")).is_none());
    // Gone from both shards: the group and its turn leave no trace.
    r.remove_route(&group, 1);
    assert!(r.unsubscribe(&group, 1));
    assert!(r.targets("t").is_empty());
    assert!(r.shared_turn.is_empty());
}

#[test]
fn a_barrier_completes_once_every_other_shard_has_answered() {
    let mut rs: Vec<Router> = (0..3).map(|s| Router::new(s, 3)).collect();
    let sync = rs[0].barrier().expect("other shards");
    let (first, rest) = rs.split_at_mut(1);
    for other in rest.iter_mut() {
        assert!(first[0].sync_pending(sync));
        carry(&mut first[0], other);
        carry(other, &mut first[0]);
    }
    assert!(!first[0].sync_pending(sync));
}

/// Two routers sharing a board of hints, as the broker's shards do.
fn hinted_pair() -> (Router, Router) {
    let hints = Arc::new(RouteHints::new(2));
    let (mut a, mut b) = (Router::new(0, 2), Router::new(1, 2));
    a.share_hints(hints.clone());
    b.share_hints(hints);
    (a, b)
}

#[test]
fn a_new_route_is_seen_through_a_hint_before_the_mesh_brings_it() {
    let (mut a, mut b) = hinted_pair();
    let t = Filter::new("t");
    assert!(b.subscribe(&t, SessionKey::default(), sub()));
    b.announce(vec![t.clone()]);
    assert_eq!(a.targets("t").plain, 0, "nothing carried yet");
    assert!(a.has_hints());
    a.apply_hints();
    assert!(!a.has_hints());
    assert_eq!(a.targets("t").plain, 0b10);
    // The mesh brings the same add: nothing changes, nothing is left over.
    carry(&mut b, &mut a);
    assert_eq!(a.targets("t").plain, 0b10);
    assert!(a.hinted.is_empty());
}

#[test]
fn a_hinted_add_is_not_undone_by_an_earlier_remove_the_mesh_brings_later() {
    let (mut a, mut b) = hinted_pair();
    let t = Filter::new("t");
    let key = SessionKey::default();
    // b subscribes and unsubscribes (both still on the mesh), then subscribes again.
    b.subscribe(&t, key, sub());
    b.announce(vec![t.clone()]);
    b.unsubscribe(&t, key);
    b.withdraw_quietly(t.clone());
    b.subscribe(&t, key, sub());
    b.announce(vec![t.clone()]);
    a.apply_hints();
    assert_eq!(a.targets("t").plain, 0b10);
    // The mesh brings add, remove, add in order: the route stays all along at the end.
    carry(&mut b, &mut a);
    assert_eq!(a.targets("t").plain, 0b10, "the last change is an add");
    assert!(a.hinted.is_empty());
    // A later remove does apply.
    b.unsubscribe(&t, key);
    b.withdraw_quietly(t.clone());
    carry(&mut b, &mut a);
    assert_eq!(a.targets("t").plain, 0);
}

#[test]
fn a_hint_the_mesh_has_overtaken_is_ignored() {
    let (mut a, mut b) = hinted_pair();
    let t = Filter::new("t");
    let key = SessionKey::default();
    b.subscribe(&t, key, sub());
    b.announce(vec![t.clone()]);
    b.unsubscribe(&t, key);
    b.withdraw_quietly(t.clone());
    // The mesh brings the add and the remove before the hint is looked at.
    carry(&mut b, &mut a);
    a.apply_hints();
    assert_eq!(
        a.targets("t").plain,
        0,
        "a stale hint must not bring the route back"
    );
}
