//! Two-level routing: a publish is matched once against the route table (filter -> shards),
//! sent once to each interested shard, and matched there against the local subscription trie.

use ahash::AHashMap;

use super::{effective_qos, Broker, SessionKey};
use crate::core::message::{Delivery, SharedMessage};
use crate::core::shard_msg::ShardMsg;
use crate::protocol::SubscriptionOptions;

impl Broker {
    /// Routes a message published on this shard (or a will) to every subscriber.
    pub(super) fn publish_message(&mut self, message: SharedMessage) {
        if message.retain {
            self.retained.update(&message);
            for to in (0..self.shards).filter(|&s| s != self.shard) {
                self.outbox[to].push(ShardMsg::Retain(message.clone()));
            }
        }
        if self.shards == 1 {
            self.deliver_local(&message);
            return;
        }
        let mut shards = 0u64;
        self.routes
            .for_each_match(&message.topic, |mask| shards |= *mask);
        for to in (0..self.shards).filter(|&s| s != self.shard && shards & (1 << s) != 0) {
            self.outbox[to].push(ShardMsg::Deliver(message.clone()));
        }
        if shards & (1 << self.shard) != 0 {
            self.deliver_local(&message);
        }
    }

    /// Delivers to the sessions on this shard whose subscriptions match, each once, at the
    /// highest QoS any of its matching subscriptions granted (MQTT-3.3.5-1).
    fn deliver_local(&mut self, message: &SharedMessage) {
        let mut matched = std::mem::take(&mut self.match_scratch);
        self.subscriptions
            .for_each_match(&message.topic, |subscribers| {
                for (&key, &options) in subscribers {
                    matched
                        .entry(key)
                        .and_modify(|best: &mut SubscriptionOptions| {
                            if options.qos > best.qos {
                                *best = options;
                            }
                        })
                        .or_insert(options);
                }
            });
        for (key, options) in matched.drain() {
            self.deliver_to(key, message, options);
        }
        self.match_scratch = matched;
    }

    fn deliver_to(
        &mut self,
        key: SessionKey,
        message: &SharedMessage,
        options: SubscriptionOptions,
    ) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let delivery = Delivery {
            message: message.clone(),
            qos: effective_qos(message.qos, options.qos),
            // Established subscriptions get RETAIN 0 unless 5.0's Retain As Published.
            retain: options.retain_as_published && message.retain,
        };
        let conn_id = session.conn;
        let link = conn_id
            .and_then(|c| self.conns.get_mut(&c))
            .filter(|c| !c.closing)
            .map(|c| &mut c.link);
        let outcome = session.deliver(delivery, link, &self.limits);
        self.account(outcome);
        if let Some(c) = conn_id {
            if outcome == crate::core::session::DeliverOutcome::Sent {
                self.queue_flush(c);
            }
        }
    }

    /// Adds a local subscriber; true when the filter's route is new and must reach the other
    /// shards.
    pub(super) fn add_subscriber(
        &mut self,
        filter: &str,
        key: SessionKey,
        options: SubscriptionOptions,
    ) -> bool {
        let subscribers = self.subscriptions.get_or_insert_with(filter, AHashMap::new);
        let first = subscribers.is_empty();
        subscribers.insert(key, options);
        if first && self.shards > 1 {
            *self.routes.get_or_insert_with(filter, || 0) |= 1 << self.shard;
            return true;
        }
        false
    }

    pub(super) fn remove_subscriber(&mut self, filter: &str, key: SessionKey) {
        let Some(subscribers) = self.subscriptions.get_mut(filter) else {
            return;
        };
        subscribers.remove(&key);
        if !subscribers.is_empty() {
            return;
        }
        self.subscriptions.remove(filter);
        if self.shards > 1 {
            self.remove_route(filter, self.shard);
            for to in (0..self.shards).filter(|&s| s != self.shard) {
                self.outbox[to].push(ShardMsg::RouteRemove {
                    filter: filter.into(),
                    shard: self.shard,
                });
            }
        }
    }

    fn remove_route(&mut self, filter: &str, shard: usize) {
        if let Some(mask) = self.routes.get_mut(filter) {
            *mask &= !(1 << shard);
            if *mask == 0 {
                self.routes.remove(filter);
            }
        }
    }

    /// A batch of messages from shard `from`.
    pub fn remote(&mut self, from: usize, batch: Vec<ShardMsg>) {
        for msg in batch {
            match msg {
                ShardMsg::Deliver(message) => self.deliver_local(&message),
                ShardMsg::Retain(message) => self.retained.update(&message),
                ShardMsg::RouteAdd {
                    filter,
                    shard,
                    sync,
                } => {
                    *self.routes.get_or_insert_with(&filter, || 0) |= 1 << shard;
                    if sync != 0 {
                        self.outbox[from].push(ShardMsg::RouteAck { sync });
                    }
                }
                ShardMsg::RouteRemove { filter, shard } => self.remove_route(&filter, shard),
                ShardMsg::RouteAck { sync } => {
                    let done = match self.pending_subscribes.get_mut(&sync) {
                        Some(p) => {
                            p.acks_missing -= 1;
                            p.acks_missing == 0
                        }
                        None => false,
                    };
                    if done {
                        let pending = self.pending_subscribes.remove(&sync).expect("present");
                        self.finish_subscribe(pending);
                    }
                }
            }
        }
    }
}
