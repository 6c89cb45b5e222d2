//! The packet model: one type per control packet, each with `read` (from its fixed-header flags
//! and body) and `write` (appending the whole packet to a `BytesMut`).

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod publish;
mod subscribe;
mod unsubscribe;

pub use ack::Ack;
pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, Will};
pub use disconnect::Disconnect;
pub use publish::{Publish, PublishHeader};
pub use subscribe::{RetainHandling, SubAck, Subscribe, SubscribeFilter, SubscriptionOptions};
pub use unsubscribe::{UnsubAck, Unsubscribe};

use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::primitives::{varint_len, write_varint, VARINT_MAX};

/// The protocol level of CONNECT: 3 is MQTT 3.1 (`MQIsdp`), 4 is 3.1.1, 5 is 5.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    V3_1 = 3,
    V3_1_1 = 4,
    V5 = 5,
}

impl ProtocolVersion {
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_u8(bits: u8) -> Result<QoS, DecodeError> {
        match bits {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(DecodeError::Malformed("QoS 3")),
        }
    }
}

/// Control packet types (the high nibble of the first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}

/// Writes a fixed header: type and flags, then the remaining length.
pub(crate) fn write_fixed_header(
    dst: &mut BytesMut,
    first_byte: u8,
    remaining: usize,
) -> Result<(), EncodeError> {
    if remaining > VARINT_MAX as usize {
        return Err(EncodeError::PacketTooLarge(remaining));
    }
    dst.reserve(1 + varint_len(remaining as u32) + remaining);
    dst.put_u8(first_byte);
    write_varint(dst, remaining as u32);
    Ok(())
}

/// The fixed-header flags MQTT reserves for every packet but PUBLISH (spec 2.1.3).
pub(crate) fn check_reserved_flags(packet: PacketType, flags: u8) -> Result<(), DecodeError> {
    let expected = match packet {
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
        PacketType::Publish => return Ok(()),
        _ => 0,
    };
    if flags != expected {
        return Err(DecodeError::Malformed("reserved fixed-header flags"));
    }
    Ok(())
}

/// Fails unless a packet body was consumed exactly.
pub(crate) fn expect_end(body: &bytes::Bytes) -> Result<(), DecodeError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::Malformed("bytes after the end of the packet"))
    }
}

pub(crate) fn read_packet_id(body: &mut bytes::Bytes) -> Result<u16, DecodeError> {
    let id = super::primitives::read_u16(body)?;
    if id == 0 {
        return Err(DecodeError::Protocol("packet identifier 0"));
    }
    Ok(id)
}
