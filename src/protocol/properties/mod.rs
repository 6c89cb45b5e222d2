//! MQTT 5.0 properties (spec 2.2.2): one struct holds any packet's properties; decoding checks
//! that each property is allowed on the packet it arrived on and appears at most once.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::{DecodeError, EncodeError};
use super::packet::ProtocolVersion;
use super::primitives::{
    prefixed_len, read_binary, read_string, read_u16, read_u32, read_u8, read_varint, varint_len,
    write_binary, write_string, write_varint,
};

/// Where a property block sits: the spec allows each property on some of these only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyContext {
    Connect,
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL and PUBCOMP.
    PubAck,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

/// A packet's properties. Most packets carry none, so the values live behind a box that is only
/// allocated when there are some: reading a field of an empty `Properties` reads a static empty
/// [`PropertyValues`], and assigning one allocates it.
#[derive(Clone, Default)]
pub struct Properties(Option<Box<PropertyValues>>);

static NO_PROPERTIES: PropertyValues = PropertyValues::EMPTY;

impl std::ops::Deref for Properties {
    type Target = PropertyValues;
    fn deref(&self) -> &PropertyValues {
        self.0.as_deref().unwrap_or(&NO_PROPERTIES)
    }
}

impl std::ops::DerefMut for Properties {
    fn deref_mut(&mut self) -> &mut PropertyValues {
        self.0
            .get_or_insert_with(|| Box::new(PropertyValues::EMPTY))
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Properties) -> bool {
        **self == **other
    }
}

impl Eq for Properties {}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl From<PropertyValues> for Properties {
    fn from(values: PropertyValues) -> Properties {
        if values == PropertyValues::EMPTY {
            Properties(None)
        } else {
            Properties(Some(Box::new(values)))
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyValues {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<ByteString>,
    pub response_topic: Option<ByteString>,
    pub correlation_data: Option<Bytes>,
    /// One in SUBSCRIBE; any number on a PUBLISH sent to a subscriber.
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<ByteString>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<bool>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<bool>,
    pub response_information: Option<ByteString>,
    pub server_reference: Option<ByteString>,
    pub reason_string: Option<ByteString>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<bool>,
    /// Kept in the order they arrived, duplicates included (spec 3.3.2.3.7).
    pub user_properties: Vec<(ByteString, ByteString)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifier_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
}

pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u32 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u32 = 0x02;
    pub const CONTENT_TYPE: u32 = 0x03;
    pub const RESPONSE_TOPIC: u32 = 0x08;
    pub const CORRELATION_DATA: u32 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u32 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u32 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u32 = 0x12;
    pub const SERVER_KEEP_ALIVE: u32 = 0x13;
    pub const AUTHENTICATION_METHOD: u32 = 0x15;
    pub const AUTHENTICATION_DATA: u32 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u32 = 0x17;
    pub const WILL_DELAY_INTERVAL: u32 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u32 = 0x19;
    pub const RESPONSE_INFORMATION: u32 = 0x1A;
    pub const SERVER_REFERENCE: u32 = 0x1C;
    pub const REASON_STRING: u32 = 0x1F;
    pub const RECEIVE_MAXIMUM: u32 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u32 = 0x22;
    pub const TOPIC_ALIAS: u32 = 0x23;
    pub const MAXIMUM_QOS: u32 = 0x24;
    pub const RETAIN_AVAILABLE: u32 = 0x25;
    pub const USER_PROPERTY: u32 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u32 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u32 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u32 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u32 = 0x2A;
}

/// Whether property `id` may appear in `ctx` (spec 2.2.2.2, table 2-4).
pub fn allowed(property: u32, ctx: PropertyContext) -> bool {
    use PropertyContext::*;
    match property {
        id::PAYLOAD_FORMAT_INDICATOR
        | id::MESSAGE_EXPIRY_INTERVAL
        | id::CONTENT_TYPE
        | id::RESPONSE_TOPIC
        | id::CORRELATION_DATA => matches!(ctx, Publish | Will),
        id::SUBSCRIPTION_IDENTIFIER => matches!(ctx, Publish | Subscribe),
        id::SESSION_EXPIRY_INTERVAL => matches!(ctx, Connect | ConnAck | Disconnect),
        id::ASSIGNED_CLIENT_IDENTIFIER
        | id::SERVER_KEEP_ALIVE
        | id::RESPONSE_INFORMATION
        | id::MAXIMUM_QOS
        | id::RETAIN_AVAILABLE
        | id::WILDCARD_SUBSCRIPTION_AVAILABLE
        | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
        | id::SHARED_SUBSCRIPTION_AVAILABLE => ctx == ConnAck,
        id::AUTHENTICATION_METHOD | id::AUTHENTICATION_DATA => {
            matches!(ctx, Connect | ConnAck | Auth)
        }
        id::REQUEST_PROBLEM_INFORMATION | id::REQUEST_RESPONSE_INFORMATION => ctx == Connect,
        id::WILL_DELAY_INTERVAL => ctx == Will,
        id::SERVER_REFERENCE => matches!(ctx, ConnAck | Disconnect),
        id::REASON_STRING => matches!(
            ctx,
            ConnAck | PubAck | SubAck | UnsubAck | Disconnect | Auth
        ),
        id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS_MAXIMUM | id::MAXIMUM_PACKET_SIZE => {
            matches!(ctx, Connect | ConnAck)
        }
        id::TOPIC_ALIAS => ctx == Publish,
        id::USER_PROPERTY => true,
        _ => false,
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Protocol("property appears more than once"));
    }
    *slot = Some(value);
    Ok(())
}

fn read_bool(buf: &mut Bytes) -> Result<bool, DecodeError> {
    match read_u8(buf)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Protocol("boolean property is neither 0 nor 1")),
    }
}

