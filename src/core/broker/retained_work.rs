//! Retained messages for new subscriptions, sent a step at a time.
//!
//! A subscription to `#` may match a million retained messages. Sending them in one go would
//! hold the shard for as long as that takes, and queue them all. Instead the session keeps a
//! cursor into the retained store per new subscription; the shell calls
//! [`Broker::retained_step`] while [`Broker::has_retained_work`], serving its other clients
//! between steps, and a step only runs while the subscriber's link has room. A message
//! retained after the subscription was made is not sent from the store: it reached the
//! subscriber as a live publish.

use super::{effective_qos, Broker, SessionKey};
use crate::core::message::{Delivery, SharedMessage};
use crate::core::session::DeliverOutcome;

/// Topics one step looks at, matching or not: bounds the time a step takes.
const STEP_TOPICS: usize = 2048;
/// Messages one step sends: about what a link takes before it is full.
const STEP_MESSAGES: usize = 256;

impl Broker {
    /// Whether some subscriber is waiting for retained messages and has room for them.
    pub fn has_retained_work(&self) -> bool {
        !self.retained_ready.is_empty()
    }

    /// Sends the next retained messages to the next waiting subscriber. Returns whether work
    /// is left.
    pub fn retained_step(&mut self, now: std::time::Instant) -> bool {
        self.now = now;
        if let Some(key) = self.retained_ready.pop_front() {
            self.retained_step_for(key);
        }
        self.has_retained_work()
    }

    fn retained_step_for(&mut self, key: SessionKey) {
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        session.retained_scheduled = false;
        let Some(conn_id) = session.conn else {
            // Resumed when the client connects again.
            return;
        };
        let Some(conn) = self.conns.get(&conn_id).filter(|c| !c.closing) else {
            return;
        };
        if !session.ready_for_more(&conn.link, &self.limits) {
            // Pumped again when its output drains.
            return;
        }
        let Some(backlog) = session.retained.first_mut() else {
            return;
        };
        let subscription = backlog.subscription;
        let mut found: Vec<SharedMessage> = Vec::new();
        let next = self.retained.scan(
            &backlog.filter,
            backlog.cursor.as_deref(),
            STEP_TOPICS,
            |message| {
                if message.published_at <= subscription.since {
                    found.push(message.clone());
                }
                found.len() < STEP_MESSAGES
            },
        );
        match next {
            Some(cursor) => backlog.cursor = Some(cursor),
            None => {
                session.retained.remove(0);
            }
        }
        for message in found {
            if !self
                .sessions
                .get(&key)
                .is_some_and(|s| s.may_receive(message.topic()))
            {
                self.note_drop(|c| &mut c.dropped_not_authorized);
                continue;
            }
            let qos = effective_qos(message.qos, subscription.options.qos);
            let mut delivery = Delivery::new(message, qos, true);
            delivery.subscription_ids.extend(subscription.id);
            self.store_delivery(key, &mut delivery);
            let (Some(conn), Some(session)) =
                (self.conns.get_mut(&conn_id), self.sessions.get_mut(&key))
            else {
                return;
            };
            let payload = delivery.message.payload().len();
            let outcome = session.deliver(delivery, Some(&mut conn.link), &self.limits, self.now);
            if outcome == DeliverOutcome::Sent {
                // Retained: sent now, published long ago; no delivery time.
                self.counters.sent.note(qos, payload);
            }
            self.account(outcome);
            self.journal_deliveries(key);
        }
        self.queue_flush(conn_id);
        // More if there is room: otherwise the pump after the next write brings it back.
        self.pump(conn_id, key);
    }
}
