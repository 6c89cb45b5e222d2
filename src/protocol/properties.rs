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
mod tests {
    use super::*;

    fn decode(bytes: &'static [u8], ctx: PropertyContext) -> Result<Properties, DecodeError> {
        let mut buf = Bytes::from_static(bytes);
        let props = Properties::read(&mut buf, ctx)?;
        assert!(buf.is_empty());
        Ok(props)
    }

    #[test]
    fn reads_hand_written_connect_properties() {
        // Session expiry 10, receive maximum 20, user property ("a", "b") twice kept in order.
        let props = decode(
            b"\x16\x11\x00\x00\x00\x0a\x21\x00\x14\x26\x00\x01a\x00\x01b\x26\x00\x01a\x00\x01c",
            PropertyContext::Connect,
        )
        .unwrap();
        assert_eq!(props.session_expiry_interval, Some(10));
        assert_eq!(props.receive_maximum, Some(20));
        assert_eq!(props.user_properties.len(), 2);
        assert_eq!(&props.user_properties[1].1[..], "c");
    }

    #[test]
    fn rejects_duplicates_wrong_packet_and_bad_values() {
        // Session expiry twice.
        assert_eq!(
            decode(
                b"\x0a\x11\x00\x00\x00\x01\x11\x00\x00\x00\x02",
                PropertyContext::Connect
            ),
            Err(DecodeError::Protocol("property appears more than once"))
        );
        // Topic alias on CONNECT.
        assert!(matches!(
            decode(b"\x03\x23\x00\x01", PropertyContext::Connect),
            Err(DecodeError::Malformed(_))
        ));
        // Receive maximum 0.
        assert!(matches!(
            decode(b"\x03\x21\x00\x00", PropertyContext::Connect),
            Err(DecodeError::Protocol(_))
        ));
        // Length past the end.
        assert!(decode(b"\x05\x21\x00", PropertyContext::Connect).is_err());
        // Unknown identifier.
        assert!(decode(b"\x02\x7f\x00", PropertyContext::Publish).is_err());
        // Two subscription identifiers in SUBSCRIBE, but allowed on PUBLISH.
        assert!(decode(b"\x04\x0b\x01\x0b\x02", PropertyContext::Subscribe).is_err());
        assert_eq!(
            decode(b"\x04\x0b\x01\x0b\x02", PropertyContext::Publish)
                .unwrap()
                .subscription_identifiers,
            vec![1, 2]
        );
        // Authentication data without a method.
        assert!(decode(b"\x03\x16\x00\x00", PropertyContext::Connect).is_err());
    }

    #[test]
    fn written_length_matches_computed_length() {
        let props: Properties = PropertyValues {
            message_expiry_interval: Some(5),
            subscription_identifiers: vec![1, 300_000],
            user_properties: vec![("k".into(), "v".into())],
            correlation_data: Some(Bytes::from_static(b"xyz")),
            ..Default::default()
        }
        .into();
        let mut out = BytesMut::new();
        props.write(&mut out).unwrap();
        assert_eq!(out.len(), props.wire_len());
        let mut buf = out.freeze();
        assert_eq!(
            Properties::read(&mut buf, PropertyContext::Publish).unwrap(),
            props
        );
    }

    #[test]
    fn compacted_properties_own_their_bytes_and_are_equal() {
        let buffer = Bytes::from_static(b"text/plainreply/toCORRkeyvalue");
        let slice = |a: usize, b: usize| buffer.slice(a..b);
        let text = |a: usize, b: usize| ByteString::try_from(slice(a, b)).unwrap();
        let properties: Properties = PropertyValues {
            content_type: Some(text(0, 10)),
            response_topic: Some(text(10, 18)),
            correlation_data: Some(slice(18, 22)),
            user_properties: vec![(text(22, 25), text(25, 30))],
            message_expiry_interval: Some(9),
            ..PropertyValues::default()
        }
        .into();
        let compact = properties.compacted();
        assert_eq!(compact, properties);
        assert_eq!(compact.stored_len(), 30);
        assert_eq!(Properties::default().stored_len(), 0);
        let inside = |p: &[u8]| buffer.as_ptr_range().contains(&p.as_ptr());
        let c = &*compact;
        assert!(!inside(c.content_type.as_ref().unwrap().as_bytes()));
        assert!(!inside(c.response_topic.as_ref().unwrap().as_bytes()));
        assert!(!inside(c.correlation_data.as_ref().unwrap()));
        assert!(!inside(c.user_properties[0].0.as_bytes()));
        assert!(!inside(c.user_properties[0].1.as_bytes()));
        assert!(inside(properties.content_type.as_ref().unwrap().as_bytes()));
    }

