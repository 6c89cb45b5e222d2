//! CONNECT (spec 3.1): the only packet that carries its own protocol version.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::{
    check_reserved_flags, expect_end, write_fixed_header, PacketType, ProtocolVersion, QoS,
};
use crate::protocol::error::{DecodeError, EncodeError};
use crate::protocol::primitives::{
    prefixed_len, read_binary, read_string, read_u16, read_u8, write_binary, write_string,
};
use crate::protocol::properties::{Properties, PropertyContext};
use crate::protocol::topic::valid_topic_name;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub version: ProtocolVersion,
    /// Clean Session in 3.x, Clean Start in 5.0.
    pub clean_start: bool,
    pub keep_alive: u16,
    pub client_id: ByteString,
    pub will: Option<Will>,
    pub username: Option<ByteString>,
    pub password: Option<Bytes>,
    pub properties: Properties,
    /// A bridge (3.x only): the protocol level's top bit was set, as Mosquitto bridges do
    /// (`try_private`). It expects no echo of its own messages and retain as published.
    pub bridge: bool,
}

/// The top bit of a 3.x protocol level that marks a bridge.
const BRIDGE_LEVEL_BIT: u8 = 0x80;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Will properties (5.0 only).
    pub properties: Properties,
}

mod flag {
    pub const RESERVED: u8 = 0x01;
    pub const CLEAN_START: u8 = 0x02;
    pub const WILL: u8 = 0x04;
    pub const WILL_QOS_SHIFT: u8 = 3;
    pub const WILL_RETAIN: u8 = 0x20;
    pub const PASSWORD: u8 = 0x40;
    pub const USERNAME: u8 = 0x80;
}

impl Connect {
    pub fn read(flags: u8, mut body: Bytes) -> Result<Connect, DecodeError> {
        check_reserved_flags(PacketType::Connect, flags)?;
        let name = read_binary(&mut body)?;
        let level = read_u8(&mut body)?;
        let bridge = level & BRIDGE_LEVEL_BIT != 0;
        let version = match (&name[..], level & !BRIDGE_LEVEL_BIT) {
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) if !bridge => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            _ => return Err(DecodeError::UnsupportedProtocol { level }),
        };
        let connect_flags = read_u8(&mut body)?;
        if connect_flags & flag::RESERVED != 0 {
            return Err(DecodeError::Malformed("reserved CONNECT flag set"));
        }
        let has_will = connect_flags & flag::WILL != 0;
        let will_qos = QoS::from_u8((connect_flags >> flag::WILL_QOS_SHIFT) & 0x03)?;
        let will_retain = connect_flags & flag::WILL_RETAIN != 0;
        if !has_will && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(DecodeError::Malformed("will QoS or retain without a will"));
        }
        let has_username = connect_flags & flag::USERNAME != 0;
        let has_password = connect_flags & flag::PASSWORD != 0;
        if has_password && !has_username && version != ProtocolVersion::V5 {
            return Err(DecodeError::Malformed("password without a user name"));
        }
        let keep_alive = read_u16(&mut body)?;
        let properties = Properties::read_in(&mut body, PropertyContext::Connect, version)?;
        let client_id = read_string(&mut body)?;
        let will = if has_will {
            let properties = Properties::read_in(&mut body, PropertyContext::Will, version)?;
            let topic = read_string(&mut body)?;
            if !valid_topic_name(&topic) {
                return Err(DecodeError::TopicNameInvalid);
            }
            let payload = read_binary(&mut body)?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = has_username.then(|| read_string(&mut body)).transpose()?;
        let password = has_password.then(|| read_binary(&mut body)).transpose()?;
        expect_end(&body)?;
        Ok(Connect {
            version,
            clean_start: connect_flags & flag::CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
            bridge,
        })
    }

    pub fn write(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let v5 = self.version.is_v5();
        let name: &[u8] = if self.version == ProtocolVersion::V3_1 {
            b"MQIsdp"
        } else {
            b"MQTT"
        };
        if !v5 && !self.properties.is_empty() {
            return Err(EncodeError::NotInVersion("CONNECT properties"));
        }
        if self.password.is_some() && self.username.is_none() && !v5 {
            return Err(EncodeError::NotInVersion("a password without a user name"));
        }
        let mut remaining =
            prefixed_len(name) + 1 + 1 + 2 + prefixed_len(self.client_id.as_bytes());
        if v5 {
            remaining += self.properties.wire_len();
        }
        let mut flags = 0u8;
        if self.clean_start {
            flags |= flag::CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= flag::WILL | ((will.qos as u8) << flag::WILL_QOS_SHIFT);
            if will.retain {
                flags |= flag::WILL_RETAIN;
            }
            if !v5 && !will.properties.is_empty() {
                return Err(EncodeError::NotInVersion("will properties"));
            }
            remaining += prefixed_len(will.topic.as_bytes()) + prefixed_len(&will.payload);
            if v5 {
                remaining += will.properties.wire_len();
            }
        }
        if let Some(username) = &self.username {
            flags |= flag::USERNAME;
            remaining += prefixed_len(username.as_bytes());
        }
        if let Some(password) = &self.password {
            flags |= flag::PASSWORD;
            remaining += prefixed_len(password);
        }
        write_fixed_header(dst, (PacketType::Connect as u8) << 4, remaining)?;
        write_binary(dst, name, "protocol name")?;
        let bridge = if self.bridge && !v5 {
            BRIDGE_LEVEL_BIT
        } else {
            0
        };
        dst.put_u8(self.version as u8 | bridge);
        dst.put_u8(flags);
        dst.put_u16(self.keep_alive);
        if v5 {
            self.properties.write(dst)?;
        }
        write_string(dst, &self.client_id, "client identifier")?;
        if let Some(will) = &self.will {
            if v5 {
                will.properties.write(dst)?;
            }
            write_string(dst, &will.topic, "will topic")?;
            write_binary(dst, &will.payload, "will payload")?;
        }
        if let Some(username) = &self.username {
            write_string(dst, username, "user name")?;
        }
        if let Some(password) = &self.password {
            write_binary(dst, password, "password")?;
        }
        Ok(())
    }
}
