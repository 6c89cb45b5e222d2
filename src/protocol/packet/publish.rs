//! PUBLISH (spec 3.3). Topic and payload are slices of the read buffer; encoding can be repeated
//! for many subscribers over one shared payload `Bytes`.

use bytes::{BufMut, Bytes, BytesMut};

use super::{write_fixed_header, PacketType, ProtocolVersion, QoS};
use crate::protocol::content::TopicPayload;
use crate::protocol::error::{DecodeError, EncodeError};
use crate::protocol::primitives::{
    parse_varint, prefixed_len, validate_topic_name, write_string, Varint,
};
use crate::protocol::properties::{Properties, PropertyContext};

#[derive(Clone, Default, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// 0 for QoS 0, non-zero otherwise.
    pub packet_id: u16,
    pub properties: Properties,
    /// Topic name (empty only in 5.0 when a topic alias stands for it) and payload. A decoded
    /// PUBLISH keeps its whole body here, a slice of the read buffer: one reference count per
    /// packet rather than one per field, which was a third of the decode time.
    pub content: TopicPayload,
}

const DUP: u8 = 0b1000;
const RETAIN: u8 = 0b0001;

impl Publish {
    /// A QoS 0 PUBLISH of `payload` to `topic` (copied into one buffer); set the other fields
    /// as needed.
    pub fn new(topic: &str, payload: &[u8]) -> Publish {
        Publish {
            content: TopicPayload::new(topic, payload),
            ..Default::default()
        }
    }

    /// Sets QoS and packet identifier together, as they go together on the wire.
    pub fn with_qos(mut self, qos: QoS, packet_id: u16) -> Publish {
        self.qos = qos;
        self.packet_id = packet_id;
        self
    }

    pub fn topic(&self) -> &str {
        self.content.topic()
    }

    pub fn payload(&self) -> &[u8] {
        self.content.payload()
    }

    #[inline]
    pub fn read(flags: u8, body: Bytes, version: ProtocolVersion) -> Result<Publish, DecodeError> {
        let qos = QoS::from_u8((flags >> 1) & 0x03)?;
        let dup = flags & DUP != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH"));
        }
        // Fields are read by offset, not split off: see `content`.
        let topic_len = match body.get(..2) {
            Some(len) => usize::from(u16::from_be_bytes([len[0], len[1]])),
            None => return Err(DecodeError::Malformed("packet ends early")),
        };
        let topic_end = 2 + topic_len;
        let Some(topic) = body.get(2..topic_end) else {
            return Err(DecodeError::Malformed("length prefix runs past the packet"));
        };
        validate_topic_name(topic)?;
        let mut pos = topic_end;
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            let Some(id) = body.get(pos..pos + 2) else {
                return Err(DecodeError::Malformed("packet ends early"));
            };
            pos += 2;
            match u16::from_be_bytes([id[0], id[1]]) {
                0 => return Err(DecodeError::Protocol("packet identifier 0")),
                id => id,
            }
        };
        let properties = if !version.is_v5() {
            Properties::default()
        } else {
            match parse_varint(&body[pos..])? {
                Varint::Complete(0, len) => {
                    pos += len;
                    Properties::default()
                }
                Varint::Complete(..) => {
                    let mut rest = body.slice(pos..);
                    let properties = Properties::read(&mut rest, PropertyContext::Publish)?;
                    pos = body.len() - rest.len();
                    properties
                }
                Varint::Incomplete => return Err(DecodeError::Malformed("packet ends early")),
            }
        };
        if topic_len == 0 && properties.topic_alias.is_none() {
            return Err(DecodeError::TopicNameInvalid);
        }
        Ok(Publish {
            dup,
            qos,
            retain: flags & RETAIN != 0,
            packet_id,
            properties,
            // SAFETY: validate_topic_name checked the topic; offsets are in order and in bounds.
            content: unsafe { TopicPayload::in_body(body, 2, topic_end, pos) },
        })
    }

    /// The parts of this packet that [`write_publish`] takes.
    pub fn header(&self) -> PublishHeader<'_> {
        PublishHeader {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic(),
            packet_id: self.packet_id,
            properties: &self.properties,
        }
    }

    /// Bytes of the whole packet on the wire.
    pub fn wire_len(&self, version: ProtocolVersion) -> usize {
        self.header().wire_len(version, self.payload().len())
    }

    /// Appends everything but the payload; the caller appends (or chains) the payload.
    pub fn write_header(
        &self,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        self.header().write(version, self.payload().len(), dst)
    }

    pub fn write(&self, version: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.write_header(version, dst)?;
        dst.put_slice(self.payload());
        Ok(())
    }
}

