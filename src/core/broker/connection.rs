//! Connection lifecycle: CONNECT and CONNACK, takeover, wills, protocol errors and closing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;

use super::{Broker, ConnId, SessionKey};
use crate::core::home_shard;
use crate::core::message::Message;
use crate::core::session::{Link, Session};
use crate::protocol::{
    ConnAck, Connect, DecodeError, Disconnect, PropertyValues, ProtocolVersion, ReasonCode, Will,
};

impl Broker {
    /// A CONNECT on a connection without a session. The caller has already made sure this is
    /// the client id's home shard (or the client id is empty).
    pub(super) fn connect(&mut self, id: ConnId, connect: Connect, now: Instant) {
        let version = connect.version;
        let v5 = version.is_v5();
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.link = Link::new(version);
        }
        let mut assigned = None;
        let client_id = if connect.client_id.is_empty() {
            // 3.1 requires a client id; 3.1.1 allows none only with a clean session
            // (MQTT-3.1.3-7, -8); 5.0 always assigns one.
            if version == ProtocolVersion::V3_1
                || (version == ProtocolVersion::V3_1_1 && !connect.clean_start)
            {
                self.refuse(id, ReasonCode::ClientIdentifierNotValid);
                return;
            }
            let generated = self.assign_client_id();
            if v5 {
                assigned = Some(generated.clone());
            }
            generated
        } else {
            connect.client_id
        };

        let mut session_present = false;
        let existing = self.by_client_id.get(&client_id).copied();
        if let Some(key) = existing {
            let old_conn = self.sessions.get_mut(&key).and_then(|s| s.conn.take());
            if let Some(old) = old_conn {
                self.take_over(old, now);
            }
            if connect.clean_start {
                self.destroy_session(key);
            } else {
                session_present = true;
            }
        }
        let persistent = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0) > 0
        } else {
            !connect.clean_start
        };
        let key = match (session_present, existing) {
            (true, Some(key)) => key,
            _ => {
                let key = self.next_session;
                self.next_session += 1;
                self.sessions
                    .insert(key, Session::new(client_id.clone(), persistent));
                self.by_client_id.insert(client_id.clone(), key);
                key
            }
        };

        let limits = self.limits.clone();
        let conn = self.conns.get_mut(&id).expect("connection exists");
        conn.session = Some(key);
        conn.will = connect.will;
        conn.keep_alive_limit = (connect.keep_alive > 0)
            .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
        conn.last_seen = now;
        conn.link.receive_maximum = limits
            .max_inflight
            .min(connect.properties.receive_maximum.unwrap_or(u16::MAX));
        conn.link.max_packet_size = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);

        let properties = if v5 {
            PropertyValues {
                assigned_client_identifier: assigned,
                maximum_packet_size: Some(limits.max_packet_size),
                shared_subscription_available: Some(false),
                subscription_identifier_available: Some(false),
                ..PropertyValues::default()
            }
            .into()
        } else {
            Default::default()
        };
        let connack = ConnAck {
            session_present,
            code: ReasonCode::Success,
            properties,
        };
        let _ = connack.write(version, &mut conn.link.out);

        let session = self.sessions.get_mut(&key).expect("session exists");
        session.persistent = persistent;
        session.conn = Some(id);
        let too_large = session.resume(&mut conn.link, &limits);
        self.counters.dropped_too_large += too_large as u64;
        tracing::debug!(shard = self.shard, client = %client_id, ?version, session_present, "client connected");
        self.queue_flush(id);
    }

    /// A client id that lands on this shard, for a client that sent none.
    fn assign_client_id(&mut self) -> ByteString {
        loop {
            self.assigned_ids += 1;
            let id = format!("ringmq-{}-{}", self.shard, self.assigned_ids);
            if home_shard(id.as_bytes(), self.shards) == self.shard {
                return id.into();
            }
        }
    }

    /// Refuses a CONNECT with a CONNACK error code, then closes.
    fn refuse(&mut self, id: ConnId, code: ReasonCode) {
        if let Some(conn) = self.conns.get_mut(&id) {
            let connack = ConnAck {
                code,
                ..ConnAck::default()
            };
            let _ = connack.write(conn.link.version, &mut conn.link.out);
        }
        tracing::info!(conn = id, ?code, "CONNECT refused");
        self.close(id);
    }

    /// Another connection took this client id: the old one is told (5.0) and closed, and its
    /// will is published, as for any close without DISCONNECT.
    fn take_over(&mut self, old: ConnId, now: Instant) {
        let Some(conn) = self.conns.get_mut(&old) else {
            return;
        };
        if conn.link.version.is_v5() {
            let _ = Disconnect::new(ReasonCode::SessionTakenOver)
                .write(conn.link.version, &mut conn.link.out);
        }
        conn.session = None;
        let will = conn.will.take();
        self.close(old);
        if let Some(will) = will {
            self.publish_will(will, now);
        }
    }

    fn publish_will(&mut self, will: Will, _now: Instant) {
        self.publish_message(Arc::new(Message::from_will(will)));
    }

    /// A protocol violation: 5.0 clients get DISCONNECT with the reason, then the socket closes.
    pub(super) fn fail(&mut self, id: ConnId, reason: ReasonCode, why: &str) {
        self.counters.protocol_errors += 1;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let client = conn
            .session
            .and_then(|k| self.sessions.get(&k))
            .map(|s| s.client_id.clone());
        tracing::info!(shard = self.shard, conn = id, client = ?client.as_deref(), ?reason, why, "closing connection");
        if conn.session.is_some() && conn.link.version.is_v5() {
            let _ = Disconnect::new(reason).write(conn.link.version, &mut conn.link.out);
        }
        self.close(id);
    }

    /// The decoder rejected this connection's input.
    pub fn decode_failed(&mut self, id: ConnId, error: &DecodeError) {
        let connected = self.conns.get(&id).is_some_and(|c| c.session.is_some());
        if !connected {
            if let DecodeError::UnsupportedProtocol { .. } = error {
                // Answered in the 3.1.1 format every client version can read (MQTT-3.1.2-2).
                self.refuse(id, ReasonCode::UnsupportedProtocolVersion);
                return;
            }
            self.counters.protocol_errors += 1;
            tracing::info!(shard = self.shard, conn = id, %error, "bad CONNECT; closing");
            self.close(id);
            return;
        }
        let why = error.to_string();
        self.fail(id, error.reason_code(), &why);
    }

    /// The socket is gone (EOF, error, or our own close). Publishes the will unless the client
    /// sent DISCONNECT, and detaches or ends the session.
    pub fn closed(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        self.counters.connections_closed += 1;
        if let Some(key) = conn.session {
            if let Some(will) = conn.will {
                self.publish_will(will, now);
            }
            let persistent = match self.sessions.get_mut(&key) {
                Some(session) => {
                    session.conn = None;
                    session.persistent
                }
                None => true,
            };
            if !persistent {
                self.destroy_session(key);
            }
        }
        self.pending_subscribes.retain(|_, p| p.conn != id);
    }

    /// Ends a session: its subscriptions leave the trie, and routes that lose their last local
    /// subscriber are withdrawn from every shard.
    pub(super) fn destroy_session(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.remove(&key) else {
            return;
        };
        self.by_client_id.remove(&session.client_id);
        for filter in session.subscriptions.keys() {
            self.remove_subscriber(filter, key);
        }
    }
}
