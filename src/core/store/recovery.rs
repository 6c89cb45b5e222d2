//! Recovery: the state a sequence of records leaves, as the broker must rebuild it at start.

use std::collections::{BTreeMap, BTreeSet};

use bytestring::ByteString;

use super::record::{DeliveryState, Record, StoredMessage};
use crate::protocol::{QoS, SubscriptionOptions};

/// One session as the log left it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveredSession {
    pub expiry: u32,
    /// Filter -> options and subscription identifier (0: none).
    pub subscriptions: BTreeMap<ByteString, (SubscriptionOptions, u32)>,
    /// Messages not yet acknowledged, in the order they were given to the session.
    pub pending: Vec<Pending>,
    /// Inbound QoS 2 packet ids awaiting PUBREL: a resent PUBLISH with one is not routed.
    pub awaiting_pubrel: BTreeSet<u16>,
    /// A will waiting out its delay (seconds) while the client is away.
    pub will: Option<(u32, StoredMessage)>,
}

/// A message a session still owes its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: u64,
    pub qos: QoS,
    /// The packet id it was sent with: resend it with DUP. None: still queued.
    pub packet_id: Option<u16>,
}

/// What the records add up to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub sessions: BTreeMap<ByteString, RecoveredSession>,
    pub retained: BTreeMap<ByteString, StoredMessage>,
    /// The `seq` of the last update applied per retained topic, cleared ones included.
    retained_seq: BTreeMap<ByteString, u64>,
    /// Accepted messages some session still owes.
    pub messages: BTreeMap<u64, StoredMessage>,
    /// Records that referred to something the log does not have (counted, then ignored).
    pub dangling: u64,
}

impl Recovered {
    /// Applies records in log order.
    pub fn apply(&mut self, records: impl IntoIterator<Item = Record>) {
        for record in records {
            self.apply_one(record);
        }
    }

