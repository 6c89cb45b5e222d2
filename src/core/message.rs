//! An application message as the broker stores and routes it: one allocation shared by every
//! subscriber and every shard (the payload is a slice of the publisher's read buffer).

use std::sync::Arc;

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
}

pub type SharedMessage = Arc<Message>;

impl Message {
    pub fn from_publish(publish: Publish, topic: ByteString) -> Message {
        let mut properties = publish.properties;
        if properties.topic_alias.is_some() {
            properties.topic_alias = None;
        }
        Message {
            topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties,
        }
    }

    pub fn from_will(will: Will) -> Message {
        let mut properties = will.properties;
        if properties.will_delay_interval.is_some() {
            properties.will_delay_interval = None;
        }
        Message {
            topic: will.topic,
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties,
        }
    }

    /// Bytes this message holds, for queue accounting.
    pub fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// One message on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: SharedMessage,
    pub qos: QoS,
    /// RETAIN on the outgoing PUBLISH: set for retained messages sent on subscribe.
    pub retain: bool,
}
