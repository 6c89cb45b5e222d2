//! SUBSCRIBE and UNSUBSCRIBE: the session's subscriptions, the local trie, the routes other
//! shards must learn before the SUBACK goes out, and retained messages for new subscriptions.

use bytes::BytesMut;
use bytestring::ByteString;

use super::{effective_qos, Broker, ConnId, PendingReply, SessionKey};
use crate::core::message::Delivery;
use crate::core::session::Subscription;
use crate::core::shard_msg::ShardMsg;
use crate::protocol::topic::parse_shared;
use crate::protocol::{QoS, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe};

impl Broker {
    pub(super) fn on_subscribe(&mut self, id: ConnId, key: SessionKey, subscribe: Subscribe) {
        let subscription_id = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        if subscription_id.is_some() && !self.features.subscription_identifiers {
            return self.fail(
                id,
                ReasonCode::SubscriptionIdentifiersNotSupported,
                "subscription identifiers are not available",
            );
        }
        let version = self.conns[&id].link.version;
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut new_routes = Vec::new();
        let mut retained_for = Vec::new();
        for mut f in subscribe.filters {
            // Copied: the subscription outlives the read buffer the filter was decoded from.
            f.filter = ByteString::from(&*f.filter);
            let shared = parse_shared(&f.filter).and_then(Result::ok);
            let inner = shared.map_or(&*f.filter, |s| s.filter);
            if shared.is_some() && !self.features.shared_subscriptions {
                codes.push(ReasonCode::SharedSubscriptionsNotSupported);
                continue;
            }
            if !self.features.wildcard_subscriptions && inner.contains(['+', '#']) {
                codes.push(ReasonCode::WildcardSubscriptionsNotSupported);
                continue;
            }
            let acl = self.sessions.get(&key).and_then(|s| s.acl.as_ref());
            if acl.is_some_and(|acl| !acl.may_subscribe(inner)) {
                codes.push(ReasonCode::NotAuthorized);
                continue;
            }
            let mut options = f.options;
            options.qos = options.qos.min(self.features.max_qos);
            let Some(session) = self.sessions.get_mut(&key) else {
                return;
            };
            let previous = session.subscriptions.get(&f.filter).map(|s| s.since);
            let existed = previous.is_some();
            let subscription = Subscription {
                options,
                id: subscription_id,
                since: previous.unwrap_or(self.now),
            };
            session.subscriptions.insert(f.filter.clone(), subscription);
            if self.add_subscriber(&f.filter, key, subscription) {
                new_routes.push(f.filter.clone());
            }
            codes.push(match options.qos {
                QoS::AtMostOnce => ReasonCode::Success,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            });
            // No retained messages for shared subscriptions (5.0, 3.8.4); for the others, as
            // Retain Handling says for the others.
            let send_retained = shared.is_none()
                && match options.retain_handling {
                    RetainHandling::OnSubscribe => true,
                    RetainHandling::OnNewSubscribe => !existed,
                    RetainHandling::Never => false,
                };
            if send_retained {
                retained_for.push((f.filter, subscription));
            }
        }
        let properties = if codes.iter().any(|c| c.is_error()) {
            self.problem(id, "some subscriptions were refused")
        } else {
            Default::default()
        };
        let mut suback = BytesMut::new();
        let _ = SubAck {
            packet_id: subscribe.packet_id,
            codes,
            properties,
        }
        .write(version, &mut suback);
        let pending = PendingReply {
            conn: id,
            acks_missing: new_routes.len() * (self.shards - 1),
            reply: suback,
            retained_for,
        };
        if pending.acks_missing == 0 {
            self.finish_reply(pending);
            return;
        }
        // New routes must reach every shard before the SUBACK: a client that publishes after
        // it must find the subscription wherever its publish lands.
        let sync = self.next_sync;
        self.next_sync += 1;
        for filter in new_routes {
            for to in (0..self.shards).filter(|&s| s != self.shard) {
                self.outbox[to].push_back(ShardMsg::RouteAdd {
                    filter: filter.clone(),
                    shard: self.shard,
                    sync,
                });
            }
        }
        self.pending_replies.insert(sync, pending);
    }

    /// Writes the SUBACK (or UNSUBACK), then the retained messages for new subscriptions.
    pub(super) fn finish_reply(&mut self, pending: PendingReply) {
        let id = pending.conn;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.link.out.extend_from_slice(&pending.reply);
        let session = conn.session;
        self.queue_flush(id);
        let Some(key) = session else {
            return;
        };
        for (filter, subscription) in pending.retained_for {
            let Some(session) = self.sessions.get(&key) else {
                return;
            };
            let messages: Vec<_> = self
                .retained
                .matching(&filter)
                .filter(|m| session.may_receive(m.topic()))
                .cloned()
                .collect();
            for message in messages {
                let qos = effective_qos(message.qos, subscription.options.qos);
                let mut delivery = Delivery::new(message, qos, true);
                delivery.subscription_ids.extend(subscription.id);
                let (Some(conn), Some(session)) =
                    (self.conns.get_mut(&id), self.sessions.get_mut(&key))
                else {
                    return;
                };
                let outcome =
                    session.deliver(delivery, Some(&mut conn.link), &self.limits, self.now);
                self.account(outcome);
            }
        }
    }

    pub(super) fn on_unsubscribe(&mut self, id: ConnId, key: SessionKey, unsubscribe: Unsubscribe) {
        let mut codes = Vec::with_capacity(unsubscribe.filters.len());
        // Routes removed on other shards are acknowledged before the UNSUBACK, as for SUBACK:
        // a PUBLISH right after it then gets 0x10 (no matching subscribers) where it should.
        let sync = self.next_sync;
        let mut removed_routes = 0;
        for filter in &unsubscribe.filters {
            let existed = self
                .sessions
                .get_mut(&key)
                .is_some_and(|s| s.subscriptions.remove(filter).is_some());
            if existed {
                removed_routes += usize::from(self.remove_subscriber(filter, key, sync));
                if parse_shared(filter).is_some() {
                    self.redistribute_group(key, filter);
                }
            }
            codes.push(if existed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        let version = self.conns[&id].link.version;
        let mut unsuback = BytesMut::new();
        let _ = UnsubAck {
            packet_id: unsubscribe.packet_id,
            codes: if version.is_v5() { codes } else { Vec::new() },
            ..UnsubAck::default()
        }
        .write(version, &mut unsuback);
        let pending = PendingReply {
            conn: id,
            acks_missing: removed_routes * (self.shards - 1),
            reply: unsuback,
            retained_for: Vec::new(),
        };
        if pending.acks_missing == 0 {
            return self.finish_reply(pending);
        }
        self.next_sync += 1;
        self.pending_replies.insert(sync, pending);
    }
}
