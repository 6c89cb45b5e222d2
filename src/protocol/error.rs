//! Typed decode and encode errors; each decode error names the reason code a receiver answers
//! with (CONNACK before a session exists, DISCONNECT in MQTT 5 after, a plain close in 3.x).

use super::reason::ReasonCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge { size: usize, max: u32 },
    #[error("unsupported protocol name or level {level}")]
    UnsupportedProtocol { level: u8 },
    #[error("invalid topic name")]
    TopicNameInvalid,
    #[error("invalid topic filter")]
    TopicFilterInvalid,
}

impl DecodeError {
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Malformed(_) => ReasonCode::MalformedPacket,
            DecodeError::Protocol(_) => ReasonCode::ProtocolError,
            DecodeError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            DecodeError::UnsupportedProtocol { .. } => ReasonCode::UnsupportedProtocolVersion,
            DecodeError::TopicNameInvalid => ReasonCode::TopicNameInvalid,
            DecodeError::TopicFilterInvalid => ReasonCode::TopicFilterInvalid,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{0} is longer than 65,535 bytes")]
    FieldTooLong(&'static str),
    #[error("packet of {0} bytes is larger than MQTT's 268,435,455 byte limit")]
    PacketTooLarge(usize),
    #[error("{0} cannot be sent in this protocol version")]
    NotInVersion(&'static str),
    #[error("invalid value: {0}")]
    Invalid(&'static str),
}
