//! The sending side of a connection: the bytes encoded for it, and what the client said it can
//! take (5.0 Receive Maximum, Maximum Packet Size, Topic Alias Maximum). Every packet the
//! broker sends a client is encoded here.

use std::borrow::Cow;
use std::time::Instant;

use bytes::BytesMut;

use super::limits::Limits;
use super::message::Delivery;
use super::topic_alias::{OutboundAlias, OutboundAliases};
use crate::protocol::{Ack, EncodeError, PacketType, Properties, ProtocolVersion, PublishHeader};

/// Why a delivery was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsent {
    /// Its message expired before it could be sent.
    Expired,
    /// It exceeds the client's Maximum Packet Size.
    TooLarge,
}

/// The connection a session is attached to, as far as sending is concerned.
#[derive(Debug)]
pub struct Link {
    pub version: ProtocolVersion,
    /// Encoded packets not yet handed to the socket.
    pub out: BytesMut,
    /// Bytes handed to the socket writer and not yet written.
    pub unflushed: usize,
    /// Outgoing QoS 1/2 window: min(our limit, the client's Receive Maximum).
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size (5.0); larger messages are not sent to it.
    pub max_packet_size: u32,
    /// The client's Topic Alias Maximum (5.0): aliases we may assign.
    pub topic_alias_maximum: u16,
    pub aliases: OutboundAliases,
    /// Bytes of topics the outbound aliases may hold.
    pub alias_budget: usize,
}

impl Link {
    pub fn new(version: ProtocolVersion) -> Link {
        Link {
            version,
            out: BytesMut::new(),
            unflushed: 0,
            receive_maximum: u16::MAX,
            max_packet_size: u32::MAX,
            topic_alias_maximum: 0,
            aliases: OutboundAliases::default(),
            alias_budget: 0,
        }
    }

    pub(crate) fn has_room(&self, limits: &Limits) -> bool {
        self.out.len() + self.unflushed < limits.write_high_water
    }

    pub fn write_ack(&mut self, packet: PacketType, packet_id: u16) {
        self.write_control("ack", |version, out| {
            Ack::new(packet_id).write(packet, version, out)
        });
    }

    /// Queues a packet the broker makes itself (acks, CONNACK, DISCONNECT, PINGRESP). Their
    /// sizes are bounded by construction, so failing to encode one is a bug: it is logged, and
    /// nothing half-written stays in the output.
    pub fn write_control(
        &mut self,
        what: &'static str,
        write: impl FnOnce(ProtocolVersion, &mut BytesMut) -> Result<(), EncodeError>,
    ) {
        write_logged(what, self.version, &mut self.out, write);
    }
}

/// Bytes an alias property adds to a PUBLISH.
const ALIAS_PROPERTY_LEN: usize = 3;

impl Link {
    /// Encodes one delivery, with this subscriber's 5.0 properties: the remaining
    /// expiry, its subscription identifiers and a topic alias. Nothing is written for a message
    /// that has expired or exceeds the client's maximum packet size.
    pub fn write_publish(
        &mut self,
        delivery: &Delivery,
        packet_id: u16,
        dup: bool,
        now: Instant,
    ) -> Result<(), Unsent> {
        let link = self;
        let message = &delivery.message;
        let remaining_expiry = message.remaining_expiry(now);
        if remaining_expiry == Some(0) && !dup {
            return Err(Unsent::Expired);
        }
        let v5 = link.version.is_v5();
        let mut properties: Cow<Properties> = if !v5 {
            Cow::Owned(Properties::default())
        } else if remaining_expiry.is_none() && delivery.subscription_ids.is_empty() {
            Cow::Borrowed(&message.properties)
        } else {
            let mut p = message.properties.clone();
            if remaining_expiry.is_some() {
                p.message_expiry_interval = remaining_expiry;
            }
            if !delivery.subscription_ids.is_empty() {
                p.subscription_identifiers = delivery.subscription_ids.clone();
            }
            Cow::Owned(p)
        };
        let alias_room = if link.topic_alias_maximum > 0 {
            ALIAS_PROPERTY_LEN
        } else {
            0
        };
        let full_len = PublishHeader {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic: message.topic(),
            packet_id,
            properties: &properties,
        }
        .wire_len(link.version, message.payload().len());
        if full_len + alias_room > link.max_packet_size as usize {
            return Err(Unsent::TooLarge);
        }
        let alias = if v5 {
            link.aliases
                .assign(message.topic(), link.topic_alias_maximum, link.alias_budget)
        } else {
            None
        };
        let mut topic: &str = message.topic();
        if let Some(alias) = alias {
            let number = match alias {
                OutboundAlias::Set(n) => n,
                OutboundAlias::Use(n) => {
                    topic = "";
                    n
                }
            };
            properties.to_mut().topic_alias = Some(number);
        }
        let header = PublishHeader {
            dup,
            qos: delivery.qos,
            retain: delivery.retain,
            topic,
            packet_id,
            properties: &properties,
        };
        // Topic and properties were decoded from packets of the same limits, so they encode.
        match header.write_with_payload(link.version, message.payload(), &mut link.out) {
            Ok(()) => Ok(()),
            Err(_) => Err(Unsent::TooLarge),
        }
    }
}

/// A control packet encoded on its own (a SUBACK that waits for route syncs before it joins
/// the output), as [`Link::write_control`] would write it.
pub fn encode_control(
    what: &'static str,
    version: ProtocolVersion,
    write: impl FnOnce(ProtocolVersion, &mut BytesMut) -> Result<(), EncodeError>,
) -> BytesMut {
    let mut out = BytesMut::new();
    write_logged(what, version, &mut out, write);
    out
}

/// Runs `write`; on an error (a bug: these packets are bounded by construction) logs it and
/// leaves nothing half-written in `out`.
fn write_logged(
    what: &'static str,
    version: ProtocolVersion,
    out: &mut BytesMut,
    write: impl FnOnce(ProtocolVersion, &mut BytesMut) -> Result<(), EncodeError>,
) {
    let start = out.len();
    if let Err(error) = write(version, out) {
        out.truncate(start);
        tracing::error!(packet = what, %error, "could not encode a control packet");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_control_packet_that_fails_to_encode_leaves_nothing_behind() {
        let mut link = Link::new(ProtocolVersion::V3_1_1);
        link.write_control("test", |_, out| {
            out.extend_from_slice(b"half");
            Err(EncodeError::Invalid("test"))
        });
        assert!(link.out.is_empty());
        link.write_ack(PacketType::PubAck, 7);
        assert_eq!(&link.out[..], [0x40, 2, 0, 7]);
    }
}
