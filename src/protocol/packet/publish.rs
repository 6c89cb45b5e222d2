//! PUBLISH (spec 3.3). Topic and payload are slices of the read buffer; encoding can be repeated
//! for many subscribers over one shared payload `Bytes`.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::{read_packet_id, write_fixed_header, PacketType, ProtocolVersion, QoS};
use crate::protocol::error::{DecodeError, EncodeError};
use crate::protocol::primitives::{prefixed_len, read_topic_name, write_string};
use crate::protocol::properties::{Properties, PropertyContext};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty only in 5.0 when a topic alias stands for it.
    pub topic: ByteString,
    /// 0 for QoS 0, non-zero otherwise.
    pub packet_id: u16,
    pub properties: Properties,
    pub payload: Bytes,
}

const DUP: u8 = 0b1000;
const RETAIN: u8 = 0b0001;

impl Publish {
    pub fn read(
        flags: u8,
        mut body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Publish, DecodeError> {
        let qos = QoS::from_u8((flags >> 1) & 0x03)?;
        let dup = flags & DUP != 0;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH"));
        }
        let topic = read_topic_name(&mut body)?;
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            read_packet_id(&mut body)?
        };
        let properties = Properties::read_in(&mut body, PropertyContext::Publish, version)?;
        if topic.is_empty() && properties.topic_alias.is_none() {
            return Err(DecodeError::TopicNameInvalid);
        }
        Ok(Publish {
            dup,
            qos,
            retain: flags & RETAIN != 0,
            topic,
            packet_id,
            properties,
            payload: body,
        })
    }

    /// The parts of this packet that [`write_publish`] takes.
    pub fn header(&self) -> PublishHeader<'_> {
        PublishHeader {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            topic: &self.topic,
            packet_id: self.packet_id,
            properties: &self.properties,
        }
    }

    /// Bytes of the whole packet on the wire.
    pub fn wire_len(&self, version: ProtocolVersion) -> usize {
        self.header().wire_len(version, self.payload.len())
    }

    /// Appends everything but the payload; the caller appends (or chains) the payload.
    pub fn write_header(
        &self,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        self.header().write(version, self.payload.len(), dst)
    }

    pub fn write(&self, version: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.write_header(version, dst)?;
        dst.put_slice(&self.payload);
        Ok(())
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
