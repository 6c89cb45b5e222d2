//! What the clock ends: connections that never sent CONNECT, keep alives, output that makes no
//! progress, offline sessions past their expiry, and wills past their delay.
//!
//! Each deadline is an entry in the broker's timers, looked at when it falls due; nothing is
//! scanned per tick. A connection or session has one live entry at a time, for its earliest
//! deadline: deadlines that move later (keep alive on every packet) are re-armed when the
//! entry falls due, and one that comes earlier adds an entry that supersedes the old one.

use crate::core::store::Record;
use std::time::Instant;

use super::{Broker, ConnId, SessionKey};
use crate::protocol::ReasonCode;

/// Timer entries below which stale ones are left to fall due.
const STALE_TIMERS_FLOOR: usize = 4096;
/// What a timer entry asks the broker to look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// The connection's CONNECT deadline, keep alive or stalled output may have come.
    Conn(ConnId),
    /// The session's will may be due, or the (offline) session may have expired.
    Session(SessionKey),
}

impl Broker {
    /// Applies every deadline up to `now`.
    pub fn tick(&mut self, now: Instant) {
        self.now = now;
        self.drop_stale_timers();
        while let Some((at, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Conn(id) => self.conn_deadline(id, at, now),
                Timer::Session(key) => self.session_deadline(key, at, now),
            }
        }
    }

    /// A connection storm leaves entries of closed connections behind (a keep alive falls due
    /// 1.5 x its interval after the last packet): once they outnumber the live ones, they go.
    fn drop_stale_timers(&mut self) {
        let live = self.conns.len() + self.sessions.len();
        if self.timers.len() <= STALE_TIMERS_FLOOR.max(2 * live) {
            return;
        }
        let (conns, sessions) = (&self.conns, &self.sessions);
        self.timers.retain(|timer| match *timer {
            Timer::Conn(id) => conns.contains_key(&id),
            Timer::Session(key) => sessions.contains_key(&key),
        });
    }

    /// Makes sure the connection's timer looks at it by `at`.
    pub(super) fn arm_conn(&mut self, id: ConnId, at: Instant) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.timer_armed.is_some_and(|armed| armed <= at) {
            return;
        }
        conn.timer_armed = Some(at);
        self.timers.schedule(at, Timer::Conn(id));
    }

    fn conn_deadline(&mut self, id: ConnId, at: Instant, now: Instant) {
        let connect_timeout = self.limits.connect_timeout;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.timer_armed != Some(at) {
            // An entry superseded by an earlier one.
            return;
        }
        conn.timer_armed = None;
        if conn.closing {
            return;
        }
        let mut next: Option<Instant> = None;
        let mut soonest = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
        match (conn.session, conn.keep_alive_limit) {
            // Before CONNECT, `last_seen` is when the socket was opened.
            (None, _) if conn.last_seen + connect_timeout <= now => {
                tracing::debug!(shard = self.shard, conn = id, "no CONNECT in time; closing");
                return self.close(id);
            }
            (None, _) => soonest(conn.last_seen + connect_timeout),
            (Some(_), Some(limit)) => {
                if conn.outbox_paused || conn.held_by.is_some() {
                    // Not read because of us, not silent: its time does not run meanwhile.
                    conn.last_seen = now;
                }
                if conn.last_seen + limit <= now {
                    return self.fail(id, ReasonCode::KeepAliveTimeout, "keep alive timeout");
                }
                soonest(conn.last_seen + limit);
            }
            (Some(_), None) => {}
        }
        if let Some((target, deadline)) = conn.write.mark {
            if deadline <= now && conn.write.written < target {
                return self.abort_stalled(id, target);
            }
            soonest(deadline);
        }
        if let Some(next) = next {
            self.arm_conn(id, next);
        }
    }

    fn abort_stalled(&mut self, id: ConnId, target: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let behind = target.saturating_sub(conn.write.written);
        tracing::info!(
            shard = self.shard,
            conn = id,
            unwritten = behind,
            "closing a connection whose output made no progress"
        );
        self.counters.write_timeouts += 1;
        conn.aborted = true;
        // While a drain task owns the socket, the connection is flagged for a flush it never
        // takes: flag it again, so that the shell sees the abort now.
        conn.queued_for_flush = false;
        self.close(id);
    }

    /// Makes sure the session's timer looks at it by `at`.
    pub(super) fn arm_session(&mut self, key: SessionKey, at: Instant) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if session.timer_armed.is_some_and(|armed| armed <= at) {
            return;
        }
        session.timer_armed = Some(at);
        self.timers.schedule(at, Timer::Session(key));
    }

    fn session_deadline(&mut self, key: SessionKey, at: Instant, now: Instant) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if session.timer_armed != Some(at) {
            // An entry superseded by an earlier one.
            return;
        }
        session.timer_armed = None;
        if session.conn.is_some() {
            return;
        }
        if session.pending_will.as_ref().is_some_and(|w| w.due <= now) {
            let pending = session.pending_will.take().expect("checked");
            if session.durable {
                let client_id = session.client_id.clone();
                self.journal(|| Record::WillDone { client_id });
            }
            self.publish_will(*pending.will);
        }
        let Some(session) = self.sessions.get(&key) else {
            return;
        };
        if session.expires_at.is_some_and(|at| at <= now) {
            let client_id = session.client_id.clone();
            tracing::debug!(shard = self.shard, client = %client_id, "session expired");
            self.destroy_session(key, true);
            return;
        }
        let next = [
            session.pending_will.as_ref().map(|w| w.due),
            session.expires_at,
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(next) = next {
            self.arm_session(key, next);
        }
    }
}
