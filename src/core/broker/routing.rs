//! Two-level routing: a publish is matched once against the route table (filter -> shards),
//! sent once to each interested shard, and matched there against the local subscription trie.
//! A shared subscription group gets each message once: the publishing shard picks one shard
//! with members, that shard picks one member.

use std::sync::Arc;

use bytestring::ByteString;

use super::packets::is_sys_topic;
use super::{effective_qos, Broker, Route, SessionKey, SharedGroup, Subscribers};
use crate::core::features::SharedPolicy;
use crate::core::message::{Delivery, Message, SharedMessage};
use crate::core::retained::{RetainOutcome, RetainedLimits};
use crate::core::session::{DeliverOutcome, Subscription};
use crate::core::shard_msg::ShardMsg;
use crate::protocol::topic::parse_shared;
use crate::protocol::QoS;

/// What one session gets from one publish: its best subscription, all their identifiers.
#[derive(Debug)]
pub(super) struct Match {
    best: Subscription,
    ids: Vec<u32>,
}

impl Broker {
    /// Routes a message published on this shard (or a will). `origin` is the publishing
    /// session (for No Local), `publisher` its client id hash (for the by-publisher shared
    /// policy). Returns whether any subscriber anywhere matched.
    /// Publishes a broker message (a `$SYS` figure): retained, QoS 0, from no client.
    pub fn publish_system(&mut self, topic: &str, payload: &[u8]) {
        let mut message = Message::new(topic, payload, QoS::AtMostOnce, self.now);
        message.retain = true;
        self.publish_message(Arc::new(message), None, 0);
    }

    pub(super) fn publish_message(
        &mut self,
        message: SharedMessage,
        origin: Option<SessionKey>,
        publisher: u64,
    ) -> bool {
        if message.retain {
            // Decided here, on the publishing shard, and replicated as decided: every
            // replica holds the same messages.
            // `$SYS` figures are the broker's own, a fixed few: outside the limits.
            let limits = (!is_sys_topic(message.topic())).then_some(RetainedLimits {
                messages: self.limits.max_retained_messages,
                bytes: self.limits.max_retained_bytes,
            });
            match self.retained.update(&message, limits) {
                RetainOutcome::Refused => {
                    self.counters.retained_refused += 1;
                    if let Some(n) = self.retained_log.record(1, self.now) {
                        tracing::warn!(
                            shard = self.shard,
                            refused = n,
                            retained = self.retained.len(),
                            bytes = self.retained.bytes(),
                            "retained store full: messages delivered but not retained"
                        );
                    }
                }
                RetainOutcome::NothingToDelete => {}
                RetainOutcome::Stored | RetainOutcome::Deleted => {
                    for to in (0..self.shards).filter(|&s| s != self.shard) {
                        self.outbox[to].push_back(ShardMsg::Retain(message.clone()));
                    }
                }
            }
        }
        if self.shards == 1 {
            let mut groups = Vec::new();
            let delivered = self.deliver_local(&message, origin, Some(&mut groups));
            for group in &groups {
                self.deliver_shared_local(group, &message, publisher);
            }
            return delivered > 0 || !groups.is_empty();
        }
        let mut plain = 0u64;
        let mut groups: Vec<(ByteString, u64)> = Vec::new();
        self.routes.for_each_match(message.topic(), |route| {
            plain |= route.plain;
            groups.extend(route.shared.iter().map(|(g, mask)| (g.clone(), *mask)));
        });
        for to in (0..self.shards).filter(|&s| s != self.shard && plain & (1 << s) != 0) {
            self.outbox[to].push_back(ShardMsg::Deliver(message.clone()));
        }
        if plain & (1 << self.shard) != 0 {
            self.deliver_local(&message, origin, None);
        }
        for (group, mask) in &groups {
            self.route_shared(group, *mask, &message, publisher);
        }
        plain != 0 || !groups.is_empty()
    }

