//! What each packet from a connected client does.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::{effective_qos, Broker, ConnId, PendingSubscribe, SessionKey};
use crate::core::message::{Delivery, Message};
use crate::core::shard_msg::ShardMsg;
use crate::protocol::topic::parse_shared;
use crate::protocol::{
    Ack, Packet, PacketType, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck,
    Unsubscribe,
};

impl Broker {
    /// A packet decoded from connection `id`.
    pub fn handle(&mut self, id: ConnId, packet: Packet, now: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.last_seen = now;
        let Some(key) = conn.session else {
            match packet {
                Packet::Connect(connect) => self.connect(id, *connect, now),
                // The first packet must be CONNECT (MQTT-3.1.0-1): close without a word.
                _ => {
                    self.counters.protocol_errors += 1;
                    tracing::info!(conn = id, "first packet is not CONNECT; closing");
                    self.close(id);
                }
            }
            return;
        };
        match packet {
            Packet::Publish(publish) => self.on_publish(id, key, publish),
            Packet::PubAck(ack) => {
                let known = self
                    .session_mut(key)
                    .is_some_and(|s| s.on_puback(ack.packet_id));
                if known {
                    self.pump(id, key);
                }
            }
            Packet::PubRec(ack) => {
                let conn = self.conns.get_mut(&id).expect("checked above");
                if let Some(session) = self.sessions.get_mut(&key) {
                    session.on_pubrec(ack.packet_id, &mut conn.link);
                }
                self.queue_flush(id);
            }
            Packet::PubComp(ack) => {
                let known = self
                    .session_mut(key)
                    .is_some_and(|s| s.on_pubcomp(ack.packet_id));
                if known {
                    self.pump(id, key);
                }
            }
            Packet::PubRel(ack) => {
                let known = self
                    .session_mut(key)
                    .is_some_and(|s| s.on_pubrel(ack.packet_id));
                let conn = self.conns.get_mut(&id).expect("checked above");
                let mut comp = Ack::new(ack.packet_id);
                if !known && conn.link.version.is_v5() {
                    comp.reason = ReasonCode::PacketIdentifierNotFound;
                }
                let _ = comp.write(PacketType::PubComp, conn.link.version, &mut conn.link.out);
                self.queue_flush(id);
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(id, key, subscribe),
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(id, key, unsubscribe),
            Packet::PingReq => {
                let conn = self.conns.get_mut(&id).expect("checked above");
                let _ = crate::protocol::encode(
                    &Packet::PingResp,
                    conn.link.version,
                    &mut conn.link.out,
                );
                self.queue_flush(id);
            }
            Packet::Disconnect(disconnect) => {
                let conn = self.conns.get_mut(&id).expect("checked above");
                // A normal DISCONNECT discards the will; 5.0's 0x04 asks for it (MQTT-3.14.4-3).
                if disconnect.reason != ReasonCode::DisconnectWithWillMessage {
                    conn.will = None;
                }
                self.close(id);
            }
            Packet::Connect(_) => self.fail(id, ReasonCode::ProtocolError, "second CONNECT"),
            Packet::Auth(_) => self.fail(
                id,
                ReasonCode::ProtocolError,
                "AUTH without an authentication method",
            ),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => self
                .fail(
                    id,
                    ReasonCode::ProtocolError,
                    "server-to-client packet from a client",
                ),
        }
    }

    fn session_mut(&mut self, key: SessionKey) -> Option<&mut crate::core::session::Session> {
        self.sessions.get_mut(&key)
    }

    /// Sends what the session has queued, as far as its window and the link allow.
    fn pump(&mut self, id: ConnId, key: SessionKey) {
        let (Some(conn), Some(session)) = (self.conns.get_mut(&id), self.sessions.get_mut(&key))
        else {
            return;
        };
        let before = conn.link.out.len();
        let too_large = session.pump(&mut conn.link, &self.limits);
        let wrote = conn.link.out.len() != before;
        self.counters.dropped_too_large += too_large as u64;
        if wrote {
            self.queue_flush(id);
        }
    }

    fn on_publish(&mut self, id: ConnId, key: SessionKey, publish: Publish) {
        self.counters.publishes_received += 1;
        // We advertise no topic aliases (Topic Alias Maximum 0), so any alias is invalid.
        if publish.properties.topic_alias.is_some() {
            self.fail(id, ReasonCode::TopicAliasInvalid, "topic alias not allowed");
            return;
        }
        let qos = publish.qos;
        let packet_id = publish.packet_id;
        let route = match qos {
            QoS::ExactlyOnce => self
                .session_mut(key)
                .is_some_and(|s| s.receive_qos2(packet_id)),
            _ => true,
        };
        if route {
            let topic = publish.topic.clone();
            self.publish_message(Arc::new(Message::from_publish(publish, topic)));
        }
        let ack = match qos {
            QoS::AtMostOnce => return,
            QoS::AtLeastOnce => PacketType::PubAck,
            QoS::ExactlyOnce => PacketType::PubRec,
        };
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.link.write_ack(ack, packet_id);
        }
        self.queue_flush(id);
    }

