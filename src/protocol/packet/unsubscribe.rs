//! UNSUBSCRIBE and UNSUBACK (spec 3.10, 3.11).

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::subscribe::check_filter;
use super::{
    check_reserved_flags, expect_end, read_packet_id, write_fixed_header, PacketType,
    ProtocolVersion,
};
use crate::protocol::error::{DecodeError, EncodeError};
use crate::protocol::primitives::{prefixed_len, read_string, read_u8, write_string};
use crate::protocol::properties::{Properties, PropertyContext};
use crate::protocol::reason::{ReasonCode, ReasonContext};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub properties: Properties,
    pub filters: Vec<ByteString>,
}

impl Unsubscribe {
    pub fn read(
        flags: u8,
        mut body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Unsubscribe, DecodeError> {
        check_reserved_flags(PacketType::Unsubscribe, flags)?;
        let packet_id = read_packet_id(&mut body)?;
        let properties = Properties::read_in(&mut body, PropertyContext::Unsubscribe, version)?;
        let mut filters = Vec::new();
        while !body.is_empty() {
            let filter = read_string(&mut body)?;
            check_filter(&filter, version)?;
            filters.push(filter);
        }
        if filters.is_empty() {
            return Err(DecodeError::Protocol("UNSUBSCRIBE without a topic filter"));
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub fn write(&self, version: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let v5 = version.is_v5();
        let mut remaining = 2 + self
            .filters
            .iter()
            .map(|f| prefixed_len(f.as_bytes()))
            .sum::<usize>();
        remaining += self
            .properties
            .wire_len_in(version, "UNSUBSCRIBE properties")?;
        write_fixed_header(
            dst,
            (PacketType::Unsubscribe as u8) << 4 | 0b0010,
            remaining,
        )?;
        dst.put_u16(self.packet_id);
        if v5 {
            self.properties.write(dst)?;
        }
        for f in &self.filters {
            write_string(dst, f, "topic filter")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubAck {
    pub packet_id: u16,
    pub properties: Properties,
    /// One per filter in 5.0; always empty in 3.x.
    pub codes: Vec<ReasonCode>,
}

impl UnsubAck {
    pub fn read(
        flags: u8,
        mut body: Bytes,
        version: ProtocolVersion,
    ) -> Result<UnsubAck, DecodeError> {
        check_reserved_flags(PacketType::UnsubAck, flags)?;
        let packet_id = read_packet_id(&mut body)?;
        let mut ack = UnsubAck {
            packet_id,
            ..UnsubAck::default()
        };
        if version.is_v5() {
            ack.properties = Properties::read(&mut body, PropertyContext::UnsubAck)?;
            while !body.is_empty() {
                let code = ReasonCode::from_u8(read_u8(&mut body)?)
                    .filter(|c| c.allowed_in(ReasonContext::UnsubAck))
                    .ok_or(DecodeError::Malformed("UNSUBACK reason code"))?;
                ack.codes.push(code);
            }
        }
        expect_end(&body)?;
        Ok(ack)
    }

    pub fn write(&self, version: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let v5 = version.is_v5();
        let remaining = if v5 {
            2 + self.properties.wire_len() + self.codes.len()
        } else if self.properties.is_empty() && self.codes.is_empty() {
            2
        } else {
            return Err(EncodeError::NotInVersion("UNSUBACK reason codes"));
        };
        write_fixed_header(dst, (PacketType::UnsubAck as u8) << 4, remaining)?;
        dst.put_u16(self.packet_id);
        if v5 {
            self.properties.write(dst)?;
            for &code in &self.codes {
                dst.put_u8(code as u8);
            }
        }
        Ok(())
    }
}
