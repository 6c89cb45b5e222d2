//! MQTT 5.0 properties (spec 2.2.2): one struct holds any packet's properties; decoding checks
//! that each property is allowed on the packet it arrived on and appears at most once. Each
//! property is one row of `table.rs`; this file holds what is common to all of them.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::packet::ProtocolVersion;
use super::primitives::{read_varint, varint_len, write_varint};

mod table;
mod wire;

pub use table::{allowed, id, PropertyValues};

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

impl PropertyContext {
    /// Every context, for tables and tests that go over them all.
    pub const ALL: [PropertyContext; 11] = {
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

impl PropertyValues {
    pub fn is_empty(&self) -> bool {
        *self == PropertyValues::EMPTY
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
        let start = dst.len();
        self.write_body(dst)?;
        debug_assert_eq!(dst.len() - start, body);
        Ok(())
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
        Properties(Some(Box::new(values.owned())))
    }

    /// Bytes held by variable-length values (strings, binary data, user properties): what a
    /// stored message's properties cost, for queue and retained limits.
    pub fn stored_len(&self) -> usize {
        self.0.as_deref().map_or(0, PropertyValues::stored_len)
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

#[cfg(test)]
mod tests;