    fn apply_one(&mut self, record: Record) {
        match record {
            Record::SessionOpen { client_id, expiry } => {
                self.sessions.entry(client_id).or_default().expiry = expiry;
            }
            Record::SessionEnd { client_id } => {
                self.sessions.remove(&client_id);
            }
            Record::Subscribe {
                client_id,
                filter,
                options,
                id,
            } => match self.sessions.get_mut(&client_id) {
                Some(s) => {
                    s.subscriptions.insert(filter, (options, id));
                }
                None => self.dangling += 1,
            },
            Record::Unsubscribe { client_id, filter } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.subscriptions.remove(&filter);
                }
            }
            Record::RetainSet { seq, message } => {
                if self.retain_is_newer(&message.topic, seq) {
                    self.retained.insert(message.topic.clone(), message);
                }
            }
            Record::RetainClear { seq, topic } => {
                if self.retain_is_newer(&topic, seq) {
                    self.retained.remove(&topic);
                }
            }
            Record::Accepted { id, message } => {
                self.messages.insert(id, message);
            }
            Record::Delivery {
                client_id,
                id,
                state,
            } => self.delivery(client_id, id, state),
            Record::Qos2Received { client_id, pkid } => match self.sessions.get_mut(&client_id) {
                Some(s) => {
                    s.awaiting_pubrel.insert(pkid);
                }
                None => self.dangling += 1,
            },
            Record::Qos2Released { client_id, pkid } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.awaiting_pubrel.remove(&pkid);
                }
            }
            Record::Will {
                client_id,
                delay,
                message,
            } => match self.sessions.get_mut(&client_id) {
                Some(s) => s.will = Some((delay, message)),
                None => self.dangling += 1,
            },
            Record::WillDone { client_id } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.will = None;
                }
            }
        }
    }

    /// Whether an update of `topic` numbered `seq` is the latest so far (ties: the later one).
    fn retain_is_newer(&mut self, topic: &ByteString, seq: u64) -> bool {
        let last = self.retained_seq.entry(topic.clone()).or_insert(0);
        if seq < *last {
            return false;
        }
        *last = seq;
        true
    }

    fn delivery(&mut self, client_id: ByteString, id: u64, state: DeliveryState) {
        let (Some(session), true) = (
            self.sessions.get_mut(&client_id),
            self.messages.contains_key(&id),
        ) else {
            self.dangling += 1;
            return;
        };
        let at = session.pending.iter().position(|p| p.id == id);
        match (state, at) {
            (DeliveryState::Queued(qos), None) => session.pending.push(Pending {
                id,
                qos,
                packet_id: None,
            }),
            (DeliveryState::InFlight(pkid), Some(at)) => session.pending[at].packet_id = Some(pkid),
            (DeliveryState::Acked, Some(at)) => {
                session.pending.remove(at);
            }
            _ => self.dangling += 1,
        }
    }

    /// Drops the messages no session owes any more (after the whole log is applied).
    pub fn collect_garbage(&mut self) {
        let owed: BTreeSet<u64> = self
            .sessions
            .values()
            .flat_map(|s| s.pending.iter().map(|p| p.id))
            .collect();
        self.messages.retain(|id, _| owed.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn message(topic: &str) -> StoredMessage {
        StoredMessage {
            topic: topic.into(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        }
    }

    fn delivery(id: u64, state: DeliveryState) -> Record {
        Record::Delivery {
            client_id: "c".into(),
            id,
            state,
        }
    }

    #[test]
    fn a_persistent_session_comes_back_with_what_it_was_owed_in_order() {
        let mut r = Recovered::default();
        r.apply([
            Record::SessionOpen {
                client_id: "c".into(),
                expiry: u32::MAX,
            },
            Record::Subscribe {
                client_id: "c".into(),
                filter: "t/#".into(),
                options: Default::default(),
                id: 0,
            },
            Record::Accepted {
                id: 1,
                message: message("t/1"),
            },
            Record::Accepted {
                id: 2,
                message: message("t/2"),
            },
            Record::Accepted {
                id: 3,
                message: message("t/3"),
            },
            delivery(1, DeliveryState::Queued(QoS::AtLeastOnce)),
            delivery(2, DeliveryState::Queued(QoS::AtLeastOnce)),
            delivery(3, DeliveryState::Queued(QoS::AtLeastOnce)),
            delivery(1, DeliveryState::InFlight(10)),
            delivery(2, DeliveryState::InFlight(11)),
            delivery(1, DeliveryState::Acked),
            Record::Qos2Received {
                client_id: "c".into(),
                pkid: 5,
            },
        ]);
        r.collect_garbage();
        let s = &r.sessions["c"];
        assert_eq!(s.subscriptions.len(), 1);
        let pending: Vec<(u64, Option<u16>)> =
            s.pending.iter().map(|p| (p.id, p.packet_id)).collect();
        assert_eq!(
            pending,
            [(2, Some(11)), (3, None)],
            "in flight resent with its id, then the queue"
        );
        assert_eq!(s.awaiting_pubrel, BTreeSet::from([5]));
        assert_eq!(r.messages.keys().copied().collect::<Vec<_>>(), [2, 3]);
        assert_eq!(r.dangling, 0);
    }

    #[test]
    fn an_ended_session_leaves_nothing_and_retained_messages_follow_their_last_record() {
        let mut r = Recovered::default();
        r.apply([
            Record::SessionOpen {
                client_id: "c".into(),
                expiry: 0,
            },
            Record::Accepted {
                id: 1,
                message: message("t"),
            },
            delivery(1, DeliveryState::Queued(QoS::AtLeastOnce)),
            Record::SessionEnd {
                client_id: "c".into(),
            },
            Record::RetainSet {
                seq: 1,
                message: message("a"),
            },
            Record::RetainSet {
                seq: 2,
                message: message("b"),
            },
            Record::RetainClear {
                seq: 3,
                topic: "a".into(),
            },
            // Read later, from another shard's log, but made before the clear.
            Record::RetainSet {
                seq: 1,
                message: message("a"),
            },
            // About a session that is gone: counted, not applied.
            delivery(1, DeliveryState::Acked),
        ]);
        r.collect_garbage();
        assert!(r.sessions.is_empty());
        assert!(r.messages.is_empty());
        assert_eq!(r.retained.keys().map(|k| &**k).collect::<Vec<_>>(), ["b"]);
        assert_eq!(r.dangling, 1);
    }
}