    /// Delivers to this shard's plain subscribers, each session once, at the highest QoS of
    /// its matching subscriptions and with all their identifiers (MQTT-3.3.5-1, 3.3.4). Shared
    /// groups found on the way are collected into `groups` when given.
    fn deliver_local(
        &mut self,
        message: &SharedMessage,
        origin: Option<SessionKey>,
        mut groups: Option<&mut Vec<ByteString>>,
    ) -> usize {
        let mut matched = self.match_scratch.take().unwrap_or_default();
        self.subscriptions
            .for_each_match(message.topic(), |subscribers| {
                for (&key, &sub) in &subscribers.plain {
                    let own = sub.options.no_local && Some(key) == origin;
                    if own || sub.since > message.published_at {
                        continue;
                    }
                    let m = matched.entry(key).or_insert(Match {
                        best: sub,
                        ids: Vec::new(),
                    });
                    if sub.options.qos > m.best.options.qos {
                        m.best = sub;
                    }
                    m.ids.extend(sub.id);
                }
                if let Some(groups) = groups.as_deref_mut() {
                    groups.extend(subscribers.shared.keys().cloned());
                }
            });
        let count = matched.len();
        for (key, m) in matched.drain() {
            let mut delivery = Delivery::new(
                message.clone(),
                effective_qos(message.qos, m.best.options.qos),
                // Established subscriptions get RETAIN 0 unless 5.0's Retain As Published.
                m.best.options.retain_as_published && message.retain,
            );
            delivery.subscription_ids = m.ids;
            self.deliver_to(key, delivery);
        }
        self.match_scratch = Some(matched);
        count
    }