impl std::fmt::Debug for Publish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publish")
            .field("dup", &self.dup)
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("topic", &self.topic())
            .field("packet_id", &self.packet_id)
            .field("properties", &self.properties)
            .field("payload", &Bytes::copy_from_slice(self.payload()))
            .finish()
    }
}

/// Everything of a PUBLISH but its payload, borrowed: a broker encodes one stored message for
/// each subscriber with that subscriber's QoS, packet id and flags, without building a packet.
#[derive(Debug, Clone, Copy)]
pub struct PublishHeader<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: &'a str,
    pub packet_id: u16,
    pub properties: &'a Properties,
}

impl PublishHeader<'_> {
    fn first_byte(&self) -> u8 {
        let mut byte = (PacketType::Publish as u8) << 4 | (self.qos as u8) << 1;
        if self.dup {
            byte |= DUP;
        }
        if self.retain {
            byte |= RETAIN;
        }
        byte
    }

    fn remaining_len(&self, version: ProtocolVersion, payload_len: usize) -> usize {
        let mut len = prefixed_len(self.topic.as_bytes()) + payload_len;
        if self.qos != QoS::AtMostOnce {
            len += 2;
        }
        if version.is_v5() {
            len += self.properties.wire_len();
        }
        len
    }

    /// Bytes of the whole packet on the wire.
    pub fn wire_len(&self, version: ProtocolVersion, payload_len: usize) -> usize {
        let remaining = self.remaining_len(version, payload_len);
        1 + crate::protocol::primitives::varint_len(remaining as u32) + remaining
    }

    /// Appends the fixed header, topic, packet id and properties; the payload follows.
    pub fn write(
        &self,
        version: ProtocolVersion,
        payload_len: usize,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        if self.qos != QoS::AtMostOnce && self.packet_id == 0 {
            return Err(EncodeError::Invalid(
                "QoS 1/2 PUBLISH without a packet identifier",
            ));
        }
        if !version.is_v5() && !self.properties.is_empty() {
            return Err(EncodeError::NotInVersion("PUBLISH properties"));
        }
        write_fixed_header(
            dst,
            self.first_byte(),
            self.remaining_len(version, payload_len),
        )?;
        write_string(dst, self.topic, "topic name")?;
        if self.qos != QoS::AtMostOnce {
            dst.put_u16(self.packet_id);
        }
        if version.is_v5() {
            self.properties.write(dst)?;
        }
        Ok(())
    }

    /// Appends the whole packet.
    pub fn write_with_payload(
        &self,
        version: ProtocolVersion,
        payload: &[u8],
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        self.write(version, payload.len(), dst)?;
        dst.put_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(wire: &'static [u8], version: ProtocolVersion) -> (Bytes, Publish) {
        let body = Bytes::from_static(wire);
        (body.clone(), Publish::read(0b0010, body, version).unwrap())
    }

    #[test]
    fn a_decoded_publish_equals_one_built_from_its_fields() {
        // QoS 1, topic "a/b", packet id 7, 5.0 with an empty property block, payload "hi".
        let (_, p) = decoded(b"\x00\x03a/b\x00\x07\x00hi", ProtocolVersion::V5);
        assert_eq!(p, Publish::new("a/b", b"hi").with_qos(QoS::AtLeastOnce, 7));
        assert_ne!(p, Publish::new("a/b", b"ho").with_qos(QoS::AtLeastOnce, 7));
        assert_ne!(p, Publish::new("a/c", b"hi").with_qos(QoS::AtLeastOnce, 7));
    }

    #[test]
    fn topic_and_payload_stay_in_the_packet_buffer() {
        let (body, p) = decoded(b"\x00\x01t\x00\x07hello", ProtocolVersion::V3_1_1);
        let base = body.as_ptr() as usize;
        assert_eq!(p.topic().as_ptr() as usize, base + 2);
        assert_eq!(p.payload().as_ptr() as usize, base + 5);
        assert!(!p.content.is_compact());
    }

    #[test]
    fn v5_properties_are_skipped_to_find_the_payload() {
        // Message Expiry Interval 60 (5 bytes of properties) before the payload.
        let (_, p) = decoded(
            b"\x00\x01t\x00\x07\x05\x02\x00\x00\x00\x3Cpay",
            ProtocolVersion::V5,
        );
        assert_eq!(p.properties.message_expiry_interval, Some(60));
        assert_eq!(p.payload(), b"pay");
    }

    #[test]
    fn truncated_fields_are_malformed_not_a_panic() {
        for wire in [
            &b"\x00"[..],
            b"\x00\x05ab",
            b"\x00\x01t\x00",
            b"\x00\x01t\x00\x07\x05\x02",
        ] {
            let body = Bytes::copy_from_slice(wire);
            assert!(
                Publish::read(0b0010, body, ProtocolVersion::V5).is_err(),
                "{wire:?}"
            );
        }
    }
}
