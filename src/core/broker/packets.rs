//! What each packet from a connected client does (subscriptions are in `subscribe.rs`).

use std::sync::Arc;
use std::time::Instant;

use super::{Broker, ConnId, Feeder, SessionKey, OUTBOX_HIGH_WATER};
use crate::core::message::{Message, Receipt};
use crate::core::session::Session;
use crate::core::store::Record;
use crate::core::topic_alias::AliasError;
use crate::protocol::topic::topic_levels;
use crate::protocol::{Ack, Disconnect, Packet, PacketType, Publish, QoS, ReasonCode};

impl Broker {
    /// A packet decoded from connection `id`.
    pub fn handle(&mut self, id: ConnId, packet: Packet, now: Instant) {
        self.now = now;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.closing {
            return;
        }
        conn.last_seen = now;
        // A packet handled here is served here.
        conn.may_hand_off = false;
        let Some(key) = conn.session else {
            match packet {
                Packet::Connect(connect) => self.connect(id, *connect),
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
                if self.session_acked(key, |s| s.on_puback(ack.packet_id)) {
                    self.pump(id, key);
                }
            }
            Packet::PubRec(ack) if ack.reason.is_error() => {
                // Refused (5.0): the flow ends here, no PUBREL (MQTT-4.3.3).
                if self.session_acked(key, |s| s.on_pubrec_refused(ack.packet_id)) {
                    self.pump(id, key);
                }
            }
            Packet::PubRec(ack) => {
                let conn = self.conns.get_mut(&id).expect("checked above");
                if let Some(session) = self.sessions.get_mut(&key) {
                    if session.on_pubrec(ack.packet_id, &mut conn.link) {
                        session.note_progress(now);
                    }
                }
                self.journal_deliveries(key);
                self.queue_flush(id);
            }
            Packet::PubComp(ack) => {
                if self.session_acked(key, |s| s.on_pubcomp(ack.packet_id)) {
                    self.pump(id, key);
                }
            }
            Packet::PubRel(ack) => {
                let session = self.sessions.get_mut(&key);
                let durable = session.as_ref().is_some_and(|s| s.durable);
                let released = session.and_then(|s| s.on_pubrel(ack.packet_id));
                let known = released.is_some();
                if known && durable {
                    let client_id = self.sessions.get(&key).map(|s| s.client_id.clone());
                    if let Some(client_id) = client_id {
                        self.journal(|| Record::Qos2Released {
                            client_id,
                            pkid: ack.packet_id,
                        });
                    }
                }
                if let Some(receipt) = released.filter(|&r| r != 0) {
                    self.receipt_released(receipt, true);
                }
                let conn = self.conns.get_mut(&id).expect("checked above");
                let mut comp = Ack::new(ack.packet_id);
                if !known && conn.link.version.is_v5() {
                    comp.reason = ReasonCode::PacketIdentifierNotFound;
                }
                conn.link.write_control("PUBCOMP", |version, out| {
                    comp.write(PacketType::PubComp, version, out)
                });
                self.queue_flush(id);
            }
            Packet::Subscribe(subscribe) => self.on_subscribe(id, key, subscribe),
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(id, key, unsubscribe),
            Packet::PingReq => {
                let conn = self.conns.get_mut(&id).expect("checked above");
                conn.link.write_control("PINGRESP", |version, out| {
                    crate::protocol::encode(&Packet::PingResp, version, out)
                });
                self.queue_flush(id);
            }
            Packet::Disconnect(disconnect) => self.on_disconnect(id, key, disconnect),
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

    fn on_disconnect(&mut self, id: ConnId, key: SessionKey, disconnect: Disconnect) {
        let conn = self.conns.get_mut(&id).expect("caller checked");
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            // A session that was to end at disconnect cannot be extended then (MQTT-3.14.2-2).
            if conn.connect_expiry == 0 && expiry != 0 {
                self.fail(
                    id,
                    ReasonCode::ProtocolError,
                    "session expiry set at DISCONNECT",
                );
                return;
            }
            if let Some(session) = self.sessions.get_mut(&key) {
                session.expiry_interval = expiry;
            }
        }
        // A normal DISCONNECT discards the will; 5.0's 0x04 asks for it (MQTT-3.14.4-3).
        if disconnect.reason != ReasonCode::DisconnectWithWillMessage {
            conn.will = None;
        }
        let new_expiry = disconnect.properties.session_expiry_interval;
        self.close(id);
        if let Some(expiry) = new_expiry.filter(|&e| e != 0) {
            self.journal_session(key, expiry);
        }
    }

    fn on_publish(&mut self, id: ConnId, key: SessionKey, mut publish: Publish) {
        self.counters.publishes_received += 1;
        self.counters
            .received
            .note(publish.qos, publish.payload().len());
        if !publish.properties.subscription_identifiers.is_empty() {
            // Only the server sets them (MQTT-3.3.4-6).
            return self.fail(
                id,
                ReasonCode::ProtocolError,
                "subscription identifier in a client's PUBLISH",
            );
        }
        let features = &self.features;
        if publish.qos > features.max_qos {
            return self.fail(
                id,
                ReasonCode::QoSNotSupported,
                "QoS above the server's maximum",
            );
        }
        if publish.retain && !features.retain_available {
            return self.fail(
                id,
                ReasonCode::RetainNotSupported,
                "retain is not available",
            );
        }
        let alias_maximum = features.topic_alias_maximum;
        let receive_maximum = features.receive_maximum;
        // The topic an alias stands for; otherwise the packet's own (see Message::from_publish).
        let aliased_topic = match publish.properties.topic_alias {
            None => None,
            Some(alias) => {
                let conn = self.conns.get_mut(&id).expect("caller checked");
                match conn
                    .inbound_aliases
                    .resolve(publish.topic(), alias, alias_maximum)
                {
                    Ok(topic) => Some(topic),
                    Err(AliasError::OutOfRange) => {
                        return self.fail(
                            id,
                            ReasonCode::TopicAliasInvalid,
                            "topic alias out of range",
                        )
                    }
                    Err(AliasError::Unknown) => {
                        return self.fail(id, ReasonCode::ProtocolError, "unknown topic alias")
                    }
                }
            }
        };
        let qos = publish.qos;
        let packet_id = publish.packet_id;
        // A payload declared UTF-8 that is not (5.0 3.3.2.3.2) is refused, not routed.
        if publish.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(publish.payload()).is_err()
        {
            if qos == QoS::AtMostOnce {
                return self.fail(id, ReasonCode::PayloadFormatInvalid, "payload is not UTF-8");
            }
            let properties = self.problem(id, "payload is not UTF-8");
            return self.acknowledge(
                id,
                qos,
                packet_id,
                ReasonCode::PayloadFormatInvalid,
                properties,
            );
        }
        let topic = aliased_topic.as_deref().unwrap_or(publish.topic());
        if topic_levels(topic) > self.limits.max_topic_levels {
            return self.fail(id, ReasonCode::TopicNameInvalid, "too many topic levels");
        }
        // One session lookup for both: who publishes (for by-publisher shared groups) and
        // whether the ACL lets it.
        // `$SYS` is the broker's own: no client writes there, ACL or not (a bridge its state).
        let bridge = self.conns.get(&id).is_some_and(|c| c.bridge);
        let (publisher, allowed) = self.sessions.get(&key).map_or((0, true), |s| {
            let allowed = sys_allows(topic, bridge)
                && s.acl.as_ref().is_none_or(|acl| acl.may_publish(topic));
            (client_hash(&s.client_id), allowed)
        });
        if !allowed {
            return self.refuse_publish(id, qos, packet_id);
        }
        if qos != QoS::AtMostOnce
            && self.store_space.full()
            && !self.is_retransmit(key, qos, packet_id)
        {
            return self.refuse_store_full(id, qos, packet_id);
        }
        let mut receipt = Receipt::default();
        let route = match qos {
            QoS::ExactlyOnce => {
                let Some(session) = self.sessions.get_mut(&key) else {
                    return;
                };
                if session.awaiting_pubrel_len() >= usize::from(receive_maximum) {
                    return self.fail(
                        id,
                        ReasonCode::ReceiveMaximumExceeded,
                        "too many QoS 2 messages awaiting PUBREL",
                    );
                }
                // A retransmission before PUBREL is acknowledged, not routed again; unless
                // the first was received before a restart: then it goes to the durable
                // sessions that did not get it (those that did have its receipt).
                if session.receive_qos2(packet_id) {
                    if session.durable {
                        // Its PUBREC waits for this record.
                        let client_id = session.client_id.clone();
                        let id = self.next_receipt();
                        if let Some(session) = self.sessions.get_mut(&key) {
                            session.set_qos2_receipt(packet_id, id);
                        }
                        receipt.id = id;
                        self.journal(|| Record::Qos2Received {
                            client_id,
                            pkid: packet_id,
                            receipt: id,
                        });
                    }
                    true
                } else if let Some(id) = session.take_restored_qos2(packet_id) {
                    receipt = Receipt { id, resent: true };
                    true
                } else {
                    false
                }
            }
            _ => true,
        };
        let mut matched = true;
        if route {
            // Only when set: writing through an empty Properties allocates its values.
            if publish.properties.topic_alias.is_some() {
                publish.properties.topic_alias = None;
            }
            let mut message = Message::from_publish(publish, aliased_topic, self.now);
            message.receipt = receipt;
            let message = Arc::new(message);
            let outbox_before = self.outbox_len();
            self.feeder = Some(Feeder::Conn(id));
            matched = self.publish_message(message, Some(key), publisher);
            self.feeder = None;
            let outbox_after = self.outbox_len();
            if outbox_after > outbox_before && outbox_after > OUTBOX_HIGH_WATER {
                // Another shard is behind: this publisher waits for it, others go on.
                let newly = self
                    .conns
                    .get_mut(&id)
                    .is_some_and(|c| !std::mem::replace(&mut c.outbox_paused, true));
                if newly {
                    self.counters.publishers_paused += 1;
                    if let Some(n) = self.logs.pauses.record(1, self.now) {
                        tracing::warn!(
                            shard = self.shard,
                            paused = n,
                            waiting = outbox_after,
                            "messages for other shards pile up; publishers feeding them are slowed"
                        );
                    }
                }
            }
        }
        let v5 = self.conns.get(&id).is_some_and(|c| c.link.version.is_v5());
        let reason = if v5 && !matched {
            ReasonCode::NoMatchingSubscribers
        } else {
            ReasonCode::Success
        };
        self.acknowledge(id, qos, packet_id, reason, Default::default());
    }

    /// Applies an ack to the session; true when it matched a message, which is progress.
    fn session_acked(&mut self, key: SessionKey, ack: impl FnOnce(&mut Session) -> bool) -> bool {
        let now = self.now;
        let Some(session) = self.sessions.get_mut(&key) else {
            return false;
        };
        let matched = ack(session);
        if matched {
            session.note_progress(now);
            self.journal_deliveries(key);
        }
        matched
    }

    /// A PUBLISH the ACL does not allow: not routed, counted. 5.0 says so in the ack (0x87);
    /// 3.x cannot, so the ack is the usual one, as Mosquitto's.
    /// (A QoS 2 one's PUBREL then finds nothing and gets its PUBCOMP all the same.)
    fn refuse_publish(&mut self, id: ConnId, qos: QoS, packet_id: u16) {
        self.note_drop(|c| &mut c.dropped_not_authorized);
        let v5 = self.conns.get(&id).is_some_and(|c| c.link.version.is_v5());
        if v5 {
            let properties = self.problem(id, "not authorized to publish to this topic");
            return self.acknowledge(id, qos, packet_id, ReasonCode::NotAuthorized, properties);
        }
        self.acknowledge(id, qos, packet_id, ReasonCode::Success, Default::default());
    }

    /// A QoS 2 PUBLISH whose first copy was taken and awaits PUBREL: it adds nothing to
    /// the store.
    fn is_retransmit(&self, key: SessionKey, qos: QoS, packet_id: u16) -> bool {
        qos == QoS::ExactlyOnce
            && self
                .sessions
                .get(&key)
                .is_some_and(|s| s.awaits_pubrel(packet_id))
    }

    /// A QoS 1/2 PUBLISH while the durable store is full (`--max-data-bytes`, a full disk):
    /// refused rather than acknowledged without being on disk, and counted. 5.0 says so in
    /// the ack (0x97 Quota exceeded); 3.x has no way to refuse one but to close the
    /// connection, and the client sends it again when it is back.
    fn refuse_store_full(&mut self, id: ConnId, qos: QoS, packet_id: u16) {
        self.counters.refused_store_full += 1;
        if let Some(n) = self.logs.store_full.record(1, self.now) {
            tracing::warn!(
                shard = self.shard,
                refused = n,
                refused_total = self.counters.refused_store_full,
                store_bytes = self.store_space.used(),
                "the durable store is full: QoS 1/2 publishes are refused"
            );
        }
        let v5 = self.conns.get(&id).is_some_and(|c| c.link.version.is_v5());
        if v5 {
            let properties = self.problem(id, "the durable store is full");
            return self.acknowledge(id, qos, packet_id, ReasonCode::QuotaExceeded, properties);
        }
        self.disconnect(id, ReasonCode::QuotaExceeded);
    }

    /// PUBACK (QoS 1) or PUBREC (QoS 2) for an incoming PUBLISH.
    fn acknowledge(
        &mut self,
        id: ConnId,
        qos: QoS,
        packet_id: u16,
        reason: ReasonCode,
        properties: crate::protocol::Properties,
    ) {
        let packet = match qos {
            QoS::AtMostOnce => return,
            QoS::AtLeastOnce => PacketType::PubAck,
            QoS::ExactlyOnce => PacketType::PubRec,
        };
        if !reason.is_error() {
            // The records of what it took, the message's among them, are on disk first.
            self.after_records(id);
        }
        if let Some(conn) = self.conns.get_mut(&id) {
            let ack = Ack {
                packet_id,
                reason,
                properties,
            };
            conn.link
                .write_control("ack", |version, out| ack.write(packet, version, out));
        }
        self.queue_flush(id);
    }
}

/// A stable hash of a client id, for the by-publisher shared subscription policy.
pub(super) fn client_hash(client_id: &str) -> u64 {
    ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(client_id)
}

pub(super) fn is_sys_topic(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

/// Where a Mosquitto bridge reports its state on the remote broker (its notifications, and
/// its will there).
const BRIDGE_STATE_TOPICS: &str = "$SYS/broker/connection/";

/// Whether a client may write to `topic` as far as `$SYS` goes: only the broker may, but for
/// a bridge's own state.
pub(super) fn sys_allows(topic: &str, bridge: bool) -> bool {
    !is_sys_topic(topic) || (bridge && topic.starts_with(BRIDGE_STATE_TOPICS))
}
