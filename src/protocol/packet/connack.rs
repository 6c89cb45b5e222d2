//! CONNACK (spec 3.2).

use bytes::{BufMut, Bytes, BytesMut};

use super::{check_reserved_flags, expect_end, write_fixed_header, PacketType, ProtocolVersion};
use crate::protocol::error::{DecodeError, EncodeError};
use crate::protocol::primitives::read_u8;
use crate::protocol::properties::{Properties, PropertyContext};
use crate::protocol::reason::{ReasonCode, ReasonContext};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    pub session_present: bool,
    /// In 3.x, one of the six return codes (see [`ReasonCode::to_v3_connack`]).
    pub code: ReasonCode,
    pub properties: Properties,
}

impl ConnAck {
    pub fn read(
        flags: u8,
        mut body: Bytes,
        version: ProtocolVersion,
    ) -> Result<ConnAck, DecodeError> {
        check_reserved_flags(PacketType::ConnAck, flags)?;
        let ack_flags = read_u8(&mut body)?;
        if ack_flags & 0xFE != 0 {
            return Err(DecodeError::Malformed("reserved CONNACK flags"));
        }
        let raw = read_u8(&mut body)?;
        let (code, properties) = if version.is_v5() {
            let code = ReasonCode::from_u8(raw)
                .filter(|c| c.allowed_in(ReasonContext::ConnAck))
                .ok_or(DecodeError::Malformed("CONNACK reason code"))?;
            (code, Properties::read(&mut body, PropertyContext::ConnAck)?)
        } else {
            let code = ReasonCode::from_v3_connack(raw)
                .ok_or(DecodeError::Malformed("CONNACK return code"))?;
            (code, Properties::default())
        };
        expect_end(&body)?;
        Ok(ConnAck {
            session_present: ack_flags & 1 != 0,
            code,
            properties,
        })
    }

    pub fn write(&self, version: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let v5 = version.is_v5();
        let remaining = 2 + self.properties.wire_len_in(version, "CONNACK properties")?;
        write_fixed_header(dst, (PacketType::ConnAck as u8) << 4, remaining)?;
        // MQTT 3.1 has no session present flag: the byte is reserved, 0.
        let session_present = self.session_present && version != ProtocolVersion::V3_1;
        dst.put_u8(u8::from(session_present));
        if v5 {
            dst.put_u8(self.code as u8);
            self.properties.write(dst)?;
        } else {
            dst.put_u8(self.code.to_v3_connack());
        }
        Ok(())
    }
}
