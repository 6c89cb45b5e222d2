//! Connection lifecycle: CONNECT and CONNACK, takeover, wills, protocol errors and closing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;

use super::packets::sys_allows;
use super::{Broker, ConnId, SessionKey};
use crate::core::filter::Filter;
use crate::core::home_shard;
use crate::core::message::Message;
use crate::core::session::{Link, PendingWill, Session};
use crate::core::store::Record;
use crate::protocol::topic::topic_levels;
use crate::protocol::{
    ConnAck, Connect, DecodeError, Disconnect, PropertyValues, ProtocolVersion, QoS, ReasonCode,
    Will,
};

/// Session expiry of a 3.x session with clean session 0: it never ends by itself.
pub(super) const NEVER_EXPIRES: u32 = u32::MAX;

impl Broker {
    /// A CONNECT on a connection without a session. The caller has already made sure this is
    /// the home shard of its session (see [`session_home`]).
    pub(super) fn connect(&mut self, id: ConnId, connect: Connect) {
        let now = self.now;
        let version = connect.version;
        let v5 = version.is_v5();
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.link = Link::new(version);
        let over_limit = conn.over_limit;
        if v5 && connect.properties.authentication_method.is_some() {
            // No enhanced authentication method is supported (MQTT-4.12.0-1).
            self.refuse(id, ReasonCode::BadAuthenticationMethod);
            return;
        }
        let auth = self.auth.current();
        let identity = self.peers.identity(id).cloned();
        let username = match &identity {
            // Proven by the certificate: the password file is not consulted.
            Some(identity) if identity.is_empty() => {
                tracing::info!(
                    shard = self.shard,
                    conn = id,
                    peer = ?self.peers.addr(id),
                    "CONNECT refused: no client certificate identity"
                );
                self.refuse(id, ReasonCode::NotAuthorized);
                return;
            }
            Some(identity) => Some(&**identity),
            None => {
                let username = connect.username.as_deref();
                if let Err(code) = auth.check(username, connect.password.as_deref()) {
                    tracing::info!(
                        shard = self.shard,
                        conn = id,
                        peer = ?self.peers.addr(id),
                        user = username,
                        "CONNECT refused: credentials"
                    );
                    self.refuse(id, code);
                    return;
                }
                username
            }
        };
        if over_limit || self.conns.attached() >= self.limits.max_connections {
            tracing::warn!(
                shard = self.shard,
                "connection limit reached; refusing a client"
            );
            self.refuse(id, ReasonCode::QuotaExceeded);
            return;
        }
        let mut assigned = None;
        let client_id = if self.features.use_username_as_clientid {
            // Sessions belong to users: a client cannot pick another user's session.
            let Some(user) = username else {
                tracing::info!(
                    shard = self.shard,
                    "CONNECT refused: no user name to use as client id"
                );
                self.refuse(id, ReasonCode::NotAuthorized);
                return;
            };
            if v5 && connect.client_id.is_empty() {
                assigned = Some(ByteString::from(user));
            }
            ByteString::from(user)
        } else if connect.client_id.is_empty() {
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
        let acl = auth.client_acl(username, &client_id);
        if let Some(will) = &connect.will {
            // A will is a PUBLISH made later: it must pass what a PUBLISH would, now.
            if let Err((code, why)) = self.check_will(will, acl.as_deref(), connect.bridge) {
                tracing::info!(shard = self.shard, client = %client_id, why, "CONNECT refused: will");
                self.refuse(id, code);
                return;
            }
        }

        let mut session_present = false;
        let records_before = self.journal_made;
        let existing = self.sessions.key_of(&client_id);
        if let Some(key) = existing {
            let session = self.sessions.get_mut(&key).expect("indexed sessions exist");
            // A new connection within the Will Delay Interval: no will (MQTT-3.1.3-9).
            if session.pending_will.take().is_some() && session.durable {
                let client_id = session.client_id.clone();
                self.journal(|| Record::WillDone { client_id });
            }
            let session = self.sessions.get_mut(&key).expect("indexed sessions exist");
            let old_conn = session.conn.take();
            // A session that ends with its connection ends with the one taken over.
            let ended = old_conn.is_some() && session.expiry_interval == 0;
            if let Some(old) = old_conn {
                self.take_over(old);
            }
            if connect.clean_start || ended {
                self.destroy_session(key, false);
            } else {
                session_present = true;
            }
        }
        let asked_expiry = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            NEVER_EXPIRES
        };
        let expiry_interval = self.limits.granted_expiry(asked_expiry);
        let key = match (session_present, existing) {
            (true, Some(key)) => key,
            _ => {
                if !self.quota.try_add_session(self.limits.max_sessions) {
                    tracing::warn!(shard = self.shard, client = %client_id, "session limit reached; refusing a client");
                    self.refuse(id, ReasonCode::QuotaExceeded);
                    return;
                }
                self.sessions
                    .create(Session::new(client_id.clone(), expiry_interval))
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
        self.conns.attach(id, key);
        let conn = self.conns.get_mut(&id).expect("connection exists");
        conn.will = connect.will.map(keep_will);
        conn.keep_alive_limit =
            (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500));
        conn.last_seen = now;
        conn.connect_expiry = expiry_interval;
        conn.problem_information = connect
            .properties
            .request_problem_information
            .unwrap_or(true);
        conn.bridge = connect.bridge;
        conn.link.receive_maximum = limits
            .max_inflight
            .min(connect.properties.receive_maximum.unwrap_or(u16::MAX));
        conn.link.max_packet_size = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
        conn.link.topic_alias_maximum = connect.properties.topic_alias_maximum.unwrap_or(0);
        conn.link.alias_budget = limits.max_alias_bytes;
        let keep_alive_limit = conn.keep_alive_limit;

        let properties = if v5 {
            let unless = |available: bool| (!available).then_some(false);
            PropertyValues {
                assigned_client_identifier: assigned,
                session_expiry_interval: (expiry_interval != asked_expiry)
                    .then_some(expiry_interval),
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
        if self.journal_made > records_before {
            // What the CONNECT changed (a durable session taken over or ended) is on disk
            // before CONNACK says so.
            conn.out_needs.set_records(self.journal_made);
        }
        conn.link
            .write_control("CONNACK", |_, out| connack.write(version, out));

        let session = self.sessions.get_mut(&key).expect("session exists");
        session.expiry_interval = expiry_interval;
        session.expires_at = None;
        session.conn = Some(id);
        let report = session.resume(&mut conn.link, &limits, now);
        self.account_report(report);
        self.journal_deliveries(key);
        if let Some(limit) = keep_alive_limit {
            self.arm_conn(id, now + limit);
        }
        tracing::debug!(shard = self.shard, conn = id, peer = ?self.peers.addr(id), client = %client_id, ?version, session_present, "client connected");
        self.journal_session(key, expiry_interval);
        self.pump(id, key);
        self.queue_flush(id);
    }

    /// Whether a will may be published as given: the checks of a PUBLISH, made at CONNECT.
    fn check_will(
        &self,
        will: &Will,
        acl: Option<&crate::core::acl::ClientAcl>,
        bridge: bool,
    ) -> Result<(), (ReasonCode, &'static str)> {
        if topic_levels(&will.topic) > self.limits.max_topic_levels {
            return Err((ReasonCode::TopicNameInvalid, "too many topic levels"));
        }
        if will.qos > self.features.max_qos {
            return Err((ReasonCode::QoSNotSupported, "QoS above the maximum"));
        }
        if will.retain && !self.features.retain_available {
            return Err((ReasonCode::RetainNotSupported, "retain is not available"));
        }
        if !sys_allows(&will.topic, bridge) {
            return Err((ReasonCode::NotAuthorized, "$SYS is the broker's"));
        }
        if acl.is_some_and(|acl| !acl.may_publish(&will.topic)) {
            return Err((ReasonCode::NotAuthorized, "topic not allowed"));
        }
        Ok(())
    }

    /// A client id that lands on this shard, for a client that sent none: random, so that
    /// no one can guess another client's id and take its session over.
    fn assign_client_id(&mut self) -> ByteString {
        loop {
            let id = format!("ringmq-{:016x}", rand::Rng::random::<u64>(&mut self.rng));
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
            conn.link
                .write_control("CONNACK", |version, out| connack.write(version, out));
        }
        tracing::info!(conn = id, peer = ?self.peers.addr(id), ?code, "CONNECT refused");
        self.close(id);
    }

    /// Another connection took this client id: the old one is told (5.0) and closed. Its will
    /// is published as for any close without DISCONNECT, unless it has a delay: the new
    /// connection for the client id arrived within it (MQTT-3.1.3-9).
    fn take_over(&mut self, old: ConnId) {
        self.conns.detach(old);
        let Some(conn) = self.conns.get_mut(&old) else {
            return;
        };
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
            conn.link.write_control("DISCONNECT", |version, out| {
                Disconnect::new(reason).write(version, out)
            });
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
        tracing::info!(shard = self.shard, conn = id, peer = ?self.peers.addr(id), client = ?client.as_deref(), ?reason, why, "closing connection");
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

    /// A connection handed to another shard before its CONNECT was handled: it leaves this
    /// shard without a trace (the other shard counts it from now on).
    pub(super) fn forget(&mut self, id: ConnId) {
        self.peers.remove(id);
        if self.conns.remove(&id).is_some() {
            self.counters.connections_opened -= 1;
        }
    }

    /// The socket is gone (EOF, error, or our own close).
    pub fn closed(&mut self, id: ConnId, now: Instant) {
        self.now = now;
        self.detach(id);
        self.peers.remove(id);
        if self.conns.remove(&id).is_none() {
            return;
        }
        self.counters.connections_closed += 1;
        self.pending_replies.retain(|_, p| p.conn != id);
    }

    /// The connection's session goes on without it, from the moment the broker closes it or
    /// its socket goes, whichever comes first: publishes the will (now, or after its delay)
    /// unless the client sent DISCONNECT, and ends the session or starts its expiry. The
    /// socket may still be writing its last words and reading what the client still sends.
    pub(super) fn detach(&mut self, id: ConnId) {
        let now = self.now;
        let Some(key) = self.conns.detach(id) else {
            return;
        };
        let conn = self.conns.get_mut(&id).expect("it had a session");
        let will = conn.will.take();
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if session.conn != Some(id) {
            return;
        }
        session.conn = None;
        session.retained_scheduled = false;
        tracing::debug!(shard = self.shard, client = %session.client_id, will = will.is_some(), "client disconnected");
        if std::mem::take(&mut session.holding) {
            // Offline, it holds no one: what comes for it queues up to its limits.
            self.eased = true;
        }
        let expiry = session.expiry_interval;
        if let Some(will) = will {
            let delay = will.properties.will_delay_interval.unwrap_or(0).min(expiry);
            if delay == 0 {
                self.publish_will(*will);
            } else {
                let due = now + Duration::from_secs(u64::from(delay));
                if let Some(session) = self.sessions.get_mut(&key) {
                    if session.durable {
                        let client_id = session.client_id.clone();
                        let message = super::journal::stored_will(&will);
                        self.journal(|| Record::Will {
                            client_id,
                            delay,
                            message,
                        });
                    }
                }
                if let Some(session) = self.sessions.get_mut(&key) {
                    session.pending_will = Some(Box::new(PendingWill { due, will }));
                }
                self.arm_session(key, due);
            }
        }
        // What a shared group gave this member and it has not acknowledged goes to another.
        self.redistribute_shared(key);
        match expiry {
            0 => self.destroy_session(key, true),
            NEVER_EXPIRES => {}
            secs => {
                let at = now + Duration::from_secs(u64::from(secs));
                if let Some(session) = self.sessions.get_mut(&key) {
                    session.expires_at = Some(at);
                }
                self.arm_session(key, at);
            }
        }
    }

    /// Ends a session: a will still delayed is published (MQTT-3.1.3-9), what it still held
    /// for the client is counted as dropped when `expired`, its subscriptions leave the trie,
    /// and routes that lose their last local subscriber are withdrawn from every shard.
    pub(super) fn destroy_session(&mut self, key: SessionKey, expired: bool) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        let will = session.pending_will.take();
        let subscriptions: Vec<(ByteString, _)> = session
            .subscriptions
            .iter()
            .map(|(f, s)| (f.clone(), *s))
            .collect();
        let filters: Vec<Filter> = subscriptions
            .iter()
            .map(|(f, _)| Filter::from(f.clone()))
            .collect();
        if expired {
            self.bury(subscriptions);
        }
        if let Some(pending) = will {
            self.publish_will(*pending.will);
        }
        for filter in filters {
            if self.remove_subscriber(&filter, key) {
                self.router.withdraw_quietly(filter);
            }
        }
        self.redistribute_shared(key);
        self.release_spilled(key);
        if let Some(session) = self.sessions.remove(&key) {
            if session.durable {
                self.journal_session_end(session.client_id.clone());
            }
            self.quota.remove_session();
            if expired {
                self.note_drops(session.undelivered(), |c| &mut c.dropped_session_expired);
            }
        }
    }
}

/// A will to keep until the connection ends: boxed, with its own copy of topic and payload, as
/// slices would keep the whole CONNECT read buffer alive for the connection's lifetime.
fn keep_will(will: Will) -> Box<Will> {
    Box::new(Will {
        topic: ByteString::from(&*will.topic),
        payload: bytes::Bytes::copy_from_slice(&will.payload),
        properties: will.properties.compacted(),
        ..will
    })
}

/// The client id whose home shard serves this CONNECT: the user name when sessions are bound
/// to users, else the client id (empty: any shard, which assigns one of its own).
pub(super) fn session_home<'a>(
    connect: &'a Connect,
    identity: Option<&'a ByteString>,
    use_username_as_clientid: bool,
) -> &'a str {
    if use_username_as_clientid {
        identity
            .or(connect.username.as_ref())
            .map_or("", |name| &**name)
    } else {
        &connect.client_id
    }
}
