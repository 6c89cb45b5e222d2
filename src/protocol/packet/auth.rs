//! AUTH (spec 3.15, MQTT 5.0 only): extended authentication exchange.

use bytes::{BufMut, Bytes, BytesMut};

use super::{check_reserved_flags, expect_end, write_fixed_header, PacketType};
use crate::protocol::error::{DecodeError, EncodeError};
use crate::protocol::primitives::read_u8;
use crate::protocol::properties::{Properties, PropertyContext};
use crate::protocol::reason::{ReasonCode, ReasonContext};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl Auth {
    pub fn read(flags: u8, mut body: Bytes) -> Result<Auth, DecodeError> {
        check_reserved_flags(PacketType::Auth, flags)?;
        let mut packet = Auth::default();
        if !body.is_empty() {
            packet.reason = ReasonCode::from_u8(read_u8(&mut body)?)
                .filter(|c| c.allowed_in(ReasonContext::Auth))
                .ok_or(DecodeError::Malformed("AUTH reason code"))?;
            packet.properties = Properties::read(&mut body, PropertyContext::Auth)?;
        }
        expect_end(&body)?;
        Ok(packet)
    }

    pub fn write(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let first = (PacketType::Auth as u8) << 4;
        if self.reason == ReasonCode::Success && self.properties.is_empty() {
            return write_fixed_header(dst, first, 0);
        }
        write_fixed_header(dst, first, 1 + self.properties.wire_len())?;
        dst.put_u8(self.reason as u8);
        self.properties.write(dst)
    }
}
