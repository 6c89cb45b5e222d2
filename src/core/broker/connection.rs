//! Connection lifecycle: CONNECT and CONNACK, takeover, wills, protocol errors and closing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;

use super::{Broker, ConnId, PendingWill, SessionKey};
use crate::core::home_shard;
use crate::core::message::Message;
use crate::core::session::{Link, Session};
use crate::protocol::{
    ConnAck, Connect, DecodeError, Disconnect, PropertyValues, ProtocolVersion, QoS, ReasonCode,
    Will,
};

/// Session expiry of a 3.x session with clean session 0: it never ends by itself.
pub(super) const NEVER_EXPIRES: u32 = u32::MAX;

impl Broker {
    /// A CONNECT on a connection without a session. The caller has already made sure this is
    /// the client id's home shard (or the client id is empty).
    pub(super) fn connect(&mut self, id: ConnId, connect: Connect) {
        let now = self.now;
        let version = connect.version;
        let v5 = version.is_v5();
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.link = Link::new(version);
        }
        if v5 && connect.properties.authentication_method.is_some() {
            // No enhanced authentication method is supported (MQTT-4.12.0-1).
            self.refuse(id, ReasonCode::BadAuthenticationMethod);
            return;
        }
        let username = connect.username.as_deref();
        let auth = self.auth.current();
        if let Err(code) = auth.check(username, connect.password.as_deref()) {
            tracing::info!(
                shard = self.shard,
                user = username,
                "CONNECT refused: credentials"
            );
            self.refuse(id, code);
            return;
        }
        if self.connected >= self.limits.max_connections {
            tracing::warn!(
                shard = self.shard,
                "connection limit reached; refusing a client"
            );
            self.refuse(id, ReasonCode::QuotaExceeded);
            return;
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
            // Copied: a slice would keep the whole read buffer alive as long as the session.
            ByteString::from(&*connect.client_id)
        };
        // A will is a PUBLISH made later: the ACL must allow its topic now, or a client could
        // publish anywhere through it.
        let acl = auth.client_acl(username, &client_id);
        let will_denied = connect.will.as_ref().is_some_and(|will| {
            acl.as_ref()
                .is_some_and(|acl| !acl.may_publish(&will.topic))
        });
        if will_denied {
            tracing::info!(shard = self.shard, client = %client_id, "CONNECT refused: will topic not allowed");
            self.refuse(id, ReasonCode::NotAuthorized);
            return;
        }
        // A new connection for this client id cancels a will still waiting out its delay.
        self.pending_wills.remove(&client_id);

