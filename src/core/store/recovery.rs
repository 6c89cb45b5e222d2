//! Recovery: the state a sequence of records leaves, as the broker must rebuild it at start.

use std::collections::{BTreeMap, BTreeSet};

use bytestring::ByteString;

use super::record::{Record, StoredMessage};
use crate::protocol::SubscriptionOptions;

/// One session as the log left it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveredSession {
    pub expiry: u32,
    /// Filter -> options and subscription identifier (0: none).
    pub subscriptions: BTreeMap<ByteString, (SubscriptionOptions, u32)>,
    /// Inbound QoS 2 packet ids awaiting PUBREL: a resent PUBLISH with one is not routed.
    pub awaiting_pubrel: BTreeSet<u16>,
    /// A will waiting out its delay (seconds) while the client is away.
    pub will: Option<(u32, StoredMessage)>,
}

/// What the records add up to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub sessions: BTreeMap<ByteString, RecoveredSession>,
    pub retained: BTreeMap<ByteString, StoredMessage>,
    /// The `seq` of the last update applied per retained topic, cleared ones included.
    retained_seq: BTreeMap<ByteString, u64>,
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
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::QoS;

    fn message(topic: &str) -> StoredMessage {
        StoredMessage {
            topic: topic.into(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
        }
    }

    #[test]
    fn a_persistent_session_comes_back_with_its_subscriptions_and_qos2_state() {
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
            Record::Subscribe {
                client_id: "c".into(),
                filter: "u".into(),
                options: Default::default(),
                id: 0,
            },
            Record::Unsubscribe {
                client_id: "c".into(),
                filter: "u".into(),
            },
            Record::Qos2Received {
                client_id: "c".into(),
                pkid: 5,
            },
            Record::Qos2Received {
                client_id: "c".into(),
                pkid: 6,
            },
            Record::Qos2Released {
                client_id: "c".into(),
                pkid: 6,
            },
        ]);
        let s = &r.sessions["c"];
        assert_eq!(
            s.subscriptions.keys().map(|k| &**k).collect::<Vec<_>>(),
            ["t/#"]
        );
        assert_eq!(s.awaiting_pubrel, BTreeSet::from([5]));
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
            Record::Qos2Received {
                client_id: "c".into(),
                pkid: 1,
            },
        ]);
        assert!(r.sessions.is_empty());
        assert_eq!(r.retained.keys().map(|k| &**k).collect::<Vec<_>>(), ["b"]);
        assert_eq!(r.dangling, 1);
    }
}