fn nonzero_u16(value: u16, what: &'static str) -> Result<u16, DecodeError> {
    if value == 0 {
        Err(DecodeError::Protocol(what))
    } else {
        Ok(value)
    }
}

impl PropertyValues {
    pub const EMPTY: PropertyValues = PropertyValues {
        payload_format_indicator: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        subscription_identifiers: Vec::new(),
        session_expiry_interval: None,
        assigned_client_identifier: None,
        server_keep_alive: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        topic_alias: None,
        maximum_qos: None,
        retain_available: None,
        user_properties: Vec::new(),
        maximum_packet_size: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
    };

    pub fn is_empty(&self) -> bool {
        *self == PropertyValues::EMPTY
    }
}

impl Properties {
    pub fn is_empty(&self) -> bool {
        self.0.as_deref().is_none_or(PropertyValues::is_empty)
    }

    /// A copy whose strings and binary values own their bytes. Decoded ones are slices of the
    /// read buffer: kept for long (queued, in flight, retained, a will), one user property
    /// would keep the whole buffer alive.
    pub fn compacted(&self) -> Properties {
        let Some(values) = self.0.as_deref().filter(|v| !v.is_empty()) else {
            return Properties(None);
        };
        let text = |s: &Option<ByteString>| s.as_deref().map(ByteString::from);
        let binary = |b: &Option<Bytes>| b.as_deref().map(Bytes::copy_from_slice);
        Properties(Some(Box::new(PropertyValues {
            content_type: text(&values.content_type),
            response_topic: text(&values.response_topic),
            correlation_data: binary(&values.correlation_data),
            assigned_client_identifier: text(&values.assigned_client_identifier),
            authentication_method: text(&values.authentication_method),
            authentication_data: binary(&values.authentication_data),
            response_information: text(&values.response_information),
            server_reference: text(&values.server_reference),
            reason_string: text(&values.reason_string),
            user_properties: values
                .user_properties
                .iter()
                .map(|(k, v)| (ByteString::from(&**k), ByteString::from(&**v)))
                .collect(),
            subscription_identifiers: values.subscription_identifiers.clone(),
            ..values.clone()
        })))
    }

    /// Bytes held by variable-length values (strings, binary data, user properties): what a
    /// stored message's properties cost, for queue and retained limits.
    pub fn stored_len(&self) -> usize {
        let Some(v) = self.0.as_deref() else {
            return 0;
        };
        let text = |s: &Option<ByteString>| s.as_ref().map_or(0, |s| s.len());
        let binary = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        text(&v.content_type)
            + text(&v.response_topic)
            + binary(&v.correlation_data)
            + text(&v.assigned_client_identifier)
            + text(&v.authentication_method)
            + binary(&v.authentication_data)
            + text(&v.response_information)
            + text(&v.server_reference)
            + text(&v.reason_string)
            + v.user_properties
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + 4 * v.subscription_identifiers.len()
    }

    /// Bytes on the wire including the length prefix.
    pub fn wire_len(&self) -> usize {
        self.0.as_deref().map_or(1, PropertyValues::wire_len)
    }

