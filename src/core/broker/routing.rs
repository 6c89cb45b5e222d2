//! Two-level routing: a publish is matched once against the route table (filter -> shards),
//! sent once to each interested shard, and matched there against the local subscription trie.
//! A shared subscription group gets each message once: the publishing shard picks one shard
//! with members, that shard picks one member.

use std::sync::Arc;

use super::packets::is_sys_topic;
use super::{effective_qos, Broker, Feeder, Hold, SessionKey};
use crate::core::filter::Filter;
use crate::core::message::{Delivery, Message, SharedMessage};
use crate::core::retained::{RetainOutcome, RetainedLimits};
use crate::core::router::Room;
use crate::core::session::{DeliverOutcome, DeliveryEvent, Subscription};
use crate::core::shard_msg::ShardMsg;
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
        if self.router.has_hints() {
            // Subscriptions made on other shards a moment ago count already (see
            // `router::hints`).
            self.router.apply_hints();
        }
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
                    if let Some(n) = self.logs.retained.record(1, self.now) {
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
                    self.router.broadcast(ShardMsg::Retain(message.clone()));
                    if !is_sys_topic(message.topic()) {
                        self.journal_retained(&message);
                    }
                }
            }
        }
        let targets = self.router.targets(message.topic());
        let (me, shards) = (self.shard, self.shards);
        for to in (0..shards).filter(|&s| s != me && targets.plain & (1 << s) != 0) {
            self.send_to_shard(to, ShardMsg::Deliver(message.clone()));
        }
        if targets.plain & (1 << self.shard) != 0 {
            self.deliver_local(&message, origin);
        }
        for (group, mask) in &targets.groups {
            self.route_shared(group, *mask, &message, publisher);
        }
        !targets.is_empty()
    }

    /// Delivers to this shard's plain subscribers, each session once, at the highest QoS of
    /// its matching subscriptions and with all their identifiers (MQTT-3.3.5-1, 3.3.4).
    fn deliver_local(&mut self, message: &SharedMessage, origin: Option<SessionKey>) -> usize {
        let mut matched = self.match_scratch.take().unwrap_or_default();
        // A QoS 2 message resent after a restart was first published before it: it is for the
        // subscriptions restored (each shard restored them at its own instant), not later ones.
        let published_at = match message.receipt.resent {
            true => self.restored_at.unwrap_or(message.published_at),
            false => message.published_at,
        };
        self.router.for_each_local_match(
            message.topic(),
            |key, sub| {
                let own = sub.options.no_local && Some(key) == origin;
                if own || sub.since > published_at {
                    return;
                }
                let m = matched.entry(key).or_insert(Match {
                    best: sub,
                    ids: Vec::new(),
                });
                if sub.options.qos > m.best.options.qos {
                    m.best = sub;
                }
                m.ids.extend(sub.id);
            },
            |_| {},
        );
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

    fn deliver_to(&mut self, key: SessionKey, mut delivery: Delivery) {
        self.store_delivery(key, &mut delivery);
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let receipt = delivery.message.receipt;
        if receipt.resent && session.receipts.contains(&receipt.id) {
            // It got this QoS 2 message before the restart: exactly once.
            return;
        }
        if !session.may_receive(delivery.message.topic()) {
            self.note_drop(|c| &mut c.dropped_not_authorized);
            return;
        }
        let conn_id = session.conn;
        let link = conn_id
            .and_then(|c| self.conns.get_mut(&c))
            .filter(|c| !c.closing)
            .map(|c| &mut c.link);
        let qos = delivery.qos;
        let shared_group = delivery.shared_group.clone();
        let note = delivery.send_note();
        let outcome = session.deliver(delivery, link, &self.limits, self.now);
        if outcome == DeliverOutcome::Sent {
            let counters = &mut self.counters;
            note.sent(&mut counters.sent, &mut counters.delivery_latency, self.now);
        }
        if outcome == DeliverOutcome::Queued
            && qos > QoS::AtMostOnce
            && session.holds_publishers(&self.limits, self.now)
        {
            session.holding = true;
            let hold = match shared_group {
                Some(group) => Hold::Group(group),
                None => Hold::Session(key),
            };
            self.hold_feeder(hold);
        }
        self.account(outcome);
        self.journal_deliveries(key);
        self.spill_session(key);
        if let (Some(c), DeliverOutcome::Sent) = (conn_id, outcome) {
            self.queue_flush(c);
        }
    }

    /// Picks the shard (out of `mask`) whose members get this message of `group`.
    fn route_shared(&mut self, group: &Filter, mask: u64, message: &SharedMessage, publisher: u64) {
        if mask == 0 {
            return;
        }
        let policy = self.features.shared_policy;
        let shard = self.router.pick_shard(group, mask, policy, publisher);
        if shard == self.shard {
            self.deliver_shared_local(group, message, publisher, 0, 0);
        } else {
            let token = self.reroute_token();
            self.send_to_shard(
                shard,
                ShardMsg::DeliverShared {
                    group: group.clone(),
                    message: message.clone(),
                    publisher,
                    tried: 0,
                    token,
                },
            );
        }
    }

    /// Gives a message of shared subscription `group` to one of its members on this shard,
    /// preferring connected ones. `token`: the one it was passed on here with, if any (see
    /// `commit`); it is answered once the message is on disk, here or further on.
    fn deliver_shared_local(
        &mut self,
        group: &Filter,
        message: &SharedMessage,
        publisher: u64,
        tried: u64,
        token: u64,
    ) {
        let from = match self.feeder {
            Some(Feeder::Peer(from)) => Some(from),
            _ => None,
        };
        let landed = |broker: &mut Broker| {
            if let (Some(from), true) = (from, token != 0) {
                broker.pass_on_landed(from, token);
            }
        };
        let (sessions, limits, now) = (&self.sessions, &self.limits, self.now);
        let policy = self.features.shared_policy;
        let topic = message.topic();
        let Some(members) = self.router.group_mut(group) else {
            self.note_drop(|c| &mut c.dropped_no_member);
            landed(self);
            return;
        };
        let chosen = members.pick(
            policy,
            publisher,
            |key| sessions.get(&key).is_some_and(|s| s.may_receive(topic)),
            |key| match sessions.get(&key) {
                Some(s) if s.conn.is_some() && !s.is_stalled(limits, now) => {
                    match s.is_backlogged(limits) {
                        false => Room::Free,
                        true => Room::Backlogged(s.queued_len()),
                    }
                }
                _ => Room::Away,
            },
        );
        let Some(((key, sub), room)) = chosen else {
            // Members there are, but the ACL lets none of them read this topic.
            self.note_drop(|c| &mut c.dropped_not_authorized);
            landed(self);
            return;
        };
        if room != Room::Free {
            // No member here has room: a shard with members that has not tried may.
            let tried = tried | 1 << self.shard;
            let untried = self.router.group_shards(group) & !tried;
            if untried != 0 {
                let next = untried.trailing_zeros() as usize;
                let token = match message.qos > QoS::AtMostOnce {
                    true => match self.pass_on_token(from, token) {
                        0 => self.reroute_token(),
                        token => token,
                    },
                    false => 0,
                };
                self.send_to_shard(
                    next,
                    ShardMsg::DeliverShared {
                        group: group.clone(),
                        message: message.clone(),
                        publisher,
                        tried,
                        token,
                    },
                );
                return;
            }
        }
        let mut delivery = Delivery::new(
            message.clone(),
            effective_qos(message.qos, sub.options.qos),
            false,
        );
        delivery.subscription_ids.extend(sub.id);
        delivery.shared_group = Some(group.clone());
        self.deliver_to(key, delivery);
        landed(self);
    }

    /// Sends what a leaving member of shared groups had not acknowledged to other members.
    pub(super) fn redistribute_shared(&mut self, key: SessionKey) {
        let taken = self
            .sessions
            .get_mut(&key)
            .map(|s| s.take_shared(None))
            .unwrap_or_default();
        // Owed to the new members first: a log cut short between the two records then has
        // the message twice, never not at all.
        self.reroute_shared(taken, key);
        self.journal_deliveries(key);
    }

    /// The same for one group the member unsubscribed from.
    pub(super) fn redistribute_group(&mut self, key: SessionKey, group: &Filter) {
        let taken = self
            .sessions
            .get_mut(&key)
            .map(|s| s.take_shared(Some(group)))
            .unwrap_or_default();
        self.reroute_shared(taken, key);
        self.journal_deliveries(key);
    }

    /// Sends `deliveries`, taken from the leaving member `from`, to other members. One that
    /// goes to another shard stays owed to `from` in the log until it is on disk there
    /// (`reroute_token`); the others' removals are journaled after the loop, once their new
    /// owners' records are made.
    fn reroute_shared(&mut self, deliveries: Vec<Delivery>, from: SessionKey) {
        // Set aside: a message landing back on `from` would journal them all at once.
        let (client_id, mut removals) = match self.sessions.get_mut(&from) {
            Some(s) => {
                let (removals, rest) = std::mem::take(&mut s.delivery_events)
                    .into_iter()
                    .partition(|e| matches!(e, DeliveryEvent::Delivered { .. }));
                s.delivery_events = rest;
                (Some(s.client_id.clone()), removals)
            }
            None => (None, Vec::new()),
        };
        for delivery in deliveries {
            let Some(group) = delivery.shared_group else {
                continue;
            };
            let mask = self.router.group_shards(&group);
            if mask == 0 {
                self.note_drop(|c| &mut c.dropped_no_member);
                continue;
            }
            // Back on this shard it gets a new id: a held removal of this one cannot undo it.
            self.last_stored = None;
            let watched = match (&client_id, delivery.stored != 0) {
                (Some(client_id), true) => {
                    self.rerouting = Some((client_id.clone(), delivery.stored));
                    true
                }
                _ => false,
            };
            self.route_shared(&group, mask, &delivery.message, 0);
            // `reroute_token` took it: the removal is held.
            let held = watched && self.rerouting.take().is_none();
            if held {
                let id = delivery.stored;
                removals
                    .retain(|e| !matches!(e, DeliveryEvent::Delivered { id: done } if *done == id));
            }
        }
        if let Some(session) = self.sessions.get_mut(&from) {
            session.delivery_events.extend(removals);
        }
    }

    /// Adds a local subscriber; true when this shard's route for the filter is new and must
    /// reach the other shards.
    pub(super) fn add_subscriber(
        &mut self,
        filter: &Filter,
        key: SessionKey,
        sub: Subscription,
    ) -> bool {
        self.router.subscribe(filter, key, sub)
    }

    /// Removes `key`'s subscription from the local trie. True when it was the shard's last on
    /// `filter`: the caller tells the other shards to drop their route.
    pub(super) fn remove_subscriber(&mut self, filter: &Filter, key: SessionKey) -> bool {
        self.router.unsubscribe(filter, key)
    }

    /// A batch of messages from shard `from`.
    /// What is left of an earlier one, set aside when a subscriber behind made this shard
    /// hold `from` back, goes first; and what is left of this one is set aside the same way
    /// ([`Broker::mesh_hold`]), so no subscriber gets more than one message past its mark.
    pub fn remote(&mut self, from: usize, batch: Vec<ShardMsg>, now: std::time::Instant) {
        self.now = now;
        self.feeder = Some(Feeder::Peer(from));
        let mut queue = std::mem::take(&mut self.parked[from]);
        queue.extend(batch);
        while let Some(msg) = queue.pop_front() {
            if self.peer_held[from].is_some() {
                queue.push_front(msg);
                break;
            }
            self.taking_from_shard(from, &msg);
            match msg {
                ShardMsg::Deliver(message) => {
                    self.deliver_local(&message, None);
                    self.mourn(&message);
                }
                ShardMsg::DeliverShared {
                    group,
                    message,
                    publisher,
                    tried,
                    token,
                } => self.deliver_shared_local(&group, &message, publisher, tried, token),
                ShardMsg::Retain(message) => {
                    // Recorded where it was decided, on the publisher's shard.
                    self.retained.update(&message, None);
                }
                ShardMsg::RouteAdd {
                    filter,
                    shard,
                    sync,
                    seq,
                } => {
                    self.router.route_added(&filter, shard, seq);
                    self.router.acknowledge(from, sync);
                }
                ShardMsg::RouteRemove {
                    filter,
                    shard,
                    sync,
                    seq,
                } => {
                    self.router.route_removed(&filter, shard, seq);
                    self.router.acknowledge(from, sync);
                }
                ShardMsg::Barrier { sync } => self.router.acknowledge(from, sync),
                ShardMsg::RouteAck { sync } => self.route_acknowledged(sync),
                ShardMsg::DurableAck { through } => self.peer_committed(from, through),
                ShardMsg::PassOnCommitted { tokens } => self.pass_ons_committed(tokens),
                ShardMsg::ReceiptReleased { receipt } => self.receipt_released(receipt, false),
            }
        }
        self.parked[from] = queue;
        self.taken_from_shard(from);
        self.feeder = None;
    }

    /// Whether messages from `from` wait here for a hold to end ([`Broker::remote`] takes
    /// them first, with or without a new batch).
    pub fn has_parked(&self, from: usize) -> bool {
        !self.parked[from].is_empty()
    }
}
