//! PUBACK, PUBREC, PUBREL and PUBCOMP (spec 3.4-3.7): one shape, four packet types.

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    check_reserved_flags, expect_end, read_packet_id, write_fixed_header, PacketType,
    ProtocolVersion,
};
use crate::protocol::error::{DecodeError, EncodeError};
use crate::protocol::primitives::read_u8;
use crate::protocol::properties::{Properties, PropertyContext};
use crate::protocol::reason::{ReasonCode, ReasonContext};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ack {
    pub packet_id: u16,
    pub reason: ReasonCode,
    pub properties: Properties,
}

fn context(packet: PacketType) -> ReasonContext {
    match packet {
        PacketType::PubAck => ReasonContext::PubAck,
        PacketType::PubRec => ReasonContext::PubRec,
        PacketType::PubRel => ReasonContext::PubRel,
        _ => ReasonContext::PubComp,
    }
}

impl Ack {
    pub fn new(packet_id: u16) -> Ack {
        Ack {
            packet_id,
            ..Ack::default()
        }
    }

    pub fn read(
        packet: PacketType,
        flags: u8,
        mut body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Ack, DecodeError> {
        check_reserved_flags(packet, flags)?;
        let packet_id = read_packet_id(&mut body)?;
        let mut ack = Ack::new(packet_id);
        if version.is_v5() && !body.is_empty() {
            let raw = read_u8(&mut body)?;
            ack.reason = ReasonCode::from_u8(raw)
                .filter(|c| c.allowed_in(context(packet)))
                .ok_or(DecodeError::Malformed("acknowledgement reason code"))?;
            if !body.is_empty() {
                ack.properties = Properties::read(&mut body, PropertyContext::PubAck)?;
            }
        }
        expect_end(&body)?;
        Ok(ack)
    }

    /// Writes the shortest form the spec allows: the reason code and properties are omitted
    /// when they are Success and empty (5.0, 3.4.2.1).
    pub fn write(
        &self,
        packet: PacketType,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let flags = if packet == PacketType::PubRel {
            0b0010
        } else {
            0
        };
        let first = (packet as u8) << 4 | flags;
        if !version.is_v5() {
            if self.reason != ReasonCode::Success || !self.properties.is_empty() {
                return Err(EncodeError::NotInVersion("acknowledgement reason codes"));
            }
            write_fixed_header(dst, first, 2)?;
            dst.put_u16(self.packet_id);
            return Ok(());
        }
        let with_props = !self.properties.is_empty();
        let with_reason = with_props || self.reason != ReasonCode::Success;
        let remaining = 2
            + usize::from(with_reason)
            + if with_props {
                self.properties.wire_len()
            } else {
                0
            };
        write_fixed_header(dst, first, remaining)?;
        dst.put_u16(self.packet_id);
        if with_reason {
            dst.put_u8(self.reason as u8);
        }
        if with_props {
            self.properties.write(dst)?;
        }
        Ok(())
    }
}