    /// Reads a property block in 5.0; 3.x packets have none.
    pub fn read_in(
        buf: &mut Bytes,
        ctx: PropertyContext,
        version: ProtocolVersion,
    ) -> Result<Properties, DecodeError> {
        if version.is_v5() {
            Properties::read(buf, ctx)
        } else {
            Ok(Properties::default())
        }
    }

    /// Bytes the block takes in `version`: none in 3.x, where properties cannot be sent.
    pub fn wire_len_in(
        &self,
        version: ProtocolVersion,
        what: &'static str,
    ) -> Result<usize, EncodeError> {
        if version.is_v5() {
            Ok(self.wire_len())
        } else if self.is_empty() {
            Ok(0)
        } else {
            Err(EncodeError::NotInVersion(what))
        }
    }

    /// Writes the length prefix and the properties.
    pub fn write(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match self.0.as_deref() {
            None => {
                dst.put_u8(0);
                Ok(())
            }
            Some(values) => values.write(dst),
        }
    }

    /// Reads a property block (length, then properties) from the cursor.
    pub fn read(buf: &mut Bytes, ctx: PropertyContext) -> Result<Properties, DecodeError> {
        let len = read_varint(buf)? as usize;
        if len == 0 {
            return Ok(Properties::default());
        }
        let mut props = PropertyValues::EMPTY;
        if len > buf.len() {
            return Err(DecodeError::Malformed(
                "property length runs past the packet",
            ));
        }
        let mut block = buf.split_to(len);
        while !block.is_empty() {
            let property = read_varint(&mut block)?;
            if !allowed(property, ctx) {
                return Err(DecodeError::Malformed(
                    "property not allowed on this packet",
                ));
            }
            props.read_one(property, &mut block, ctx)?;
        }
        if props.authentication_data.is_some() && props.authentication_method.is_none() {
            return Err(DecodeError::Protocol(
                "authentication data without a method",
            ));
        }
        Ok(props.into())
    }
}