    fn deliver_to(&mut self, key: SessionKey, delivery: Delivery) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if !session.may_receive(delivery.message.topic()) {
            self.note_drop(|c| &mut c.dropped_not_authorized);
            return;
        }
        let conn_id = session.conn;
        let link = conn_id
            .and_then(|c| self.conns.get_mut(&c))
            .filter(|c| !c.closing)
            .map(|c| &mut c.link);
        let outcome = session.deliver(delivery, link, &self.limits, self.now);
        self.account(outcome);
        if let (Some(c), DeliverOutcome::Sent) = (conn_id, outcome) {
            self.queue_flush(c);
        }
    }

    /// Picks the shard (out of `mask`) whose members get this message of `group`.
    fn route_shared(
        &mut self,
        group: &ByteString,
        mask: u64,
        message: &SharedMessage,
        publisher: u64,
    ) {
        let candidates = mask.count_ones() as usize;
        if candidates == 0 {
            return;
        }
        let pick = match self.features.shared_policy {
            SharedPolicy::Publisher => publisher as usize % candidates,
            SharedPolicy::RoundRobin => {
                let turn = self.shared_turn.entry(group.clone()).or_insert(0);
                *turn = turn.wrapping_add(1);
                *turn % candidates
            }
        };
        let shard = (0..self.shards)
            .filter(|s| mask & (1 << s) != 0)
            .nth(pick)
            .expect("pick < count");
        if shard == self.shard {
            self.deliver_shared_local(group, message, publisher);
        } else {
            self.outbox[shard].push_back(ShardMsg::DeliverShared {
                group: group.clone(),
                message: message.clone(),
                publisher,
            });
        }
    }

    /// Gives a message of shared subscription `group` to one of its members on this shard,
    /// preferring connected ones.
    fn deliver_shared_local(
        &mut self,
        group: &ByteString,
        message: &SharedMessage,
        publisher: u64,
    ) {
        let Some(Ok(shared)) = parse_shared(group) else {
            return;
        };
        let sessions = &self.sessions;
        let policy = self.features.shared_policy;
        let topic = message.topic();
        let Some(group_members) = self
            .subscriptions
            .get_mut(shared.filter)
            .and_then(|s| s.shared.get_mut(group))
        else {
            self.note_drop(|c| &mut c.dropped_no_member);
            return;
        };
        let chosen = pick_member(
            group_members,
            policy,
            publisher,
            |key| sessions.get(&key).is_some_and(|s| s.may_receive(topic)),
            |key| sessions.get(&key).is_some_and(|s| s.conn.is_some()),
        );
        let Some((key, sub)) = chosen else {
            // Members there are, but the ACL lets none of them read this topic.
            self.note_drop(|c| &mut c.dropped_not_authorized);
            return;
        };
        let mut delivery = Delivery::new(
            message.clone(),
            effective_qos(message.qos, sub.options.qos),
            false,
        );
        delivery.subscription_ids.extend(sub.id);
        delivery.shared_group = Some(group.clone());
        self.deliver_to(key, delivery);
    }

    /// Sends what a leaving member of shared groups had not acknowledged to other members.
    pub(super) fn redistribute_shared(&mut self, key: SessionKey) {
        let taken = self
            .sessions
            .get_mut(&key)
            .map(|s| s.take_shared(None))
            .unwrap_or_default();
        self.reroute_shared(taken);
    }

    /// The same for one group the member unsubscribed from.
    pub(super) fn redistribute_group(&mut self, key: SessionKey, group: &str) {
        let taken = self
            .sessions
            .get_mut(&key)
            .map(|s| s.take_shared(Some(group)))
            .unwrap_or_default();
        self.reroute_shared(taken);
    }

    fn reroute_shared(&mut self, deliveries: Vec<Delivery>) {
        for delivery in deliveries {
            let Some(group) = delivery.shared_group else {
                continue;
            };
            if self.shards == 1 {
                self.deliver_shared_local(&group, &delivery.message, 0);
                continue;
            }
            let Some(Ok(shared)) = parse_shared(&group) else {
                continue;
            };
            let mask = self
                .routes
                .get_mut(shared.filter)
                .and_then(|r| r.shared.get(&group).copied())
                .unwrap_or(0);
            if mask == 0 {
                self.note_drop(|c| &mut c.dropped_no_member);
                continue;
            }
            self.route_shared(&group, mask, &delivery.message, 0);
        }
    }

    /// Adds a local subscriber; true when this shard's route for the filter is new and must
    /// reach the other shards.
    pub(super) fn add_subscriber(
        &mut self,
        filter: &str,
        key: SessionKey,
        sub: Subscription,
    ) -> bool {
        let shared = parse_shared(filter).and_then(Result::ok);
        let inner = shared.map_or(filter, |s| s.filter);
        let subscribers = self
            .subscriptions
            .get_or_insert_with(inner, Subscribers::default);
        let first = match shared {
            None => {
                let first = subscribers.plain.is_empty();
                subscribers.plain.insert(key, sub);
                first
            }
            Some(_) => {
                let group = subscribers.shared.entry(filter.into()).or_default();
                let first = group.members.is_empty();
                match group.members.iter_mut().find(|(k, _)| *k == key) {
                    Some(member) => member.1 = sub,
                    None => group.members.push((key, sub)),
                }
                first
            }
        };
        if first && self.shards > 1 {
            self.add_route(filter, self.shard);
            return true;
        }
        false
    }

    /// Removes `key`'s subscription from the local trie. True when it was the shard's last on
    /// `filter`: the caller tells the other shards to drop their route.
    pub(super) fn remove_subscriber(&mut self, filter: &str, key: SessionKey) -> bool {
        let shared = parse_shared(filter).and_then(Result::ok);
        let inner = shared.map_or(filter, |s| s.filter);
        let Some(subscribers) = self.subscriptions.get_mut(inner) else {
            return false;
        };
        let last = match shared {
            None => subscribers.plain.remove(&key).is_some() && subscribers.plain.is_empty(),
            Some(_) => match subscribers.shared.get_mut(filter) {
                Some(group) => {
                    group.members.retain(|(k, _)| *k != key);
                    let empty = group.members.is_empty();
                    if empty {
                        subscribers.shared.remove(filter);
                    }
                    empty
                }
                None => false,
            },
        };
        if subscribers.is_empty() {
            self.subscriptions.remove(inner);
        }
        if !last || self.shards == 1 {
            return false;
        }
        self.remove_route(filter, self.shard);
        true
    }

    /// Tells shard `to` that a route change it asked to hear about (`sync` non-zero) is in.
    fn ack_route(&mut self, to: usize, sync: u64) {
        if sync != 0 {
            self.outbox[to].push_back(ShardMsg::RouteAck { sync });
        }
    }

    fn add_route(&mut self, filter: &str, shard: usize) {
        let shared = parse_shared(filter).and_then(Result::ok);
        let route = self
            .routes
            .get_or_insert_with(shared.map_or(filter, |s| s.filter), Route::default);
        match shared {
            None => route.plain |= 1 << shard,
            Some(_) => *route.shared.entry(filter.into()).or_insert(0) |= 1 << shard,
        }
    }

    fn remove_route(&mut self, filter: &str, shard: usize) {
        let shared = parse_shared(filter).and_then(Result::ok);
        let inner = shared.map_or(filter, |s| s.filter);
        let Some(route) = self.routes.get_mut(inner) else {
            return;
        };
        match shared {
            None => route.plain &= !(1 << shard),
            Some(_) => {
                if let Some(mask) = route.shared.get_mut(filter) {
                    *mask &= !(1 << shard);
                    if *mask == 0 {
                        route.shared.remove(filter);
                    }
                }
            }
        }
        if route.plain == 0 && route.shared.is_empty() {
            self.routes.remove(inner);
        }
    }

    /// A batch of messages from shard `from`.
    pub fn remote(&mut self, from: usize, batch: Vec<ShardMsg>, now: std::time::Instant) {
        self.now = now;
        for msg in batch {
            match msg {
                ShardMsg::Deliver(message) => {
                    self.deliver_local(&message, None, None);
                    self.mourn(&message);
                }
                ShardMsg::DeliverShared {
                    group,
                    message,
                    publisher,
                } => self.deliver_shared_local(&group, &message, publisher),
                ShardMsg::Retain(message) => {
                    self.retained.update(&message, None);
                }
                ShardMsg::RouteAdd {
                    filter,
                    shard,
                    sync,
                } => {
                    self.add_route(&filter, shard);
                    self.ack_route(from, sync);
                }
                ShardMsg::RouteRemove {
                    filter,
                    shard,
                    sync,
                } => {
                    self.remove_route(&filter, shard);
                    self.ack_route(from, sync);
                }
                ShardMsg::Barrier { sync } => self.ack_route(from, sync),
                ShardMsg::RouteAck { sync } => self.route_acknowledged(sync),
            }
        }
    }
}

/// A member for the next message, among those that may read it: by publisher, or the next
/// connected one in turn (any member if none is connected: its session queues the message).
/// None when no member may read it.
fn pick_member(
    group: &mut SharedGroup,
    policy: SharedPolicy,
    publisher: u64,
    may_read: impl Fn(SessionKey) -> bool,
    connected: impl Fn(SessionKey) -> bool,
) -> Option<(SessionKey, Subscription)> {
    let n = group.members.len();
    if n == 0 {
        return None;
    }
    if policy == SharedPolicy::Publisher {
        let member = group.members[publisher as usize % n];
        if may_read(member.0) {
            return Some(member);
        }
    }
    let start = group.next;
    group.next = group.next.wrapping_add(1);
    let mut readers = (0..n)
        .map(|i| group.members[(start + i) % n])
        .filter(|(key, _)| may_read(*key));
    let first = readers.next()?;
    if connected(first.0) {
        return Some(first);
    }
    Some(readers.find(|(key, _)| connected(*key)).unwrap_or(first))
}