    fn on_subscribe(&mut self, id: ConnId, key: SessionKey, subscribe: Subscribe) {
        let version = self.conns[&id].link.version;
        if !subscribe.properties.subscription_identifiers.is_empty() {
            self.fail(
                id,
                ReasonCode::SubscriptionIdentifiersNotSupported,
                "subscription identifiers are not available",
            );
            return;
        }
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut new_routes = Vec::new();
        let mut retained_for = Vec::new();
        for f in subscribe.filters {
            if version.is_v5() && parse_shared(&f.filter).is_some() {
                codes.push(ReasonCode::SharedSubscriptionsNotSupported);
                continue;
            }
            let Some(session) = self.sessions.get_mut(&key) else {
                return;
            };
            let existed = session
                .subscriptions
                .insert(f.filter.clone(), f.options)
                .is_some();
            if self.add_subscriber(&f.filter, key, f.options) {
                new_routes.push(f.filter.clone());
            }
            codes.push(match f.options.qos {
                QoS::AtMostOnce => ReasonCode::Success,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            });
            let send_retained = match f.options.retain_handling {
                RetainHandling::OnSubscribe => true,
                RetainHandling::OnNewSubscribe => !existed,
                RetainHandling::Never => false,
            };
            if send_retained {
                retained_for.push((f.filter, f.options));
            }
        }
        let mut suback = BytesMut::new();
        let _ = SubAck {
            packet_id: subscribe.packet_id,
            codes,
            ..SubAck::default()
        }
        .write(version, &mut suback);
        let pending = PendingSubscribe {
            conn: id,
            acks_missing: new_routes.len() * (self.shards - 1),
            suback,
            retained_for,
        };
        if pending.acks_missing == 0 {
            self.finish_subscribe(pending);
            return;
        }
        // New routes must reach every shard before the SUBACK: a client that publishes after
        // it must find the subscription wherever its publish lands.
        let sync = self.next_sync;
        self.next_sync += 1;
        for filter in new_routes {
            for to in (0..self.shards).filter(|&s| s != self.shard) {
                self.outbox[to].push(ShardMsg::RouteAdd {
                    filter: filter.clone(),
                    shard: self.shard,
                    sync,
                });
            }
        }
        self.pending_subscribes.insert(sync, pending);
    }

    /// Writes the SUBACK, then the retained messages for the new subscriptions.
    pub(super) fn finish_subscribe(&mut self, pending: PendingSubscribe) {
        let id = pending.conn;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.link.out.extend_from_slice(&pending.suback);
        let Some(key) = conn.session else {
            return;
        };
        for (filter, options) in pending.retained_for {
            let messages: Vec<_> = self.retained.matching(&filter).cloned().collect();
            for message in messages {
                let qos = effective_qos(message.qos, options.qos);
                let (Some(conn), Some(session)) =
                    (self.conns.get_mut(&id), self.sessions.get_mut(&key))
                else {
                    return;
                };
                let outcome = session.deliver(
                    Delivery {
                        message,
                        qos,
                        retain: true,
                    },
                    Some(&mut conn.link),
                    &self.limits,
                );
                self.account(outcome);
            }
        }
        self.queue_flush(id);
    }

    fn on_unsubscribe(&mut self, id: ConnId, key: SessionKey, unsubscribe: Unsubscribe) {
        let mut codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let existed = self
                .sessions
                .get_mut(&key)
                .is_some_and(|s| s.subscriptions.remove(filter).is_some());
            if existed {
                self.remove_subscriber(filter, key);
            }
            codes.push(if existed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        let conn = self.conns.get_mut(&id).expect("caller checked");
        let version = conn.link.version;
        let _ = UnsubAck {
            packet_id: unsubscribe.packet_id,
            codes: if version.is_v5() { codes } else { Vec::new() },
            ..UnsubAck::default()
        }
        .write(version, &mut conn.link.out);
        self.queue_flush(id);
    }
}