impl PropertyValues {
    fn read_one(
        &mut self,
        property: u32,
        b: &mut Bytes,
        ctx: PropertyContext,
    ) -> Result<(), DecodeError> {
        match property {
            id::PAYLOAD_FORMAT_INDICATOR => {
                let v = read_u8(b)?;
                if v > 1 {
                    return Err(DecodeError::Protocol("payload format indicator not 0 or 1"));
                }
                set_once(&mut self.payload_format_indicator, v)
            }
            id::MESSAGE_EXPIRY_INTERVAL => {
                set_once(&mut self.message_expiry_interval, read_u32(b)?)
            }
            id::CONTENT_TYPE => set_once(&mut self.content_type, read_string(b)?),
            id::RESPONSE_TOPIC => {
                let topic = read_string(b)?;
                if !super::topic::valid_topic_name(&topic) {
                    return Err(DecodeError::Protocol(
                        "response topic is not a valid topic name",
                    ));
                }
                set_once(&mut self.response_topic, topic)
            }
            id::CORRELATION_DATA => set_once(&mut self.correlation_data, read_binary(b)?),
            id::SUBSCRIPTION_IDENTIFIER => {
                let v = read_varint(b)?;
                if v == 0 {
                    return Err(DecodeError::Protocol("subscription identifier 0"));
                }
                if ctx == PropertyContext::Subscribe && !self.subscription_identifiers.is_empty() {
                    return Err(DecodeError::Protocol("property appears more than once"));
                }
                self.subscription_identifiers.push(v);
                Ok(())
            }
            id::SESSION_EXPIRY_INTERVAL => {
                set_once(&mut self.session_expiry_interval, read_u32(b)?)
            }
            id::ASSIGNED_CLIENT_IDENTIFIER => {
                set_once(&mut self.assigned_client_identifier, read_string(b)?)
            }
            id::SERVER_KEEP_ALIVE => set_once(&mut self.server_keep_alive, read_u16(b)?),
            id::AUTHENTICATION_METHOD => set_once(&mut self.authentication_method, read_string(b)?),
            id::AUTHENTICATION_DATA => set_once(&mut self.authentication_data, read_binary(b)?),
            id::REQUEST_PROBLEM_INFORMATION => {
                set_once(&mut self.request_problem_information, read_bool(b)?)
            }
            id::WILL_DELAY_INTERVAL => set_once(&mut self.will_delay_interval, read_u32(b)?),
            id::REQUEST_RESPONSE_INFORMATION => {
                set_once(&mut self.request_response_information, read_bool(b)?)
            }
            id::RESPONSE_INFORMATION => set_once(&mut self.response_information, read_string(b)?),
            id::SERVER_REFERENCE => set_once(&mut self.server_reference, read_string(b)?),
            id::REASON_STRING => set_once(&mut self.reason_string, read_string(b)?),
            id::RECEIVE_MAXIMUM => {
                let v = nonzero_u16(read_u16(b)?, "receive maximum 0")?;
                set_once(&mut self.receive_maximum, v)
            }
            id::TOPIC_ALIAS_MAXIMUM => set_once(&mut self.topic_alias_maximum, read_u16(b)?),
            // Alias 0 is the receiver's to refuse with 0x94 Topic Alias invalid, like one above
            // its maximum (MQTT-3.3.2-8): not a decoding error.
            id::TOPIC_ALIAS => set_once(&mut self.topic_alias, read_u16(b)?),
            id::MAXIMUM_QOS => {
                let v = read_u8(b)?;
                if v > 1 {
                    return Err(DecodeError::Protocol("maximum QoS not 0 or 1"));
                }
                set_once(&mut self.maximum_qos, v)
            }
            id::RETAIN_AVAILABLE => set_once(&mut self.retain_available, read_bool(b)?),
            id::USER_PROPERTY => {
                let key = read_string(b)?;
                let value = read_string(b)?;
                self.user_properties.push((key, value));
                Ok(())
            }
            id::MAXIMUM_PACKET_SIZE => {
                let v = read_u32(b)?;
                if v == 0 {
                    return Err(DecodeError::Protocol("maximum packet size 0"));
                }
                set_once(&mut self.maximum_packet_size, v)
            }
            id::WILDCARD_SUBSCRIPTION_AVAILABLE => {
                set_once(&mut self.wildcard_subscription_available, read_bool(b)?)
            }
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                set_once(&mut self.subscription_identifier_available, read_bool(b)?)
            }
            id::SHARED_SUBSCRIPTION_AVAILABLE => {
                set_once(&mut self.shared_subscription_available, read_bool(b)?)
            }
            _ => Err(DecodeError::Malformed("unknown property identifier")),
        }
    }

    /// Bytes of the properties themselves, without the length prefix.
    pub fn body_len(&self) -> usize {
        fn fixed<T>(v: &Option<T>, size: usize) -> usize {
            v.as_ref().map_or(0, |_| 1 + size)
        }
        fn bin(v: &Option<impl AsRef<[u8]>>) -> usize {
            v.as_ref().map_or(0, |b| 1 + prefixed_len(b.as_ref()))
        }
        fn text(v: &Option<ByteString>) -> usize {
            v.as_ref().map_or(0, |s| 1 + prefixed_len(s.as_bytes()))
        }
        fixed(&self.payload_format_indicator, 1)
            + fixed(&self.message_expiry_interval, 4)
            + text(&self.content_type)
            + text(&self.response_topic)
            + bin(&self.correlation_data)
            + self
                .subscription_identifiers
                .iter()
                .map(|&v| 1 + varint_len(v))
                .sum::<usize>()
            + fixed(&self.session_expiry_interval, 4)
            + text(&self.assigned_client_identifier)
            + fixed(&self.server_keep_alive, 2)
            + text(&self.authentication_method)
            + bin(&self.authentication_data)
            + fixed(&self.request_problem_information, 1)
            + fixed(&self.will_delay_interval, 4)
            + fixed(&self.request_response_information, 1)
            + text(&self.response_information)
            + text(&self.server_reference)
            + text(&self.reason_string)
            + fixed(&self.receive_maximum, 2)
            + fixed(&self.topic_alias_maximum, 2)
            + fixed(&self.topic_alias, 2)
            + fixed(&self.maximum_qos, 1)
            + fixed(&self.retain_available, 1)
            + self
                .user_properties
                .iter()
                .map(|(k, v)| 1 + prefixed_len(k.as_bytes()) + prefixed_len(v.as_bytes()))
                .sum::<usize>()
            + fixed(&self.maximum_packet_size, 4)
            + fixed(&self.wildcard_subscription_available, 1)
            + fixed(&self.subscription_identifier_available, 1)
            + fixed(&self.shared_subscription_available, 1)
    }

    /// Bytes on the wire including the length prefix.
    pub fn wire_len(&self) -> usize {
        let body = self.body_len();
        varint_len(body as u32) + body
    }

    /// Writes the length prefix and the properties, in identifier order.
    pub fn write(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let body = self.body_len();
        write_varint(dst, body as u32);
        if body == 0 {
            return Ok(());
        }
        let start = dst.len();
        let u8_prop = |dst: &mut BytesMut, pid: u32, v: Option<u8>| {
            if let Some(v) = v {
                dst.put_u8(pid as u8);
                dst.put_u8(v);
            }
        };
        let u16_prop = |dst: &mut BytesMut, pid: u32, v: Option<u16>| {
            if let Some(v) = v {
                dst.put_u8(pid as u8);
                dst.put_u16(v);
            }
        };
        let u32_prop = |dst: &mut BytesMut, pid: u32, v: Option<u32>| {
            if let Some(v) = v {
                dst.put_u8(pid as u8);
                dst.put_u32(v);
            }
        };
        fn bytes_prop(
            dst: &mut BytesMut,
            pid: u32,
            v: Option<&[u8]>,
            what: &'static str,
        ) -> Result<(), EncodeError> {
            if let Some(v) = v {
                dst.put_u8(pid as u8);
                write_binary(dst, v, what)?;
            }
            Ok(())
        }
        let b = |v: Option<bool>| v.map(u8::from);
        fn s(v: &Option<ByteString>) -> Option<&[u8]> {
            v.as_ref().map(|s| s.as_bytes().as_ref())
        }

        u8_prop(
            dst,
            id::PAYLOAD_FORMAT_INDICATOR,
            self.payload_format_indicator,
        );
        u32_prop(
            dst,
            id::MESSAGE_EXPIRY_INTERVAL,
            self.message_expiry_interval,
        );
        bytes_prop(dst, id::CONTENT_TYPE, s(&self.content_type), "content type")?;
        bytes_prop(
            dst,
            id::RESPONSE_TOPIC,
            s(&self.response_topic),
            "response topic",
        )?;
        bytes_prop(
            dst,
            id::CORRELATION_DATA,
            self.correlation_data.as_deref(),
            "correlation data",
        )?;
        for &v in &self.subscription_identifiers {
            dst.put_u8(id::SUBSCRIPTION_IDENTIFIER as u8);
            write_varint(dst, v);
        }
        u32_prop(
            dst,
            id::SESSION_EXPIRY_INTERVAL,
            self.session_expiry_interval,
        );
        bytes_prop(
            dst,
            id::ASSIGNED_CLIENT_IDENTIFIER,
            s(&self.assigned_client_identifier),
            "assigned client identifier",
        )?;
        u16_prop(dst, id::SERVER_KEEP_ALIVE, self.server_keep_alive);
        bytes_prop(
            dst,
            id::AUTHENTICATION_METHOD,
            s(&self.authentication_method),
            "authentication method",
        )?;
        bytes_prop(
            dst,
            id::AUTHENTICATION_DATA,
            self.authentication_data.as_deref(),
            "authentication data",
        )?;
        u8_prop(
            dst,
            id::REQUEST_PROBLEM_INFORMATION,
            b(self.request_problem_information),
        );
        u32_prop(dst, id::WILL_DELAY_INTERVAL, self.will_delay_interval);
        u8_prop(
            dst,
            id::REQUEST_RESPONSE_INFORMATION,
            b(self.request_response_information),
        );
        bytes_prop(
            dst,
            id::RESPONSE_INFORMATION,
            s(&self.response_information),
            "response information",
        )?;
        bytes_prop(
            dst,
            id::SERVER_REFERENCE,
            s(&self.server_reference),
            "server reference",
        )?;
        bytes_prop(
            dst,
            id::REASON_STRING,
            s(&self.reason_string),
            "reason string",
        )?;
        u16_prop(dst, id::RECEIVE_MAXIMUM, self.receive_maximum);
        u16_prop(dst, id::TOPIC_ALIAS_MAXIMUM, self.topic_alias_maximum);
        u16_prop(dst, id::TOPIC_ALIAS, self.topic_alias);
        u8_prop(dst, id::MAXIMUM_QOS, self.maximum_qos);
        u8_prop(dst, id::RETAIN_AVAILABLE, b(self.retain_available));
        for (key, value) in &self.user_properties {
            dst.put_u8(id::USER_PROPERTY as u8);
            write_string(dst, key, "user property")?;
            write_string(dst, value, "user property")?;
        }
        u32_prop(dst, id::MAXIMUM_PACKET_SIZE, self.maximum_packet_size);
        u8_prop(
            dst,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            b(self.wildcard_subscription_available),
        );
        u8_prop(
            dst,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            b(self.subscription_identifier_available),
        );
        u8_prop(
            dst,
            id::SHARED_SUBSCRIPTION_AVAILABLE,
            b(self.shared_subscription_available),
        );
        debug_assert_eq!(dst.len() - start, body);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
