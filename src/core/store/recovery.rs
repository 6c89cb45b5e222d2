//! Recovery: the state a sequence of records leaves, as the broker must rebuild it at start.

use std::collections::{BTreeMap, BTreeSet};

use bytestring::ByteString;

use super::record::{Owing, Record, StoredMessage};
use crate::protocol::SubscriptionOptions;

/// One session as the log left it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveredSession {
    pub expiry: u32,
    /// Filter -> options and subscription identifier (0: none).
    pub subscriptions: BTreeMap<ByteString, (SubscriptionOptions, u32)>,
    /// Inbound QoS 2 packet ids awaiting PUBREL, with their receipts (0: none): a resent
    /// PUBLISH with one reaches only durable sessions without the receipt.
    pub awaiting_pubrel: BTreeMap<u16, u64>,
    /// Receipts of inbound QoS 2 messages it got whose publisher has not released them
    /// (after [`Recovered::prune`]).
    pub receipts: BTreeSet<u64>,
    /// A will waiting out its delay (seconds) while the client is away.
    pub will: Option<(u32, StoredMessage)>,
    /// QoS 1/2 messages it is owed, by message id: ids grow with each shard's deliveries, so
    /// this is the order they reached the session in.
    pub owed: BTreeMap<u64, OwedMessage>,
}

impl RecoveredSession {
    /// The records that rebuild this session, appended to `out`, with the records of the
    /// messages it is owed (from `messages`) not in `written` yet.
    pub fn records(
        &self,
        client_id: &ByteString,
        messages: &BTreeMap<u64, StoredMessage>,
        written: &mut BTreeSet<u64>,
        out: &mut Vec<Record>,
    ) {
        let client_id = || client_id.clone();
        out.push(Record::SessionOpen {
            client_id: client_id(),
            expiry: self.expiry,
        });
        for (filter, &(options, id)) in &self.subscriptions {
            out.push(Record::Subscribe {
                client_id: client_id(),
                filter: filter.clone(),
                options,
                id,
            });
        }
        for (&pkid, &receipt) in &self.awaiting_pubrel {
            out.push(Record::Qos2Received {
                client_id: client_id(),
                pkid,
                receipt,
            });
        }
        for &receipt in &self.receipts {
            out.push(Record::Receipt {
                client_id: client_id(),
                receipt,
            });
        }
        if let Some((delay, message)) = &self.will {
            out.push(Record::Will {
                client_id: client_id(),
                delay: *delay,
                message: message.clone(),
            });
        }
        for (&id, owed) in &self.owed {
            let Some(message) = messages.get(&id) else {
                continue;
            };
            if written.insert(id) {
                out.push(Record::Message {
                    id,
                    message: message.clone(),
                });
            }
            out.push(Record::Owed {
                client_id: client_id(),
                owing: owed.owing.clone(),
            });
            if owed.released {
                out.push(Record::Released {
                    client_id: client_id(),
                    id,
                });
            }
        }
    }
}

/// A message a session is owed: queued, or in flight with its packet id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedMessage {
    pub owing: Owing,
    /// QoS 2: the client's PUBREC came; PUBREL is owed.
    pub released: bool,
}

/// What the records add up to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub sessions: BTreeMap<ByteString, RecoveredSession>,
    pub retained: BTreeMap<ByteString, StoredMessage>,
    /// The `seq` of the last update applied per retained topic, cleared ones included.
    retained_seq: BTreeMap<ByteString, u64>,
    /// The messages sessions are owed, by id ([`Recovered::prune`] drops those no one is).
    pub messages: BTreeMap<u64, StoredMessage>,
    /// The highest message id seen: new ones must be above it.
    pub max_message_id: u64,
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

    /// Drops the messages no session is owed, or that a session is owed but the log lost
    /// (counted as dangling). Call once every log is applied.
    pub fn prune(&mut self) {
        let mut wanted = BTreeSet::new();
        let messages = &self.messages;
        let mut missing = 0;
        for session in self.sessions.values_mut() {
            session.owed.retain(|id, _| {
                let known = messages.contains_key(id);
                missing += u64::from(!known);
                wanted.insert(*id);
                known
            });
        }
        self.dangling += missing;
        self.messages.retain(|id, _| wanted.contains(id));
        // A receipt matters while its publisher may still resend the message.
        let open: BTreeSet<u64> = self
            .sessions
            .values()
            .flat_map(|s| s.awaiting_pubrel.values().copied())
            .collect();
        for session in self.sessions.values_mut() {
            session.receipts.retain(|r| open.contains(r));
        }
    }

    fn owed(&mut self, client_id: &ByteString, id: u64) -> Option<&mut OwedMessage> {
        self.sessions.get_mut(client_id)?.owed.get_mut(&id)
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
            Record::Qos2Received {
                client_id,
                pkid,
                receipt,
            } => match self.sessions.get_mut(&client_id) {
                Some(s) => {
                    s.awaiting_pubrel.insert(pkid, receipt);
                    self.max_message_id = self.max_message_id.max(receipt);
                }
                None => self.dangling += 1,
            },
            Record::Receipt { client_id, receipt } => match self.sessions.get_mut(&client_id) {
                Some(s) => {
                    s.receipts.insert(receipt);
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
            Record::Message { id, message } => {
                self.max_message_id = self.max_message_id.max(id);
                self.messages.insert(id, message);
            }
            Record::Owed { client_id, owing } => match self.sessions.get_mut(&client_id) {
                Some(s) => {
                    if owing.receipt != 0 {
                        s.receipts.insert(owing.receipt);
                    }
                    let owed = OwedMessage {
                        owing,
                        released: false,
                    };
                    s.owed.insert(owed.owing.id, owed);
                }
                None => self.dangling += 1,
            },
            Record::Sent {
                client_id,
                id,
                pkid,
            } => match self.owed(&client_id, id) {
                Some(owed) => owed.owing.pkid = pkid,
                None => self.dangling += 1,
            },
            Record::Released { client_id, id } => match self.owed(&client_id, id) {
                Some(owed) => owed.released = true,
                None => self.dangling += 1,
            },
            Record::Delivered { client_id, id } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.owed.remove(&id);
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
                receipt: 0,
            },
            Record::Qos2Received {
                client_id: "c".into(),
                pkid: 6,
                receipt: 0,
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
        assert_eq!(s.awaiting_pubrel, BTreeMap::from([(5, 0)]));
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
                receipt: 0,
            },
        ]);
        assert!(r.sessions.is_empty());
        assert_eq!(r.retained.keys().map(|k| &**k).collect::<Vec<_>>(), ["b"]);
        assert_eq!(r.dangling, 1);
    }
}
