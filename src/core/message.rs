//! An application message as the broker stores and routes it: one allocation shared by every
//! subscriber and every shard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;

use crate::protocol::{Properties, Publish, QoS, TopicPayload, Will};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic and payload. A QoS 0 message shares the publisher's read buffer until it is
    /// queued; anything kept longer is compact (see `from_publish`).
    pub content: TopicPayload,
    /// The QoS it was published with; each subscriber gets min(this, granted).
    pub qos: QoS,
    pub retain: bool,
    /// 5.0 properties passed on to subscribers (the publisher's topic alias removed).
    pub properties: Properties,
    /// From the Message Expiry Interval: not delivered after this.
    pub expires_at: Option<Instant>,
    /// When the broker accepted it: subscriptions made later do not get it, even if the
    /// message reaches their shard after them.
    pub published_at: Instant,
    /// Content and properties own their bytes (no slice of a read buffer): fit to be kept.
    compact: bool,
    /// With persistence on, a QoS 2 message from a durable session: the id of its receipt
    /// in the store (0: none), see [`Receipt`].
    pub receipt: Receipt,
}

/// The store's id for an inbound QoS 2 message (its "received" record). Durable sessions
/// remember the receipts of what they got, so that a message the publisher resends after a
/// restart (its PUBREL state came back, but not whether every shard had it) reaches each of
/// them once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Receipt {
    pub id: u64,
    /// A resend of a message received before the restart: sessions that have its receipt
    /// already must not get it again.
    pub resent: bool,
}

pub type SharedMessage = Arc<Message>;

impl Message {
    /// A message with a compact copy of `topic` and `payload` and no properties.
    pub fn new(topic: &str, payload: &[u8], qos: QoS, now: Instant) -> Message {
        Message {
            content: TopicPayload::new(topic, payload),
            qos,
            retain: false,
            properties: Properties::default(),
            expires_at: None,
            published_at: now,
            compact: true,
            receipt: Receipt::default(),
        }
    }

    /// `aliased_topic` is the topic a 5.0 topic alias stood for; without one the packet's own
    /// topic is used.
    ///
    /// A QoS 1 or 2 message is kept until every subscriber acknowledges it, so it gets a
    /// compact copy: a slice would pin the whole read buffer it came from (up to 64 KiB for a
    /// message of a few bytes) and queue limits would not bound memory. The copy costs about
    /// what the reference counting of a slice did, and lets the read buffer be reused.
    pub fn from_publish(
        publish: Publish,
        aliased_topic: Option<ByteString>,
        now: Instant,
    ) -> Message {
        let mut properties = publish.properties;
        if properties.topic_alias.is_some() {
            properties.topic_alias = None;
        }
        // QoS 0 is routed and written at once: it may share the read buffer.
        let keep = publish.qos != QoS::AtMostOnce;
        let content = match aliased_topic {
            Some(topic) => TopicPayload::new(&topic, publish.content.payload()),
            None if keep => publish.content.compacted(),
            None => publish.content,
        };
        if keep {
            properties = properties.compacted();
        }
        Message {
            compact: content.is_compact() && (keep || properties.is_empty()),
            content,
            qos: publish.qos,
            retain: publish.retain,
            expires_at: expiry(&properties, now),
            published_at: now,
            properties,
            receipt: Receipt::default(),
        }
    }

    pub fn from_will(will: Will, now: Instant) -> Message {
        let mut properties = will.properties;
        if properties.will_delay_interval.is_some() {
            properties.will_delay_interval = None;
        }
        Message {
            content: TopicPayload::new(&will.topic, &will.payload),
            qos: will.qos,
            retain: will.retain,
            expires_at: expiry(&properties, now),
            published_at: now,
            properties: properties.compacted(),
            compact: true,
            receipt: Receipt::default(),
        }
    }

    pub fn topic(&self) -> &str {
        self.content.topic()
    }

    pub fn payload(&self) -> &[u8] {
        self.content.payload()
    }

