//! SUBSCRIBE and SUBACK (spec 3.8, 3.9).

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::{
    check_reserved_flags, expect_end, read_packet_id, write_fixed_header, PacketType,
    ProtocolVersion, QoS,
};
use crate::protocol::error::{DecodeError, EncodeError};
use crate::protocol::primitives::{prefixed_len, read_string, read_u8, write_string};
use crate::protocol::properties::{Properties, PropertyContext};
use crate::protocol::reason::{ReasonCode, ReasonContext};
use crate::protocol::topic::{parse_shared, valid_topic_filter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// Send retained messages when the subscription is made.
    #[default]
    OnSubscribe = 0,
    /// Send them only if the subscription did not exist before.
    OnNewSubscribe = 1,
    /// Never send them.
    Never = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    fn from_byte(byte: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(DecodeError::Malformed("reserved subscription option bits"));
        }
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::OnSubscribe,
            1 => RetainHandling::OnNewSubscribe,
            2 => RetainHandling::Never,
            _ => return Err(DecodeError::Protocol("retain handling 3")),
        };
        Ok(SubscriptionOptions {
            qos: QoS::from_u8(byte & 0x03)?,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    fn to_byte(self, version: ProtocolVersion) -> u8 {
        let mut byte = self.qos as u8;
        if version.is_v5() {
            byte |= u8::from(self.no_local) << 2
                | u8::from(self.retain_as_published) << 3
                | (self.retain_handling as u8) << 4;
        }
        byte
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeFilter {
    pub filter: ByteString,
    pub options: SubscriptionOptions,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscribe {
    pub packet_id: u16,
    pub properties: Properties,
    pub filters: Vec<SubscribeFilter>,
}

/// Checks a filter of SUBSCRIBE or UNSUBSCRIBE, including `$share/{group}/{filter}` in 5.0.
pub(crate) fn check_filter(filter: &str, version: ProtocolVersion) -> Result<(), DecodeError> {
    let valid = match parse_shared(filter) {
        Some(shared) if version.is_v5() => shared.is_ok(),
        _ => valid_topic_filter(filter),
    };
    if valid {
        Ok(())
    } else {
        Err(DecodeError::TopicFilterInvalid)
    }
}

impl Subscribe {
    pub fn read(
        flags: u8,
        mut body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Subscribe, DecodeError> {
        check_reserved_flags(PacketType::Subscribe, flags)?;
        let packet_id = read_packet_id(&mut body)?;
        let properties = Properties::read_in(&mut body, PropertyContext::Subscribe, version)?;
        let mut filters = Vec::new();
        while !body.is_empty() {
            let filter = read_string(&mut body)?;
            check_filter(&filter, version)?;
            let options = SubscriptionOptions::from_byte(read_u8(&mut body)?, version)?;
            if options.no_local && version.is_v5() && parse_shared(&filter).is_some() {
                return Err(DecodeError::Protocol("No Local on a shared subscription"));
            }
            filters.push(SubscribeFilter { filter, options });
        }
        if filters.is_empty() {
            return Err(DecodeError::Protocol("SUBSCRIBE without a topic filter"));
        }
        Ok(Subscribe {
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
            .map(|f| prefixed_len(f.filter.as_bytes()) + 1)
            .sum::<usize>();
        remaining += self
            .properties
            .wire_len_in(version, "SUBSCRIBE properties")?;
        write_fixed_header(dst, (PacketType::Subscribe as u8) << 4 | 0b0010, remaining)?;
        dst.put_u16(self.packet_id);
        if v5 {
            self.properties.write(dst)?;
        }
        for f in &self.filters {
            write_string(dst, &f.filter, "topic filter")?;
            dst.put_u8(f.options.to_byte(version));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubAck {
    pub packet_id: u16,
    pub properties: Properties,
    /// One per filter: Success / GrantedQoS1 / GrantedQoS2, or an error (0x80 in 3.x).
    pub codes: Vec<ReasonCode>,
}

impl SubAck {
    pub fn read(
        flags: u8,
        mut body: Bytes,
        version: ProtocolVersion,
    ) -> Result<SubAck, DecodeError> {
        check_reserved_flags(PacketType::SubAck, flags)?;
        let packet_id = read_packet_id(&mut body)?;
        let properties = Properties::read_in(&mut body, PropertyContext::SubAck, version)?;
        let mut codes = Vec::with_capacity(body.len());
        while !body.is_empty() {
            let raw = read_u8(&mut body)?;
            let code = if version.is_v5() {
                ReasonCode::from_u8(raw).filter(|c| c.allowed_in(ReasonContext::SubAck))
            } else {
                match raw {
                    0..=2 | 0x80 => ReasonCode::from_u8(raw),
                    _ => None,
                }
            };
            codes.push(code.ok_or(DecodeError::Malformed("SUBACK return code"))?);
        }
        expect_end(&body)?;
        Ok(SubAck {
            packet_id,
            properties,
            codes,
        })
    }

    pub fn write(&self, version: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let v5 = version.is_v5();
        let mut remaining = 2 + self.codes.len();
        remaining += self.properties.wire_len_in(version, "SUBACK properties")?;
        write_fixed_header(dst, (PacketType::SubAck as u8) << 4, remaining)?;
        dst.put_u16(self.packet_id);
        if v5 {
            self.properties.write(dst)?;
        }
        for &code in &self.codes {
            // 3.x knows only the granted QoS and a single failure code.
            let byte = if v5 || !code.is_error() {
                code as u8
            } else {
                0x80
            };
            dst.put_u8(byte);
        }
        Ok(())
    }
}
