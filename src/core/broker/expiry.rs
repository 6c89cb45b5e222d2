//! What the clock ends: keep alives, connections that never sent CONNECT, offline sessions
//! past their expiry, and wills past their delay.

use std::time::Instant;

use super::{Broker, ConnId, SessionKey, CONNECT_TIMEOUT};
use crate::protocol::ReasonCode;

impl Broker {
    /// Applies every deadline up to `now`.
    pub fn tick(&mut self, now: Instant) {
        self.now = now;
        self.expire_connections(now);
        self.publish_due_wills(now);
        self.expire_sessions(now);
    }

    fn expire_connections(&mut self, now: Instant) {
        let expired: Vec<(ConnId, bool)> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.closing)
            .filter_map(|(&id, c)| {
                let idle = now.saturating_duration_since(c.last_seen);
                match (c.session, c.keep_alive_limit) {
                    (None, _) if now.saturating_duration_since(c.opened) > CONNECT_TIMEOUT => {
                        Some((id, false))
                    }
                    (Some(_), Some(limit)) if idle > limit => Some((id, true)),
                    _ => None,
                }
            })
            .collect();
        for (id, connected) in expired {
            if connected {
                self.fail(id, ReasonCode::KeepAliveTimeout, "keep alive timeout");
            } else {
                tracing::debug!(conn = id, "no CONNECT in time; closing");
                self.close(id);
            }
        }
    }

    fn publish_due_wills(&mut self, now: Instant) {
        if self.pending_wills.is_empty() {
            return;
        }
        let due: Vec<_> = self
            .pending_wills
            .iter()
            .filter(|(_, w)| w.due <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for client_id in due {
            if let Some(pending) = self.pending_wills.remove(&client_id) {
                self.publish_will(*pending.will);
            }
        }
    }

    fn expire_sessions(&mut self, now: Instant) {
        let expired: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.conn.is_none() && s.expires_at.is_some_and(|at| at <= now))
            .map(|(&key, _)| key)
            .collect();
        for key in expired {
            // A will still delayed is published when its session ends (MQTT-3.1.3-9).
            let client_id = self.sessions[&key].client_id.clone();
            if let Some(pending) = self.pending_wills.remove(&client_id) {
                self.publish_will(*pending.will);
            }
            tracing::debug!(shard = self.shard, client = %client_id, "session expired");
            self.destroy_session(key);
        }
    }
}