    /// True when content and properties own their bytes.
    pub fn is_compact(&self) -> bool {
        self.compact
    }

    /// This message, or a copy of it that owns all its bytes, to be kept for long.
    pub fn compacted(message: &SharedMessage) -> SharedMessage {
        if message.compact {
            return message.clone();
        }
        Arc::new(Message {
            content: message.content.compacted(),
            properties: message.properties.compacted(),
            compact: true,
            ..Message::clone(message)
        })
    }

    /// Whole seconds left before expiry, rounded up; `Some(0)` once expired.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        let at = self.expires_at?;
        let left = at.saturating_duration_since(now);
        Some(left.as_secs() as u32 + u32::from(left.subsec_nanos() > 0))
    }

    /// Bytes this message holds (topic, payload and property values), for queue and
    /// retained limits.
    pub fn size(&self) -> usize {
        self.content.len() + self.properties.stored_len()
    }
}

fn expiry(properties: &Properties, now: Instant) -> Option<Instant> {
    properties
        .message_expiry_interval
        .map(|secs| now + Duration::from_secs(u64::from(secs)))
}

/// One message on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: SharedMessage,
    pub qos: QoS,
    /// RETAIN on the outgoing PUBLISH: set for retained messages sent on subscribe.
    pub retain: bool,
    /// Identifiers of the subscriptions it matched (5.0).
    pub subscription_ids: Vec<u32>,
    /// The `$share/{group}/{filter}` it came through, so it can go to another member if this
    /// one leaves before acknowledging it.
    pub shared_group: Option<crate::core::filter::Filter>,
    /// Its id in the durable store, for a QoS 1/2 message to a durable session (0: not
    /// stored).
    pub stored: u64,
}

impl Delivery {
    /// What the figures count of it once sent.
    pub fn send_note(&self) -> crate::metrics::SendNote {
        crate::metrics::SendNote::new(
            self.qos,
            self.message.payload().len(),
            self.message.published_at,
        )
    }

    pub fn new(message: SharedMessage, qos: QoS, retain: bool) -> Delivery {
        Delivery {
            message,
            qos,
            retain,
            subscription_ids: Vec::new(),
            shared_group: None,
            stored: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Decoder, Packet, ProtocolVersion, MAX_PACKET_SIZE};
    use bytes::BytesMut;

    fn decoded(wire: &[u8]) -> Publish {
        let mut buf = BytesMut::from(wire);
        match Decoder::new(ProtocolVersion::V3_1_1, MAX_PACKET_SIZE).decode(&mut buf) {
            Ok(Some(Packet::Publish(p))) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn qos0_shares_the_read_buffer_and_qos1_gets_a_compact_copy() {
        let now = Instant::now();
        let qos0 = Message::from_publish(decoded(b"\x30\x06\x00\x01tabc"), None, now);
        assert!(!qos0.content.is_compact());
        let qos1 = Message::from_publish(decoded(b"\x32\x08\x00\x01t\x00\x01abc"), None, now);
        assert!(qos1.content.is_compact());
        for m in [&qos0, &qos1] {
            assert_eq!((m.topic(), m.payload(), m.size()), ("t", &b"abc"[..], 4));
        }
        let aliased = Message::from_publish(
            decoded(b"\x30\x06\x00\x01tabc"),
            Some("long/topic".into()),
            now,
        );
        assert_eq!(
            (aliased.topic(), aliased.payload()),
            ("long/topic", &b"abc"[..])
        );
        assert!(aliased.content.is_compact());
    }

    #[test]
    fn compacting_copies_only_what_is_not_compact() {
        let now = Instant::now();
        let sliced = Arc::new(Message::from_publish(
            decoded(b"\x30\x06\x00\x01tabc"),
            None,
            now,
        ));
        let compact = Message::compacted(&sliced);
        assert!(!Arc::ptr_eq(&sliced, &compact));
        assert_eq!(compact.content, sliced.content);
        assert!(Arc::ptr_eq(&Message::compacted(&compact), &compact));
    }
}
