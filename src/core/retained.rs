//! Retained messages: the last retained message of each topic. Every shard keeps a full copy,
//! so a new subscription is answered locally.

use ahash::AHashMap;
use bytestring::ByteString;

use super::message::{Message, SharedMessage};
use crate::protocol::topic::matches;

#[derive(Debug, Default)]
pub struct RetainedStore {
    by_topic: AHashMap<ByteString, SharedMessage>,
}

impl RetainedStore {
    /// Stores, replaces, or (empty payload, MQTT-3.3.1-10) deletes the topic's retained message.
    /// The stored message is compact: a slice would keep the whole read buffer it came from
    /// alive for as long as the message stays retained.
    pub fn update(&mut self, message: &SharedMessage) {
        if message.payload().is_empty() {
            self.by_topic.remove(message.topic());
            return;
        }
        self.by_topic.insert(
            ByteString::from(message.topic()),
            Message::compacted(message),
        );
    }

    pub fn len(&self) -> usize {
        self.by_topic.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    /// The retained messages whose topic matches `filter`.
    pub fn matching<'a>(&'a self, filter: &'a str) -> impl Iterator<Item = &'a SharedMessage> + 'a {
        self.by_topic
            .iter()
            .filter(move |(topic, _)| matches(filter, topic))
            .map(|(_, m)| m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::message::Message;
    use crate::protocol::QoS;
    use bytes::Bytes;
    use std::sync::Arc;

    fn msg(topic: &str, payload: &'static [u8]) -> SharedMessage {
        let mut message = Message::new(topic, payload, QoS::AtMostOnce, std::time::Instant::now());
        message.retain = true;
        Arc::new(message)
    }

    #[test]
    fn store_replace_delete_and_match() {
        let mut store = RetainedStore::default();
        store.update(&msg("a/b", b"1"));
        store.update(&msg("a/b", b"2"));
        store.update(&msg("a/c", b"3"));
        store.update(&msg("$SYS/x", b"4"));
        assert_eq!(store.len(), 3);
        let mut got: Vec<_> = store
            .matching("a/+")
            .map(|m| Bytes::copy_from_slice(m.payload()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![Bytes::from_static(b"2"), Bytes::from_static(b"3")]
        );
        assert_eq!(store.matching("#").count(), 2, "# does not match $SYS");
        store.update(&msg("a/b", b""));
        assert_eq!(store.len(), 2);
    }
}
