//! SUBACK and UNSUBACK wait for the route changes they depend on.
//!
//! A shard that gains its first subscriber on a filter tells every other shard (RouteAdd) and
//! the SUBACK goes out only once all have acknowledged, so that a PUBLISH the client sends
//! after the SUBACK finds the route wherever it lands. A SUBACK for a filter whose route
//! another SUBSCRIBE is still announcing waits for that announcement too, and the replies to
//! one connection leave in the order of its requests.

use bytestring::ByteString;

use super::{Broker, ConnId, PendingReply};
use crate::core::session::RetainedBacklog;
use crate::core::shard_msg::ShardMsg;

/// Route changes sent to the other shards and not yet acknowledged by all of them.
#[derive(Debug)]
pub(super) struct RouteSync {
    missing: usize,
    /// Filters whose first subscriber this announced (for a RouteAdd).
    added: Vec<ByteString>,
}

impl Broker {
    /// Tells every other shard that this one now has subscribers on `filters`; returns the
    /// sync their acknowledgements carry.
    pub(super) fn announce_routes(&mut self, filters: Vec<ByteString>) -> u64 {
        let sync = self.start_sync(filters.len());
        for filter in &filters {
            for to in (0..self.shards).filter(|&s| s != self.shard) {
                self.outbox[to].push_back(ShardMsg::RouteAdd {
                    filter: filter.clone(),
                    shard: self.shard,
                    sync,
                });
            }
            self.routes_in_flight.insert(filter.clone(), sync);
        }
        if let Some(route_sync) = self.route_syncs.get_mut(&sync) {
            route_sync.added = filters;
        }
        sync
    }

    /// Tells every other shard that this one has no subscribers left on `filters`; returns
    /// the sync their acknowledgements carry.
    pub(super) fn withdraw_routes(&mut self, filters: Vec<ByteString>) -> u64 {
        let sync = self.start_sync(filters.len());
        for filter in filters {
            self.broadcast_route_remove(filter, sync);
        }
        sync
    }

    /// RouteRemove to every other shard; `sync` 0 asks for no acknowledgement.
    pub(super) fn broadcast_route_remove(&mut self, filter: ByteString, sync: u64) {
        self.routes_in_flight.remove(&filter);
        for to in (0..self.shards).filter(|&s| s != self.shard) {
            self.outbox[to].push_back(ShardMsg::RouteRemove {
                filter: filter.clone(),
                shard: self.shard,
                sync,
            });
        }
    }

    pub(super) fn start_sync(&mut self, filters: usize) -> u64 {
        let sync = self.next_sync;
        self.next_sync += 1;
        let missing = filters * (self.shards - 1);
        if missing > 0 {
            self.route_syncs.insert(
                sync,
                RouteSync {
                    missing,
                    added: Vec::new(),
                },
            );
        }
        sync
    }

    /// The sync of a RouteAdd for `filter` still on its way to some shard.
    pub(super) fn route_in_flight(&self, filter: &str) -> Option<u64> {
        self.routes_in_flight
            .get(filter)
            .copied()
            .filter(|sync| self.route_syncs.contains_key(sync))
    }

    /// Another shard applied a route change of ours.
    pub(super) fn route_acknowledged(&mut self, sync: u64) {
        let Some(route_sync) = self.route_syncs.get_mut(&sync) else {
            return;
        };
        route_sync.missing -= 1;
        if route_sync.missing > 0 {
            return;
        }
        let done = self.route_syncs.remove(&sync).expect("present");
        self.lay_to_rest(sync);
        for filter in done.added {
            if self.routes_in_flight.get(&filter) == Some(&sync) {
                self.routes_in_flight.remove(&filter);
            }
        }
        let waiting: Vec<ConnId> = self.pending_replies.values().map(|p| p.conn).collect();
        for conn in waiting {
            self.release_replies(conn);
        }
    }

    /// Queues a reply behind what it waits for and behind the connection's earlier replies.
    pub(super) fn queue_reply(&mut self, pending: PendingReply) {
        let conn = pending.conn;
        let order = self.next_sync;
        self.next_sync += 1;
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
                .map(|(order, p)| {
                    (
                        *order,
                        p.waits.iter().any(|s| self.route_syncs.contains_key(s)),
                    )
                });
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
