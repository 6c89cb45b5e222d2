//! SUBACK and UNSUBACK wait for the route changes they depend on.
//!
//! A shard that gains its first subscriber on a filter tells every other shard (RouteAdd) and
//! the SUBACK goes out only once all have acknowledged, so that a PUBLISH the client sends
//! after the SUBACK finds the route wherever it lands. A SUBACK for a filter whose route
//! another SUBSCRIBE is still announcing waits for that announcement too, and the replies to
//! one connection leave in the order of its requests.

use super::{Broker, ConnId, PendingReply};
use crate::core::session::RetainedBacklog;

impl Broker {
    /// Another shard applied a route change (or answered a barrier) of ours.
    pub(super) fn route_acknowledged(&mut self, sync: u64) {
        if !self.router.acknowledged(sync) {
            return;
        }
        self.lay_to_rest(sync);
        let waiting: Vec<ConnId> = self.pending_replies.values().map(|p| p.conn).collect();
        for conn in waiting {
            self.release_replies(conn);
        }
    }

    /// Queues a reply behind what it waits for and behind the connection's earlier replies.
    pub(super) fn queue_reply(&mut self, pending: PendingReply) {
        let conn = pending.conn;
        let order = self.next_reply;
        self.next_reply += 1;
        self.pending_replies.insert(order, pending);
        self.release_replies(conn);
    }

    /// Sends, in order, the replies to `conn` that no longer wait for anything.
    fn release_replies(&mut self, conn: ConnId) {
        loop {
            let oldest = self
                .pending_replies
                .iter()
                .filter(|(_, p)| p.conn == conn)
                .min_by_key(|(order, _)| **order)
                .map(|(order, p)| (*order, p.waits.iter().any(|&s| self.router.sync_pending(s))));
            match oldest {
                Some((order, false)) => {
                    let pending = self.pending_replies.remove(&order).expect("present");
                    self.finish_reply(pending);
                }
                _ => return,
            }
        }
    }

    /// Writes the SUBACK (or UNSUBACK); the retained messages for new subscriptions follow,
    /// a step at a time (see `retained_work`).
    fn finish_reply(&mut self, pending: PendingReply) {
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
        if pending.retained_for.is_empty() {
            return;
        }
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        for (filter, subscription) in pending.retained_for {
            // A subscription made again replaces the walk still going for it.
            session.retained.retain(|b| b.filter != filter);
            session.retained.push(RetainedBacklog {
                filter,
                subscription,
                cursor: None,
            });
        }
        self.pump(id, key);
    }
}
