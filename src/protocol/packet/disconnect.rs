//! DISCONNECT (spec 3.14): empty in 3.x; a reason code and properties in 5.0.

use bytes::{BufMut, Bytes, BytesMut};

use super::{check_reserved_flags, expect_end, write_fixed_header, PacketType, ProtocolVersion};
use crate::protocol::error::{DecodeError, EncodeError};
use crate::protocol::primitives::read_u8;
use crate::protocol::properties::{Properties, PropertyContext};
use crate::protocol::reason::{ReasonCode, ReasonContext};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl Disconnect {
    pub fn new(reason: ReasonCode) -> Disconnect {
        Disconnect {
            reason,
            properties: Properties::default(),
        }
    }

    pub fn read(
        flags: u8,
        mut body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Disconnect, DecodeError> {
        check_reserved_flags(PacketType::Disconnect, flags)?;
        let mut packet = Disconnect::default();
        if version.is_v5() && !body.is_empty() {
            packet.reason = ReasonCode::from_u8(read_u8(&mut body)?)
                .filter(|c| c.allowed_in(ReasonContext::Disconnect))
                .ok_or(DecodeError::Malformed("DISCONNECT reason code"))?;
            if !body.is_empty() {
                packet.properties = Properties::read(&mut body, PropertyContext::Disconnect)?;
            }
        }
        expect_end(&body)?;
        Ok(packet)
    }

    pub fn write(&self, version: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let first = (PacketType::Disconnect as u8) << 4;
        if !version.is_v5() {
            // 3.x has no reason code: a server closes the socket instead of saying why.
            return write_fixed_header(dst, first, 0);
        }
        let with_props = !self.properties.is_empty();
        let remaining = if with_props {
            1 + self.properties.wire_len()
        } else {
            usize::from(self.reason != ReasonCode::Success)
        };
        write_fixed_header(dst, first, remaining)?;
        if remaining > 0 {
            dst.put_u8(self.reason as u8);
        }
        if with_props {
            self.properties.write(dst)?;
        }
        Ok(())
    }
}