    const ALL_CONTEXTS: [PropertyContext; 11] = {
        use PropertyContext::*;
        [
            Connect,
            Will,
            ConnAck,
            Publish,
            PubAck,
            Subscribe,
            SubAck,
            Unsubscribe,
            UnsubAck,
            Disconnect,
            Auth,
        ]
    };

    /// One property set by hand: its identifier, the field it fills, the bytes it encodes to
    /// (spec 2.2.2.2 and 1.5) and what `stored_len` counts for it.
    type Case = (u32, fn(&mut PropertyValues), &'static [u8], usize);

    /// Every property, written out from the spec rather than taken from the codec, so that a
    /// property wired to the wrong identifier, field or wire type fails here.
    #[rustfmt::skip] // one property a line reads as the table it checks
    const CASES: &[Case] = &[
        (0x01, |p| p.payload_format_indicator = Some(1), b"\x01\x01", 0),
        (0x02, |p| p.message_expiry_interval = Some(0x0102_0304), b"\x02\x01\x02\x03\x04", 0),
        (0x03, |p| p.content_type = Some("ab".into()), b"\x03\x00\x02ab", 2),
        (0x08, |p| p.response_topic = Some("a/b".into()), b"\x08\x00\x03a/b", 3),
        (0x09, |p| p.correlation_data = Some(Bytes::from_static(b"\xff\x00")), b"\x09\x00\x02\xff\x00", 2),
        (0x0B, |p| p.subscription_identifiers = vec![200], b"\x0b\xc8\x01", 4),
        (0x11, |p| p.session_expiry_interval = Some(0x0a0b_0c0d), b"\x11\x0a\x0b\x0c\x0d", 0),
        (0x12, |p| p.assigned_client_identifier = Some("id".into()), b"\x12\x00\x02id", 2),
        (0x13, |p| p.server_keep_alive = Some(0x0102), b"\x13\x01\x02", 0),
        (0x15, |p| p.authentication_method = Some("m".into()), b"\x15\x00\x01m", 1),
        // Data needs a method (spec 3.1.2.11.10), which is allowed on the same packets.
        (0x16, |p| {
            p.authentication_method = Some("m".into());
            p.authentication_data = Some(Bytes::from_static(b"\x07"));
        }, b"\x15\x00\x01m\x16\x00\x01\x07", 2),
        (0x17, |p| p.request_problem_information = Some(false), b"\x17\x00", 0),
        (0x18, |p| p.will_delay_interval = Some(5), b"\x18\x00\x00\x00\x05", 0),
        (0x19, |p| p.request_response_information = Some(true), b"\x19\x01", 0),
        (0x1A, |p| p.response_information = Some("r".into()), b"\x1a\x00\x01r", 1),
        (0x1C, |p| p.server_reference = Some("s".into()), b"\x1c\x00\x01s", 1),
        (0x1F, |p| p.reason_string = Some("why".into()), b"\x1f\x00\x03why", 3),
        (0x21, |p| p.receive_maximum = Some(0x0102), b"\x21\x01\x02", 0),
        (0x22, |p| p.topic_alias_maximum = Some(3), b"\x22\x00\x03", 0),
        (0x23, |p| p.topic_alias = Some(4), b"\x23\x00\x04", 0),
        (0x24, |p| p.maximum_qos = Some(1), b"\x24\x01", 0),
        (0x25, |p| p.retain_available = Some(false), b"\x25\x00", 0),
        (0x26, |p| p.user_properties = vec![("k".into(), "v".into())], b"\x26\x00\x01k\x00\x01v", 2),
        (0x27, |p| p.maximum_packet_size = Some(0x0001_0000), b"\x27\x00\x01\x00\x00", 0),
        (0x28, |p| p.wildcard_subscription_available = Some(true), b"\x28\x01", 0),
        (0x29, |p| p.subscription_identifier_available = Some(false), b"\x29\x00", 0),
        (0x2A, |p| p.shared_subscription_available = Some(true), b"\x2a\x01", 0),
    ];

    fn block(body: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        write_varint(&mut out, body.len() as u32);
        out.put_slice(body);
        out.freeze()
    }

    #[test]
    fn every_property_encodes_as_the_spec_says_and_decodes_only_where_allowed() {
        for property in 0..=0x7F {
            assert_eq!(
                CASES.iter().any(|case| case.0 == property),
                ALL_CONTEXTS.iter().any(|&ctx| allowed(property, ctx)),
                "property {property:#04x} has a case exactly when it is allowed somewhere"
            );
        }
        for &(property, set, body, stored) in CASES {
            let mut values = PropertyValues::EMPTY;
            set(&mut values);
            let props = Properties::from(values);
            let mut out = BytesMut::new();
            props.write(&mut out).unwrap();
            assert_eq!(out.freeze(), block(body), "{property:#04x} on the wire");
            assert_eq!(
                props.wire_len(),
                block(body).len(),
                "{property:#04x} length"
            );
            assert_eq!(props.stored_len(), stored, "{property:#04x} stored length");
            assert_eq!(props.compacted(), props, "{property:#04x} compacted");
            for ctx in ALL_CONTEXTS {
                let decoded = Properties::read(&mut block(body), ctx);
                if allowed(property, ctx) {
                    assert_eq!(decoded.as_ref(), Ok(&props), "{property:#04x} on {ctx:?}");
                } else {
                    assert_eq!(
                        decoded,
                        Err(DecodeError::Malformed(
                            "property not allowed on this packet"
                        )),
                        "{property:#04x} on {ctx:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn properties_are_written_in_identifier_order() {
        let mut all = PropertyValues::EMPTY;
        let mut expected = Vec::new();
        // The 0x16 case writes the method of 0x15 too.
        for &(_, set, body, _) in CASES.iter().filter(|case| case.0 != 0x15) {
            set(&mut all);
            expected.extend_from_slice(body);
        }
        let props = Properties::from(all);
        let mut out = BytesMut::new();
        props.write(&mut out).unwrap();
        assert_eq!(out.freeze(), block(&expected));
        assert_eq!(props.wire_len(), block(&expected).len());
    }

    #[test]
    fn single_valued_properties_are_refused_twice_and_lists_are_not() {
        for &(property, _, body, _) in CASES {
            let twice = block(&[body, body].concat());
            for ctx in ALL_CONTEXTS
                .into_iter()
                .filter(|&ctx| allowed(property, ctx))
            {
                let decoded = Properties::read(&mut twice.clone(), ctx);
                let repeatable = property == id::USER_PROPERTY
                    || (property == id::SUBSCRIPTION_IDENTIFIER && ctx == PropertyContext::Publish);
                if repeatable {
                    assert!(decoded.is_ok(), "{property:#04x} twice on {ctx:?}");
                } else {
                    assert_eq!(
                        decoded,
                        Err(DecodeError::Protocol("property appears more than once")),
                        "{property:#04x} twice on {ctx:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn refused_values_name_the_rule_they_break() {
        use PropertyContext::{ConnAck, Connect, Publish};
        let cases: &[(&'static [u8], PropertyContext, &str)] = &[
            (
                b"\x02\x01\x02",
                Publish,
                "payload format indicator not 0 or 1",
            ),
            (
                b"\x06\x08\x00\x03a/+",
                Publish,
                "response topic is not a valid topic name",
            ),
            (b"\x02\x0b\x00", Publish, "subscription identifier 0"),
            (b"\x03\x21\x00\x00", Connect, "receive maximum 0"),
            (b"\x02\x24\x02", ConnAck, "maximum QoS not 0 or 1"),
            (
                b"\x05\x27\x00\x00\x00\x00",
                ConnAck,
                "maximum packet size 0",
            ),
            (
                b"\x02\x25\x02",
                ConnAck,
                "boolean property is neither 0 nor 1",
            ),
            // A bad value is reported before the repeat it makes.
            (
                b"\x04\x01\x01\x01\x02",
                Publish,
                "payload format indicator not 0 or 1",
            ),
        ];
        for &(bytes, ctx, rule) in cases {
            assert_eq!(
                decode(bytes, ctx),
                Err(DecodeError::Protocol(rule)),
                "{rule}"
            );
        }
        // A value cut short by the block's end.
        assert!(matches!(
            decode(b"\x02\x21\x00", Connect),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn empty_properties_allocate_nothing() {
        assert!(Properties::default().0.is_none());
        assert!(Properties::from(PropertyValues::EMPTY).0.is_none());
        assert!(decode(b"\x00", PropertyContext::Publish)
            .unwrap()
            .0
            .is_none());
        let mut out = BytesMut::new();
        Properties::default().write(&mut out).unwrap();
        assert_eq!(&out[..], b"\x00");
    }
}