        let mut session_present = false;
        let existing = self.by_client_id.get(&client_id).copied();
        if let Some(key) = existing {
            let old_conn = self.sessions.get_mut(&key).and_then(|s| s.conn.take());
            if let Some(old) = old_conn {
                self.take_over(old);
            }
            if connect.clean_start {
                self.destroy_session(key);
            } else {
                session_present = true;
            }
        }
        let expiry_interval = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            NEVER_EXPIRES
        };
        let key = match (session_present, existing) {
            (true, Some(key)) => key,
            _ => {
                let key = self.next_session;
                self.next_session += 1;
                self.sessions.insert(
                    key,
                    Box::new(Session::new(client_id.clone(), expiry_interval)),
                );
                self.by_client_id.insert(client_id.clone(), key);
                key
            }
        };
        if let Some(session) = self.sessions.get_mut(&key) {
            session.acl = acl;
        }

        let max_keep_alive = self.features.max_keep_alive;
        let keep_alive = if max_keep_alive > 0
            && (connect.keep_alive == 0 || connect.keep_alive > max_keep_alive)
        {
            max_keep_alive
        } else {
            connect.keep_alive
        };
        let limits = self.limits.clone();
        let features = self.features.clone();
        let conn = self.conns.get_mut(&id).expect("connection exists");
        conn.session = Some(key);
        self.connected += 1;
        conn.will = connect.will.map(keep_will);
        conn.keep_alive_limit =
            (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
        conn.last_seen = now;
        conn.connect_expiry = expiry_interval;
        conn.problem_information = connect
            .properties
            .request_problem_information
            .unwrap_or(true);
        conn.link.receive_maximum = limits
            .max_inflight
            .min(connect.properties.receive_maximum.unwrap_or(u16::MAX));
        conn.link.max_packet_size = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
        conn.link.topic_alias_maximum = connect.properties.topic_alias_maximum.unwrap_or(0);

        let properties = if v5 {
            let unless = |available: bool| (!available).then_some(false);
            PropertyValues {
                assigned_client_identifier: assigned,
                maximum_packet_size: Some(limits.max_packet_size),
                topic_alias_maximum: (features.topic_alias_maximum > 0)
                    .then_some(features.topic_alias_maximum),
                receive_maximum: Some(features.receive_maximum),
                maximum_qos: (features.max_qos < QoS::ExactlyOnce)
                    .then_some(features.max_qos as u8),
                retain_available: unless(features.retain_available),
                wildcard_subscription_available: unless(features.wildcard_subscriptions),
                subscription_identifier_available: unless(features.subscription_identifiers),
                shared_subscription_available: unless(features.shared_subscriptions),
                server_keep_alive: (keep_alive != connect.keep_alive).then_some(keep_alive),
                response_information: (connect.properties.request_response_information
                    == Some(true))
                .then(|| format!("ringmq/response/{client_id}").into()),
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
        session.expiry_interval = expiry_interval;
        session.expires_at = None;
        session.conn = Some(id);
        let report = session.resume(&mut conn.link, &limits, now);
        self.account_report(report);
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

    /// Another connection took this client id: the old one is told (5.0) and closed. Its will
    /// is published as for any close without DISCONNECT, unless it has a delay: the new
    /// connection for the client id arrived within it (MQTT-3.1.3-9).
    fn take_over(&mut self, old: ConnId) {
        let Some(conn) = self.conns.get_mut(&old) else {
            return;
        };
        if conn.session.take().is_some() {
            self.connected -= 1;
        }
        let will = conn.will.take();
        self.disconnect(old, ReasonCode::SessionTakenOver);
        if let Some(will) = will.filter(|w| w.properties.will_delay_interval.unwrap_or(0) == 0) {
            self.publish_will(*will);
        }
    }

    pub(super) fn publish_will(&mut self, will: Will) {
        let message = Arc::new(Message::from_will(will, self.now));
        self.publish_message(message, None, 0);
    }

    /// Closes a connection, telling a connected 5.0 client why first.
    pub(super) fn disconnect(&mut self, id: ConnId, reason: ReasonCode) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if !conn.closing
            && conn.link.version.is_v5()
            && (conn.session.is_some() || reason == ReasonCode::SessionTakenOver)
        {
            let _ = Disconnect::new(reason).write(conn.link.version, &mut conn.link.out);
        }
        self.close(id);
    }

    /// A protocol violation: 5.0 clients get DISCONNECT with the reason, then the socket closes.
    pub(super) fn fail(&mut self, id: ConnId, reason: ReasonCode, why: &str) {
        self.counters.protocol_errors += 1;
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let client = conn
            .session
            .and_then(|k| self.sessions.get(&k))
            .map(|s| s.client_id.clone());
        tracing::info!(shard = self.shard, conn = id, client = ?client.as_deref(), ?reason, why, "closing connection");
        self.disconnect(id, reason);
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

    /// The socket is gone (EOF, error, or our own close). Publishes the will (now, or after
    /// its delay) unless the client sent DISCONNECT, and detaches or ends the session.
    pub fn closed(&mut self, id: ConnId, now: Instant) {
        self.now = now;
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        self.counters.connections_closed += 1;
        self.pending_replies.retain(|_, p| p.conn != id);
        let Some(key) = conn.session else {
            return;
        };
        self.connected -= 1;
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        session.conn = None;
        let expiry = session.expiry_interval;
        let client_id = session.client_id.clone();
        if let Some(will) = conn.will {
            let delay = will.properties.will_delay_interval.unwrap_or(0).min(expiry);
            if delay == 0 {
                self.publish_will(*will);
            } else {
                let due = now + Duration::from_secs(u64::from(delay));
                self.pending_wills
                    .insert(client_id, PendingWill { due, will });
            }
        }
        // What a shared group gave this member and it has not acknowledged goes to another.
        self.redistribute_shared(key);
        match expiry {
            0 => self.destroy_session(key),
            NEVER_EXPIRES => {}
            secs => {
                if let Some(session) = self.sessions.get_mut(&key) {
                    session.expires_at = Some(now + Duration::from_secs(u64::from(secs)));
                }
            }
        }
    }

    /// Ends a session: its subscriptions leave the trie, and routes that lose their last local
    /// subscriber are withdrawn from every shard.
    pub(super) fn destroy_session(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.get(&key) else {
            return;
        };
        let filters: Vec<ByteString> = session.subscriptions.keys().cloned().collect();
        for filter in &filters {
            self.remove_subscriber(filter, key, 0);
        }
        self.redistribute_shared(key);
        if let Some(session) = self.sessions.remove(&key) {
            self.by_client_id.remove(&session.client_id);
        }
    }
}

/// A will to keep until the connection ends: boxed, with its own copy of topic and payload, as
/// slices would keep the whole CONNECT read buffer alive for the connection's lifetime.
fn keep_will(will: Will) -> Box<Will> {
    Box::new(Will {
        topic: ByteString::from(&*will.topic),
        payload: bytes::Bytes::copy_from_slice(&will.payload),
        ..will
    })
}
