//! An application message as the broker stores and routes it: one allocation shared by every
//! subscriber and every shard (the payload is a slice of the publisher's read buffer).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;

use crate::protocol::{Properties, Publish, QoS, Will};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: ByteString,
    pub payload: Bytes,
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
}

pub type SharedMessage = Arc<Message>;

impl Message {
    /// `aliased_topic` is the topic a 5.0 topic alias stood for; without one the packet's own
    /// topic is used.
    pub fn from_publish(
        mut publish: Publish,
        aliased_topic: Option<ByteString>,
        now: Instant,
    ) -> Message {
        let mut properties = std::mem::take(&mut publish.properties);
        if properties.topic_alias.is_some() {
            properties.topic_alias = None;
        }
        let (qos, retain) = (publish.qos, publish.retain);
        let (topic, payload) = match aliased_topic {
            Some(topic) => (topic, publish.into_payload()),
            None => publish.into_topic_and_payload(),
        };
        Message {
            topic,
            payload,
            qos,
            retain,
            expires_at: expiry(&properties, now),
            published_at: now,
            properties,
        }
    }

    pub fn from_will(will: Will, now: Instant) -> Message {
        let mut properties = will.properties;
        if properties.will_delay_interval.is_some() {
            properties.will_delay_interval = None;
        }
        Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            expires_at: expiry(&properties, now),
            published_at: now,
            properties,
        }
    }

    /// Whole seconds left before expiry, rounded up; `Some(0)` once expired.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        let at = self.expires_at?;
        let left = at.saturating_duration_since(now);
        Some(left.as_secs() as u32 + u32::from(left.subsec_nanos() > 0))
    }

    /// Bytes this message holds, for queue accounting.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
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
    pub shared_group: Option<ByteString>,
}

impl Delivery {
    pub fn new(message: SharedMessage, qos: QoS, retain: bool) -> Delivery {
        Delivery {
            message,
            qos,
            retain,
            subscription_ids: Vec::new(),
            shared_group: None,
        }
    }
}
